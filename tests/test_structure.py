"""The package's import graph, read from the source (function-level imports included): no circle,
and the data side depends on nothing above it."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "cnnstudy"
LOWER = ("cnnstudy.config", "cnnstudy.fileio", "cnnstudy.seeds")  # and their modules


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            target = f"{base}.{node.module}" if node.module else base
            for alias in node.names:  # `from . import plots` imports a module
                candidate = f"{target}.{alias.name}"
                found.add(candidate if (PACKAGE.parent / (candidate.replace(".", "/") + ".py")).exists() else target)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found |= {n for n in names if n.startswith("cnnstudy")}
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py") if p.name != "__main__.py"}
    return {name: {i for i in imports_of(path) if i in modules and i != name} for name, path in modules.items()}


def test_no_import_circles():
    edges, state, cycles = graph(), {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def test_the_data_side_imports_nothing_above_it():
    for name, targets in graph().items():
        if name.startswith("cnnstudy.data"):
            above = {t for t in targets if not t.startswith(("cnnstudy.data", *LOWER))}
            assert not above, f"{name} imports {above}"


def test_checkpoint_does_not_import_models():
    assert "cnnstudy.models.registry" not in graph()["cnnstudy.models.checkpoint"]


def test_the_search_the_schedule_and_the_executors_stay_apart():
    """An executor runs any unit anywhere, a sweep only says what to try next: neither knows the other."""
    edges = graph()
    searching = {"cnnstudy.runner.search.sweep", "cnnstudy.runner.search.trials"}
    assert not (searching | {"cnnstudy.runner.execution.schedule"}) & edges["cnnstudy.runner.execution.executors"]
    for name in searching:
        assert not {"cnnstudy.runner.execution.executors", "cnnstudy.runner.execution.schedule"} & edges[name]


def test_the_top_level_holds_only_the_faces_and_the_ground_floor():
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert top == ["__init__", "__main__", "_version", "fileio", "seeds"]
    packages = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
    assert packages == ["cli", "config", "data", "models", "report", "runner", "training", "use"]


def test_the_runner_has_a_room_for_each_part_and_run_study_walks_through_few():
    """runner/: planning, execution, results, search; run_study's own module enters at most five
    packages (its rooms) and climbs out of the runner to at most two (the training and report sides)."""
    runner = sorted(p.parent.name for p in (PACKAGE / "runner").glob("*/__init__.py"))
    assert runner == ["execution", "planning", "results", "search"]
    assert sorted(p.stem for p in (PACKAGE / "runner").glob("*.py")) == ["__init__", "study"]
    targets = graph()["cnnstudy.runner.study"]
    rooms = {t.rsplit(".", 1)[0] for t in targets}
    assert len(rooms) <= 5, rooms
    assert len({room for room in rooms if not room.startswith("cnnstudy.runner")}) <= 2, rooms


def test_no_module_is_over_about_300_lines():
    long = {p.relative_to(PACKAGE).as_posix(): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 320}
    assert not long, long


def test_the_command_line_starts_without_torch():
    """`cnnstudy --version`, `--help` and a Ctrl-C while it starts must not wait for torch to load."""
    import subprocess
    import sys

    code = "import sys, cnnstudy.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_report_imports_no_training():
    """Reports are rebuilt from files alone: nothing under report/ imports training or models."""
    for name, targets in graph().items():
        if name.startswith("cnnstudy.report"):
            assert not {t for t in targets if t.startswith(("cnnstudy.training", "cnnstudy.models"))}, name
