"""Reading a study file: the YAML parsed, every run's settings merged (study defaults, phase
defaults, the run, then `--set`) and validated, and every problem the file has named at once, each
with its key and a close valid key where there is one, so that a user fixes them in one go."""
from __future__ import annotations

import difflib
import typing
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from ..config import RunConfig, StudyConfig, StudyError, deep_merge


def parse_overrides(pairs: list[str]) -> dict:
    """`--set train.epochs=2 data.limit_per_class=50` as a nested dict, values read as YAML scalars."""
    result: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
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
        candidates = [annotation, *typing.get_args(annotation)]
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    return current


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
        location = tuple(problem["loc"])
        key = ".".join(map(str, location)) or "(top level)"
        given = (typed or {}).get(key)
        head = f"--set {given}: " if given else ""
        if problem["type"] == "extra_forbidden":
            lines.append(f"{head}unknown key {key}{_suggest(location, model)}")
        elif problem["type"] == "missing":
            lines.append(f"{head}missing key {key}: add it")
        else:
            message = problem["msg"].removeprefix("Value error, ")
            lines.append(f"{head or key + ': '}{message} (got {problem.get('input')!r})")
    return lines


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


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
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


def _run_configs(raw: dict, overrides: dict, typed: dict[str, str], lines: list[str]) -> list[RunConfig]:
    """Every run's merged settings validated; each run's problems added to `lines`."""
    from ..models.registry import model_problem

    runs, defaults = [], raw.get("defaults") if isinstance(raw.get("defaults"), dict) else {}
    for phase in _phases(raw):
        phase_defaults = phase.get("defaults") if isinstance(phase.get("defaults"), dict) else {}
        for raw_run in (r for r in phase.get("runs") or [] if isinstance(r, dict)):
            merged: dict = {}
            for layer in (defaults, phase_defaults, raw_run, overrides):
                merged = deep_merge(merged, _expand(layer))
            merged["phase"] = phase.get("name", "?")
            where = f"phase {phase.get('name', '?')!r}, run {raw_run.get('name', '?')!r}: "
            try:
                runs.append(RunConfig.model_validate(merged))
            except ValidationError as err:
                lines += [line if line.startswith("--set ") else where + line
                          for line in problem_lines(err, RunConfig, typed)]
                name = (merged.get("model") or {}).get("name") if isinstance(merged.get("model"), dict) else None
                wrong_model = model_problem(name) if isinstance(name, str) else None
                lines += [f"{where}model.name: {wrong_model}"] if wrong_model else []
    return runs


def load_study(path: str | Path, pairs: list[str] | None = None) -> tuple[StudyConfig, list[RunConfig]]:
    """The study and every run's validated settings, or one StudyError naming every problem found:
    the file's own keys, and each run's (whatever the first problem was)."""
    raw, lines = read_yaml(path), []
    overrides = parse_overrides(pairs or [])
    typed = {pair.partition("=")[0]: pair for pair in pairs or []}
    study = None
    try:
        study = StudyConfig.model_validate(raw)
    except ValidationError as err:
        lines += problem_lines(err, StudyConfig)
    runs = _run_configs(raw, overrides, typed, lines)
    raise_problems(str(path), lines)
    return study, runs
