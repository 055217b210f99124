"""Everything a study reads from outside: its datasets and pretrained weights, made present before
the first run trains (fetched where allowed), or one line per missing item naming the file, its
URL and the folder to put it in."""
from __future__ import annotations

import os
from pathlib import Path

from ...config import RunConfig, StudyError
from ...data.catalogue import CATALOGUE, fetch_dataset, manual_instructions
from ...data.errors import DataError
from ...data.sources import find_dataset
from ...models.weights import needed_weights
from .only import only_without


def offline_from_env() -> bool:
    """CNNSTUDY_OFFLINE=1 (tests, air-gapped machines) means --offline for every command."""
    return os.environ.get("CNNSTUDY_OFFLINE", "").strip().lower() in ("1", "true", "yes")


def missing_datasets(runs: list[RunConfig], base: Path) -> list[str]:
    """Catalogue names the runs use that are not on disk yet."""
    names = dict.fromkeys(cfg.data.dataset for cfg in runs)
    return [name for name in names if find_dataset(name, base)[0] is None and name in CATALOGUE]


def swept_choices(runs: list[RunConfig]) -> list[RunConfig]:
    """A run for every value a sweep may try (a swept model.name or model.pretrained needs its weights too)."""
    from ..search.sweep import check_sweep

    return [trial for cfg in runs if cfg.sweep is not None for trial in check_sweep(cfg, f"run {cfg.run_id}")]


def ensure_inputs(runs: list[RunConfig], base: Path, offline: bool = False, log=print,
                  every_run: list[RunConfig] | None = None, rerun: str = "the same command with --only {}") -> None:
    """Fetch what `runs` need; stop with every problem at once, before anything trains. `every_run`:
    the whole study, where `runs` is the part --only chose (for the --only value the message suggests);
    `rerun`: the command that message suggests, `{}` standing for the --only value."""
    problems, datasets = fetch_datasets(runs, base, offline, log)
    failed: set[str] = set()
    for item in needed_weights(runs + swept_choices(runs)):
        try:
            if offline and item.local() is None:
                problems.append(item.instructions())
                failed.add(item.model)
                continue
            item.fetch()
        except DataError as err:
            problems.append(f"{item.instructions()}: {err}")
            failed.add(item.model)
    if problems:
        reason = "and --offline forbids fetching them" if offline else "and some could not be fetched"
        raise StudyError(f"the study needs files that are not on this machine, {reason}; nothing was trained:\n  "
                         + "\n  ".join(problems) + ways_round(runs, every_run or runs, datasets, failed, rerun))


def fetch_datasets(runs: list[RunConfig], base: Path, offline: bool, log) -> tuple[list[str], list[str]]:
    """Each missing catalogue dataset fetched (not offline); the problems, and the datasets still missing."""
    problems, missing = [], []
    for name in missing_datasets(runs, base):
        if offline:
            problems += manual_instructions(CATALOGUE[name])
            missing.append(name)
            continue
        try:
            fetch_dataset(name, log=log)
        except DataError as err:
            problems.append(f"{name}: {err}")
            missing.append(name)
    return problems, missing


def ways_round(runs: list[RunConfig], every_run: list[RunConfig], datasets: list[str], models: set[str],
               rerun: str = "the same command with --only {}") -> str:
    """The other ways to go on: datasets already on disk elsewhere, or the runs asked for that need none
    of the missing weights (as an --only value over the whole study)."""
    lines = []
    if datasets:
        lines.append(f"already on disk elsewhere? Point CNNSTUDY_DATA at the folder that holds "
                     f"{' and '.join(name + '/' for name in datasets)} (folders separated by ':')")
    left_out = {cfg.run_id for cfg in runs if cfg.model.pretrained and cfg.model.name in models}
    asked = {cfg.run_id for cfg in runs}
    rest = only_without(every_run, left_out | {cfg.run_id for cfg in every_run if cfg.run_id not in asked}) \
        if left_out and not datasets else None
    if rest:
        lines.append(f"or run the rest without those weights: {rerun.format(rest)}")
    return "".join(f"\n{line}" for line in lines)
