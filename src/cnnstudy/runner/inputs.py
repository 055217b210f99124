"""Everything a study reads from outside: its datasets and pretrained weights, made present before
the first run trains (fetched where allowed), or one line per missing item naming the file, its
URL and the folder to put it in."""
from __future__ import annotations

import os
from pathlib import Path

from ..config import RunConfig, StudyError
from ..data.catalogue import CATALOGUE, fetch_dataset, manual_instructions
from ..data.errors import DataError
from ..data.sources import find_dataset
from ..models.weights import needed_weights


def offline_from_env() -> bool:
    """CNNSTUDY_OFFLINE=1 (tests, air-gapped machines) means --offline for every command."""
    return os.environ.get("CNNSTUDY_OFFLINE", "").strip().lower() in ("1", "true", "yes")


def missing_datasets(runs: list[RunConfig], base: Path) -> list[str]:
    """Catalogue names the runs use that are not on disk yet."""
    names = dict.fromkeys(cfg.data.dataset for cfg in runs)
    return [name for name in names if find_dataset(name, base)[0] is None and name in CATALOGUE]


def swept_choices(runs: list[RunConfig]) -> list[RunConfig]:
    """A run for every value a sweep may try (a swept model.name or model.pretrained needs its weights too)."""
    from .sweep import check_sweep

    return [trial for cfg in runs if cfg.sweep is not None for trial in check_sweep(cfg, f"run {cfg.run_id}")]


def ensure_inputs(runs: list[RunConfig], base: Path, offline: bool = False, log=print) -> None:
    """Fetch what is missing; stop with every problem at once, before anything trains."""
    problems: list[str] = []
    for name in missing_datasets(runs, base):
        if offline:
            problems += manual_instructions(CATALOGUE[name])
            continue
        try:
            fetch_dataset(name, log=log)
        except DataError as err:
            problems.append(f"{name}: {err}")
    for item in needed_weights(runs + swept_choices(runs)):
        try:
            if offline and item.local() is None:
                problems.append(item.instructions())
                continue
            item.fetch()
        except DataError as err:
            problems.append(f"{item.instructions()}: {err}")
    if problems:
        reason = "and --offline forbids fetching them" if offline else "and some could not be fetched"
        raise StudyError(f"the study needs files that are not on this machine, {reason}; nothing was trained:\n  "
                         + "\n  ".join(problems))
