"""Where a command-line setting applies, and what a dataset role stands for.

`--set key=value` reaches every run; `--set phase4.train.lr=0.01` the runs of one phase;
`--set phase4/cnn_head:train.lr=0.01` one run. Later scopes win: study defaults, phase defaults,
the run itself, then --set for every run, for its phase, for the run itself.

A study may name its datasets once (`datasets: {main: food10, transfer3: {dataset: oxford-pets,
classes: [...]}}`) and its runs refer to a role (`data: {dataset: main}`); `--dataset ROLE=PATH`
replaces a role as a whole, its classes included.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from ...config import RunConfig


@dataclass
class Scoped:
    """--set pairs sorted by scope, and the problems of those naming no phase or run of the study."""
    every: list[str] = field(default_factory=list)
    phase: dict[str, list[str]] = field(default_factory=dict)
    run: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    typed: dict[str, str] = field(default_factory=dict)  # a scoped pair without its scope -> as typed

    def pairs_for(self, phase: str, run_id: str) -> list[list[str]]:
        """The layers of --set pairs one run takes, the weakest first."""
        return [self.every, self.phase.get(phase, []), self.run.get(run_id, [])]


def split_overrides(pairs: list[str], phases: list[str], runs: list[str]) -> Scoped:
    scoped = Scoped()
    names = f"phases: {', '.join(phases)}; runs: {', '.join(runs)}"
    for pair in pairs:
        key, sep, value = pair.partition("=")
        scope, colon, setting = key.partition(":")
        first = key.split(".")[0]
        if colon and scope in runs:
            scoped.run.setdefault(scope, []).append(f"{setting}{sep}{value}")
            scoped.typed[f"{setting}{sep}{value}"] = pair
        elif colon and scope in phases:
            scoped.phase.setdefault(scope, []).append(f"{setting}{sep}{value}")
            scoped.typed[f"{setting}{sep}{value}"] = pair
        elif colon:
            scoped.problems.append(f"--set {pair}: {scope!r} is no run or phase of this study ({names})")
        elif first in phases and first not in RunConfig.model_fields and "." in key:
            scoped.phase.setdefault(first, []).append(f"{key.split('.', 1)[1]}{sep}{value}")
            scoped.typed[f"{key.split('.', 1)[1]}{sep}{value}"] = pair
        elif first not in RunConfig.model_fields and "." in key:
            close = difflib.get_close_matches(first, phases, n=1) or \
                difflib.get_close_matches(first, list(RunConfig.model_fields), n=1)
            hint = f"did you mean {close[0]}?" if close else f"settings: {', '.join(RunConfig.model_fields)}"
            scoped.problems.append(f"--set {pair}: {first!r} is neither a run setting nor a phase of this study "
                                   f"({hint}; {names})")
        else:
            scoped.every.append(pair)
    return scoped


def role_problems(given: dict[str, str], roles: dict) -> list[str]:
    """--dataset ROLE=... naming a role the study does not have."""
    known = ", ".join(roles) or "(this study names none: use --set data.dataset=... instead)"
    return [f"--dataset {role}={value}: the study has no dataset role {role!r}; its roles: {known}"
            for role, value in given.items() if role not in roles]


def with_roles(roles: dict, given: dict[str, str]) -> dict[str, dict]:
    """The study's roles as plain {dataset, classes}, each named on the command line replaced whole."""
    found = {name: ({"dataset": role} if isinstance(role, str) else dict(role)) for name, role in roles.items()}
    found.update({name: {"dataset": value, "classes": None, "replaced": True} for name, value in given.items()
                  if name in roles})
    return found


def apply_role(merged: dict, roles: dict[str, dict]) -> str | None:
    """A run's data.dataset naming a role becomes the role's dataset and classes; returns the problem
    if the run also sets data.classes (they belong to the role)."""
    data = merged.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("dataset"), str) or data["dataset"] not in roles:
        return None
    role = roles[data["dataset"]]
    if data.get("classes") is not None and role.get("classes") is not None:
        return (f"data.classes: {data['dataset']!r} is a dataset role whose classes belong to it; set them in "
                f"datasets.{data['dataset']}.classes, not on the run")
    merged["data"] = {**data, "dataset": role["dataset"],
                      **({"classes": role["classes"]} if role.get("classes") is not None else {})}
    return None


def parse_roles(pairs: list[str]) -> dict[str, str]:
    """`--dataset main=/photos/food` pairs as {role: dataset}."""
    from ...config import StudyError

    found = {}
    for pair in pairs:
        role, sep, value = pair.partition("=")
        if not sep or not role or not value:
            raise StudyError(f"--dataset {pair!r}: write it as ROLE=FOLDER_OR_NAME, e.g. --dataset main=/photos/food")
        found[role] = value
    return found
