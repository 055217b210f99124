"""Hyper-parameter sweeps: a run's `sweep:` searched with Optuna, its trials runs of their own.

The search is Optuna's ask/tell: only the study's driver process asks for settings, records what
each trial reached (every epoch's metric as an intermediate value) and writes the SQLite storage
`<phase>/<run>/sweep.db`, so a killed sweep continues where it stopped and never exceeds `trials`.
Who trains a trial (this process, a worker, a Ray task) is none of its business: a trial is a
unit like any run, and pruning is decided where it trains, against a snapshot of the trials
finished when it was handed out (`PruneWatch`).

Selection uses the validation split only: trials score no test image. Once every trial is told,
the best setting is trained `confirm` times as the run itself and compared with the run's own
setting (`<run>.base`, as many repeats) by the report's comparison machinery.

This module says what a sweep is (its keys checked, its trials' configs, its budget, its files);
trials.py holds Optuna's side (samplers, pruners, the Sweep that asks and tells, PruneWatch).
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ...config import AugmentConfig, ParamRange, RunConfig, StudyError, SweepConfig
from ...fileio import read_json
from ...seeds import confirm_seed
from ..planning.fingerprint import flatten
from ..planning.studyfile import explain

BASE_SUFFIX = ".base"
STATE_FILE, TABLE_FILE, STORAGE_FILE, TRIALS_DIR = "sweep.json", "sweep.csv", "sweep.db", "trials"
# Swept keys that would change the split (so val_acc would compare other images) or the run's identity.
FIXED_KEYS = ("name", "phase", "repeats", "sweep", "seed", "device", "data.dataset", "data.split",
              "data.limit_per_class", "data.classes", "data.conflicts", "data.exclude")
# Swept keys the trials would not honour: a trial starts from the run's own init_from checkpoint.
UNHONOURED_KEYS = ("model.init_from",)


class TrialPruned(Exception):
    """Raised after an epoch's files are written when the pruner stops the trial there."""


def base_name(name: str) -> str:
    return f"{name}{BASE_SUFFIX}"


def expand_sweeps(runs: list[RunConfig], source: str) -> list[RunConfig]:
    """A swept run becomes two: `<run>.base` (the run's own setting) and the run itself, whose
    `repeats` are the sweep's `confirm` (the confirmation of the best setting). Both take the seed of
    the confirmation (seeds.confirm_seed), which no trial used, and so the same seeds repeat by repeat."""
    expanded = []
    for cfg in runs:
        if cfg.sweep is None:
            expanded.append(cfg)
            continue
        if cfg.repeats != 1:
            raise StudyError(f"run {cfg.run_id}: repeats {cfg.repeats} on a swept run; set "
                             f"sweep.confirm: {cfg.repeats} instead (repeats of the best and of the base setting)")
        confirm = cfg.sweep.confirm
        expanded.append(cfg.model_copy(update={"name": base_name(cfg.name), "sweep": None, "repeats": confirm,
                                               "seed": confirm_seed(cfg.seed)}))
        expanded.append(cfg.model_copy(update={"repeats": confirm}))
    return expanded


def _with_params(cfg: RunConfig, params: dict[str, Any], **fixed: Any) -> RunConfig:
    # Only what the study set: a rule on an unset key (onecycle needs train.epochs) still applies.
    raw = cfg.model_dump(mode="json", exclude_unset=True)
    for key, value in params.items():
        *parents, leaf = key.split(".")
        node = raw
        for part in parents:
            if part == "augment" and isinstance(node.get(part, "none"), str):  # a policy name, swept in parts
                node[part] = {"policy": node.get(part, "none")}
            node = node.setdefault(part, {})
        node[leaf] = value
    raw.update(fixed)
    return RunConfig.model_validate(raw)


def trial_config(cfg: RunConfig, params: dict[str, Any]) -> RunConfig:
    """One trial: the run's setting with `params` applied, trained once, with the run's seed."""
    return _with_params(cfg, params, repeats=1, sweep=None)


