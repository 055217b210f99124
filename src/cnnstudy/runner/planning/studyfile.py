"""Reading a study file: the YAML parsed, every run's settings merged (study defaults, phase
defaults, the run, then `--set`) and validated, and every problem the file has named at once, each
with its key and a close valid key where there is one, so that a user fixes them in one go."""
from __future__ import annotations

import difflib
import typing
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from ...config import RunConfig, StudyConfig, StudyError, deep_merge
from ...models.names import unknown_model_problem
from .scopes import Scoped, apply_role, role_problems, split_overrides, with_roles


def parse_overrides(pairs: list[str]) -> dict:
    """`--set train.epochs=2 data.limit_per_class=50` as a nested dict, values read as YAML scalars."""
    result: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key or "" in key.split("."):
            raise StudyError(f"--set {pair!r}: write it as key=value, e.g. --set train.epochs=2")
        node = result
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw)
    return result


def _model_at(model: type[BaseModel], path: tuple) -> type[BaseModel] | None:
    """The pydantic model that holds the keys at `path` (list items and dict values unwrapped)."""
    current: type[BaseModel] | None = model
    for part in path:
        if isinstance(part, int) or current is None:
            continue  # a list index: the item's model is already the annotation's
        annotation = getattr(current.model_fields.get(str(part)), "annotation", None)
        candidates = _flat_types(annotation)
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    return current


def _flat_types(annotation) -> list:
    """An annotation and every type inside it (Optional, Union, Annotated, nested)."""
    return [annotation, *(inner for arg in typing.get_args(annotation) for inner in _flat_types(arg))]


def _suggest(location: tuple, model: type[BaseModel]) -> str:
    fields = _model_at(model, location[:-1])
    if not fields:
        return ""
    close = difflib.get_close_matches(str(location[-1]), list(fields.model_fields), n=1)
    return f" (did you mean {'.'.join(map(str, location[:-1] + (close[0],)))}?)" if close else \
        f" (allowed: {', '.join(fields.model_fields)})"


def problem_lines(err: ValidationError, model: type[BaseModel], typed: dict[str, str] | None = None) -> list[str]:
    """One line per problem pydantic found. `typed`: the --set pairs as given, by key: a problem in one
    of those values is named as the user typed it (`--set train.epochs=two`), not as a key of the file."""
    lines = []
    for problem in err.errors():
        location = tuple(part for part in problem["loc"] if not str(part).startswith("<"))  # union tags
        key = ".".join(map(str, location)) or "(top level)"
        given = from_command_line(key, typed or {})
        head = f"--set {given}: " if given else ""
        if problem["type"] == "extra_forbidden":
            lines.append(f"{head}unknown key {key}{_suggest(location, model)}")
        elif problem["type"] == "missing":
            lines.append(f"{head}missing key {key}: add it")
        else:
            message = problem["msg"].removeprefix("Value error, ")
            got = problem.get("input")
            lines.append(f"{head or key + ': '}{message}" + ("" if isinstance(got, dict) else f" (got {got!r})"))
    return lines


def from_command_line(key: str, typed: dict[str, str]) -> str | None:
    """The --set pair a problem at `key` came from: that very key, or one below it (`--set
    trian.epochs=2` makes an unknown key `trian`)."""
    return typed.get(key) or next((pair for name, pair in typed.items() if name.startswith(key + ".")), None)


def explain(err: ValidationError, where: str, model: type[BaseModel]) -> StudyError:
    return StudyError(f"{where}: " + "; ".join(problem_lines(err, model)))


def raise_problems(source: str, lines: list[str]) -> None:
    """Every problem in one message (each once); nothing when there is none."""
    unique = list(dict.fromkeys(lines))
    if len(unique) == 1:
        raise StudyError(f"{source}: {unique[0]}")
    if unique:
        raise StudyError(f"{source}: {len(unique)} problems; nothing was run:\n" +
                         "\n".join(f"  {line}" for line in unique))


def merge_by_run(problems: list[str]) -> list[str]:
    """"run a: X" and "run b: X" said once, as "runs a, b: X" (a missing folder shared by a phase's runs)."""
    merged: dict[str, list[str]] = {}
    for line in problems:
        head, sep, rest = line.partition(": ")
        if sep and head.startswith("run ") and " " not in head[4:]:
            runs = merged.setdefault(rest, [])
            runs += [] if head[4:] in runs else [head[4:]]
        else:
            merged.setdefault(line, [])
    return [f"run{'s' if len(runs) > 1 else ''} {', '.join(runs)}: {text}" if runs else text
            for text, runs in merged.items()]


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        raise StudyError(f"{path} is a folder, not a study file: pass a YAML study such as studies/quick.yaml, or "
                         f"write one for these images: cnnstudy init my_study.yaml --dataset main={path}")
    if not path.is_file():
        raise StudyError(f"study file {path} does not exist; pass the path of a YAML study such as "
                         "studies/quick.yaml")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise StudyError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise StudyError(f"{path} must be a mapping with keys name, defaults, phases")
    return raw


def _expand(layer: dict) -> dict:
    """`model: cnn_slim` means `model: {name: cnn_slim}`, so that layers merge key by key."""
    return {**layer, "model": {"name": layer["model"]}} if isinstance(layer.get("model"), str) else layer


def _phases(raw: dict) -> list[dict]:
    """The phases of a raw study as far as they can be read (for problems, even where some cannot)."""
    phases = raw.get("phases") if isinstance(raw.get("phases"), list) else []
    return [p for p in phases if isinstance(p, dict)]


