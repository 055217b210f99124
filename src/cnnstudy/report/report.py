"""The study report, rebuilt from the run folders alone: report.md and a self-contained report.html.

It leads with the answer (overview.py: a takeaway, one item per phase, the forest plot, what would
settle each open comparison, every run in one table), then the data check, each phase's runs in
detail (folded in HTML), the exploratory per-class comparisons, and every run (and repeat) in one table.
"""
from __future__ import annotations

from pathlib import Path

from .compare import comparisons, phase_compare
from .datacheck import data_lines, data_section, gather, leak_notes
from ..fileio import atomic_write_text
from .groups import Group, group_records, verdict_counts
from .overview import answer_blocks, exploratory_blocks
from ..runner.results.progress import running_note, session_of
from ..runner.results.records import RunRecord, collect_records, study_phases, study_roles, study_runs
from .render import to_html, to_markdown
from .runs import repeated_blocks, run_blocks
from .sweeps import sweep_blocks
from .summary import COLUMNS, SUMMARY_NOTE, summary_rows

Blocks = list[tuple[str, object]]


def phase_blocks(study_dir: Path, records: dict[str, list[RunRecord]], groups: dict[str, Group]) -> Blocks:
    blocks: Blocks = []
    current = None
    for phase, run in study_runs(study_dir):
        if phase["name"] != current:
            current = phase["name"]
            blocks.append(("h2", f"{phase['name']}: {phase['title']}" if phase["title"] else phase["name"]))
            if phase["description"]:
                blocks.append(("p", phase["description"]))
        run_id = f"{phase['name']}/{run['name']}"
        if run.get("sweep"):
            blocks += folded(sweep_blocks(study_dir, run, run_id))
        if run.get("repeats", 1) > 1:
            blocks += folded(repeated_blocks(records[run_id], groups.get(run_id), run["model"]["name"]),
                             groups.get(run_id))
        else:
            blocks += folded(run_blocks(records[run_id][0], run["model"]["name"]), groups.get(run_id))
    return blocks


def folded(blocks: Blocks, group: Group | None = None) -> Blocks:
    """A run's section folded under its title (in HTML), the title carrying its verdict and test score;
    a repeated run's names its repeats' verdicts and their mean, above the section of its best repeat."""
    if not blocks or blocks[0][0] != "h3":
        return blocks
    if group is None:
        return [("fold", blocks[0][1]), *blocks[1:], ("endfold", "")]
    score = group.mean_std_text("test_acc")
    score = f", test {score}%" if score else ""
    if len(group.records) == 1:
        return [("fold", f"{blocks[0][1]}: {group.verdict}{score}"), *blocks[1:], ("endfold", "")]
    return [("fold", f"{group.name} — {group.first['model']} ({group.first['init']}), {len(group.records)} repeats: "
                     f"{verdict_counts(group)}{score}"), *blocks, ("endfold", "")]


def roles_blocks(study_dir: Path, records: list[RunRecord]) -> Blocks:
    """Which dataset the finished runs were trained and scored on, with the role that names it now
    (a run made under an earlier --dataset keeps the dataset it used, whatever the role says since)."""
    roles = study_roles(study_dir)
    used: dict[str, list[str]] = {}
    for record in records:
        if record.metrics is not None and record.run_id not in used.get(record.metrics["dataset"], []):
            used.setdefault(record.metrics["dataset"], []).append(record.run_id)
    if not roles and len(used) <= 1:
        return []
    said = []
    for dataset, runs in used.items():
        role = next((name for name, role in roles.items() if Path(str(role["dataset"])).name == Path(dataset).name), None)
        facts = roles.get(role, {})
        notes = ([f"classes {', '.join(facts['classes'])}"] if facts.get("classes") else []) + \
            (["given with --dataset"] if facts.get("replaced") else []) + \
            [", ".join(runs) if len(runs) <= 3 else f"{len(runs)} runs"]
        said.append((f"**{role}**: " if role else "") + f"{Path(dataset).name} ({'; '.join(notes)})")
    return [("p", "Datasets: " + "; ".join(said) + ".")] if said else []


def build_report(study_dir: str | Path) -> tuple[Path, Path]:
    """Write report.md and report.html into the study folder; needs only the files a study wrote. A
    build that a new `cnnstudy run` of the study overtook (its progress file now another run's) writes
    nothing: that run's own reports follow."""
    study_dir = Path(study_dir)
    session = session_of(study_dir)
    if not (study_dir / "study.yaml").exists():
        raise FileNotFoundError(f"{study_dir} is not a study folder (no study.yaml); pass runs/<study>")
    records = collect_records(study_dir)  # every run folder read once
    by_run: dict[str, list[RunRecord]] = {}
    for record in records:
        by_run.setdefault(record.run_id, []).append(record)
    groups = group_records(records)
    found = comparisons(groups, phase_compare(study_phases(study_dir)))
    checked = gather(study_dir, records)  # the data check's files and predictions read once
    running = running_note(study_dir)
    blocks: Blocks = [*([("note", running)] if running else []), ("h1", f"Study report: {study_dir.name}"),
                      *roles_blocks(study_dir, records),
                      *data_lines(checked), *answer_blocks(study_dir, records, groups, found, leak_notes(checked)),
                      *data_section(study_dir, checked), *phase_blocks(study_dir, by_run, {g.run_id: g for g in groups}),
                      *exploratory_blocks(groups, found), ("h2", "All runs"), ("p", SUMMARY_NOTE), ("table", (summary_rows(records), COLUMNS))]
    if session_of(study_dir) == session:
        atomic_write_text(study_dir / "report.md", to_markdown(blocks, study_dir))
        atomic_write_text(study_dir / "report.html", to_html(blocks, f"cnnstudy: {study_dir.name}"))
    return study_dir / "report.md", study_dir / "report.html"