def confirmed_config(cfg: RunConfig, params: dict[str, Any]) -> RunConfig:
    """The run itself once its sweep is over: the best params, the sweep (it is part of the
    fingerprint), `confirm` repeats and the confirmation's seed (the base setting's too)."""
    return _with_params(cfg, params, seed=confirm_seed(cfg.seed))


def check_sweep(cfg: RunConfig, where: str) -> list[RunConfig]:
    """Before anything trains: every swept key exists and may be swept, and every choice and both
    ends of every range make a valid run. Returns those trial configs for further checks."""
    sweep = cfg.sweep
    known = set(flatten(cfg.model_dump(mode="json"))) | {f"augment.{key}" for key in AugmentConfig.model_fields}
    for key in sweep.params:
        if any(key == fixed or key.startswith(fixed + ".") for fixed in FIXED_KEYS):
            raise StudyError(f"{where}: sweep.params.{key} cannot be swept: it changes the split or what the run "
                             "is, so trials would not be comparable; set it on the run instead")
        if key in UNHONOURED_KEYS:
            raise StudyError(f"{where}: sweep.params.{key} cannot be swept: every trial starts from the run's own "
                             "model.init_from; make one run per starting point instead")
        if key not in known:
            raise StudyError(f"{where}: sweep.params.{key} is not a setting of this run; use a dotted key such "
                             "as train.lr, train.batch_size, augment or model.freeze")
    if sweep.method == "grid":
        try:
            grid_points(sweep)  # refuses ranges without a step
        except StudyError as err:
            raise StudyError(f"{where}: {err}") from None
    configs = []
    # A swept train.epochs goes with every value tried (it sets what onecycle needs set).
    epochs = sweep.params.get("train.epochs")
    fill = {} if epochs is None else {"train.epochs": epochs[0] if isinstance(epochs, list) else epochs.low}
    for key, space in sweep.params.items():
        values = space if isinstance(space, list) else [space.low, space.high]
        for value in values:
            try:
                configs.append(trial_config(cfg, {**fill, key: value}))
            except ValidationError as err:
                raise explain(err, f"{where}: sweep.params.{key} value {value!r}", RunConfig) from None
    return configs


def _range_values(key: str, space: ParamRange) -> list[float | int]:
    if space.step is None:
        raise StudyError(f"sweep.params.{key}: method grid needs a list of values, or a range with a step")
    count = int((space.high - space.low) / space.step + 1e-9) + 1
    return [space.low + i * space.step if space.integer else round(space.low + i * space.step, 12)
            for i in range(count)]


def grid_points(sweep: SweepConfig) -> dict[str, list[Any]]:
    return {key: space if isinstance(space, list) else _range_values(key, space)
            for key, space in sweep.params.items()}


def trial_budget(sweep: SweepConfig) -> int:
    """`trials`, or fewer for a grid with fewer points (each point is tried once)."""
    if sweep.method != "grid":
        return sweep.trials
    return min(sweep.trials, len(list(itertools.product(*grid_points(sweep).values()))))


def sweep_units(cfg: RunConfig) -> int:
    """The units a swept run trains: its trials, then its confirmation repeats (each in every fold)."""
    return trial_budget(cfg.sweep) + cfg.repeats * (cfg.data.split.folds or 1)


def direction(sweep: SweepConfig) -> str:
    return "maximize" if sweep.metric == "val_acc" else "minimize"


def objective(metric: str, history: list[dict]) -> float | None:
    """A trial's value: its best epoch by the metric (the best checkpoint is chosen by val_acc)."""
    values = [row[metric] for row in history if metric in row]
    if not values:
        return None
    return max(values) if metric == "val_acc" else min(values)


def read_state(group: Path) -> dict | None:
    path = group / STATE_FILE
    try:
        return read_json(path) if path.exists() else None
    except ValueError:
        return {}  # unreadable: what it was made from is unknown
