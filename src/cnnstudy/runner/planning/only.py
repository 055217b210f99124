"""`--only`: run part of a study. The runs named (a phase names all of its runs; a swept run brings
its base setting), and every run they start from, which is said; the rest is left as it is, and the
report is built from what exists."""
from __future__ import annotations

from typing import Callable

from ...config import RunConfig, StudyError
from ..search.sweep import BASE_SUFFIX, base_name


def named_runs(runs: list[RunConfig], only: list[str]) -> set[str]:
    ids, phases = [cfg.run_id for cfg in runs], {cfg.phase for cfg in runs}
    names = [name.strip() for entry in only for name in entry.split(",") if name.strip()]
    if not names:
        raise StudyError("--only names no run or phase; give e.g. --only phase1,phase4/cnn_head")
    unknown = [name for name in names if name not in ids and name not in phases]
    if unknown:
        shown = [run_id for run_id in ids if not run_id.endswith(BASE_SUFFIX)]  # a base comes with its run
        raise StudyError(f"--only {', '.join(unknown)}: no such run or phase in this study; phases: "
                         f"{', '.join(dict.fromkeys(cfg.phase for cfg in runs))}; runs: {', '.join(shown)}")
    wanted = {cfg.run_id for cfg in runs if cfg.run_id in names or cfg.phase in names}
    return wanted | {base_name(run_id) for run_id in wanted if base_name(run_id) in ids}


def select_runs(runs: list[RunConfig], only: list[str], log: Callable[[str], None]) -> list[RunConfig]:
    """The runs `only` asks for and, transitively, those they start from, in study order."""
    wanted = named_runs(runs, only)
    by_id = {cfg.run_id: cfg for cfg in runs}
    for cfg in reversed(runs):  # a source comes before the runs that start from it
        source = cfg.model.init_from
        if cfg.run_id in wanted and source and source not in wanted:
            log(f"--only: {source} runs too, since {cfg.run_id} starts from it")
            wanted.add(source)
            wanted |= {base_name(source)} & set(by_id)
    return [cfg for cfg in runs if cfg.run_id in wanted]


def only_without(runs: list[RunConfig], left_out: set[str]) -> str | None:
    """The --only value that runs everything but the runs `left_out` and those that start from them
    (a phase kept whole is named as the phase); None where nothing would be left."""
    out = set(left_out)
    for cfg in runs:  # a source comes before the runs that start from it
        if cfg.model.init_from in out or base_name(cfg.run_id) in out:
            out.add(cfg.run_id)
    shown = [cfg for cfg in runs if not cfg.run_id.endswith(BASE_SUFFIX)]  # a base comes with its run
    names: list[str] = []
    for phase in dict.fromkeys(cfg.phase for cfg in shown):
        in_phase = [cfg.run_id for cfg in shown if cfg.phase == phase]
        kept = [run_id for run_id in in_phase if run_id not in out]
        names += [phase] if kept == in_phase else kept
    return ",".join(names) or None