def _merged_run(raw: dict, phase: dict, raw_run: dict, scoped: Scoped) -> tuple[dict, dict[str, str]]:
    """A run's settings merged, the weakest layer first, and the --set pairs that reach it by key."""
    defaults = raw.get("defaults") if isinstance(raw.get("defaults"), dict) else {}
    phase_defaults = phase.get("defaults") if isinstance(phase.get("defaults"), dict) else {}
    layers = scoped.pairs_for(phase.get("name", "?"), f"{phase.get('name', '?')}/{raw_run.get('name', '?')}")
    merged: dict = {}
    for layer in (defaults, phase_defaults, raw_run, *map(parse_overrides, layers)):
        merged = deep_merge(merged, _expand(layer))
    merged["phase"] = phase.get("name", "?")
    return merged, {pair.partition("=")[0]: scoped.typed.get(pair, pair) for layer in layers for pair in layer}


def _run_problems(merged: dict, typed: dict[str, str], roles: dict[str, dict], deep: bool
                  ) -> tuple[RunConfig | None, list[str]]:
    """The run's validated settings (None if they do not validate) and its problems; a problem that
    came with a --set pair names the pair as typed. Not `deep`: no torch, so timm names go unchecked
    and a timm model's image size is not filled in."""
    found = [problem] if (problem := apply_role(merged, roles)) else []
    if deep:
        _weights_size(merged)
    cfg = None
    try:
        cfg = RunConfig.model_validate(merged)
    except ValidationError as err:
        found += problem_lines(err, RunConfig, typed)
    name = (merged.get("model") or {}).get("name") if isinstance(merged.get("model"), dict) else None
    wrong_model = _name_problem(name, deep) if isinstance(name, str) else None
    given = typed.get("model") or typed.get("model.name")
    if wrong_model and (cfg is None or given):  # a valid run's own model is checked with the rest (checks.py)
        found.append(f"--set {given}: {wrong_model}" if given else f"model.name: {wrong_model}")
    return (cfg if not found else None), found


def _name_problem(name: str, deep: bool) -> str | None:
    if not deep:
        return unknown_model_problem(name)
    from ...models.registry import model_problem

    return model_problem(name)


def _weights_size(merged: dict) -> None:
    """data.image_size, where the run leaves it unset, is the size a timm model's pretrained weights were
    trained at (their pretrained_cfg's input size), as timm's own data config would choose."""
    from ...models.registry import get_spec, model_problem

    model, data = merged.get("model"), merged.get("data")
    if not isinstance(model, dict) or not isinstance(data, dict) or "image_size" in data:
        return
    name = model.get("name")
    if model.get("pretrained") is True and isinstance(name, str) and name.startswith("timm/") \
            and model_problem(name) is None and get_spec(name).input_size:
        data["image_size"] = get_spec(name).input_size


def _run_configs(raw: dict, scoped: Scoped, roles: dict[str, dict], lines: list[str], deep: bool) -> list[RunConfig]:
    """Every run's merged settings validated; the problems added to `lines`, each once: a --set pair's
    once for all runs, and a problem every run has (a typo in `defaults`) once, as every run's."""
    runs, per_run = [], []
    for phase in _phases(raw):
        for raw_run in (r for r in phase.get("runs") or [] if isinstance(r, dict)):
            cfg, found = _run_problems(*_merged_run(raw, phase, raw_run, scoped), roles, deep)
            runs += [cfg] if cfg is not None else []
            per_run.append((f"phase {phase.get('name', '?')!r}, run {raw_run.get('name', '?')!r}: ", found))
    everywhere = set.intersection(*(set(found) for _, found in per_run)) if len(per_run) > 1 else set()
    for where, found in per_run:
        lines += [line if line.startswith("--set ") else f"every run: {line}" if line in everywhere else where + line
                  for line in found]
    return runs


def _names(raw: dict) -> tuple[list[str], list[str]]:
    """The phase names and run ids of a raw study, as far as they can be read."""
    phases = [str(p.get("name")) for p in _phases(raw)]
    runs = [f"{p.get('name')}/{r.get('name')}" for p in _phases(raw) for r in p.get("runs") or [] if isinstance(r, dict)]
    return phases, runs


def load_study(path: str | Path, pairs: list[str] | None = None, datasets: dict[str, str] | None = None,
               deep: bool = True) -> tuple[StudyConfig | None, list[RunConfig], list[str], set[str]]:
    """The study, the runs whose settings validate, every problem found (the file's own keys, each
    run's, --set / --dataset pairs naming no phase, run or role of the study) and the ids of the runs
    that did not validate. `datasets`: roles replaced ({role: folder or name}). `deep` False: read
    without importing torch (runner/planning/precheck.py)."""
    raw, lines = read_yaml(path), []
    scoped = split_overrides(pairs or [], *_names(raw))
    lines += scoped.problems
    study = None
    try:
        study = StudyConfig.model_validate(raw)
    except ValidationError as err:
        lines += problem_lines(err, StudyConfig)
    raw_roles = study.datasets if study is not None else {}
    lines += role_problems(datasets or {}, raw_roles)
    roles = with_roles({name: role.model_dump() for name, role in raw_roles.items()}, datasets or {})
    runs = _run_configs(raw, scoped, roles, lines, deep)
    if study is not None:
        study.use_roles(roles)  # what each role was, for the resolved study.yaml and the report
    return study, runs, lines, set(_names(raw)[1]) - {cfg.run_id for cfg in runs}
