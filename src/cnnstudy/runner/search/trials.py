"""The search itself (Optuna), on the driver's side and the trainer's: the sampler and pruner a
sweep asks for, the `Sweep` that hands out trials and records their results in the SQLite storage
and sweep.csv/json, and the `PruneWatch` a trial's trainer consults after every epoch. What a sweep
is (its keys, its trials' configs, its budget) lives in sweep.py."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...config import RunConfig, StudyError, SweepConfig
from ...fileio import atomic_write_text, write_json
from ...seeds import derive_seed
from .sweep import STATE_FILE, STORAGE_FILE, TABLE_FILE, TrialPruned, direction, grid_points, objective, \
    trial_budget

def distributions(sweep: SweepConfig) -> dict:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    found = {}
    for key, space in sweep.params.items():
        if isinstance(space, list):
            found[key] = CategoricalDistribution(space)
        elif space.integer:
            found[key] = IntDistribution(int(space.low), int(space.high), log=space.log, step=int(space.step or 1))
        else:
            found[key] = FloatDistribution(float(space.low), float(space.high), log=space.log,
                                           step=None if space.step is None else float(space.step))
    return found


def make_sampler(sweep: SweepConfig, seed: int):
    import optuna

    if sweep.method == "grid":
        return optuna.samplers.GridSampler(grid_points(sweep), seed=seed)
    if sweep.method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # constant_liar: trials handed out side by side (--jobs) are kept apart.
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def make_pruner(prune: str, epochs: int):
    import optuna

    if prune == "median":  # judged once two trials have finished, from the second epoch (step 2) on
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2)
    if prune == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=3)
    return optuna.pruners.NopPruner()


@dataclass
class TrialSpec:
    """What a trial's trainer needs to prune: its number and the finished trials it is judged against."""
    number: int
    params: dict[str, Any]
    metric: str
    direction: str
    prune: str
    epochs: int
    study_name: str
    snapshot: list  # optuna FrozenTrial of the trials finished when this one was handed out


class PruneWatch:
    """Called with every epoch's row (after its files are written): reports the metric to an
    in-memory copy of the search and raises TrialPruned when the pruner says so.

    The copy numbers its trials as the driver's storage does (a trial not finished yet is a failed
    placeholder, which no pruner counts), because Hyperband assigns a trial's bracket by its number;
    and the finished trials carry the rung values their own watch recorded (`rung_values`, carried
    back to the driver by Sweep.record), which successive halving compares against."""

    def __init__(self, spec: TrialSpec) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.metric, self.epochs = spec.metric, spec.epochs
        self.study = optuna.create_study(study_name=spec.study_name, direction=spec.direction,
                                         pruner=make_pruner(spec.prune, spec.epochs))
        finished = {t.number: t for t in spec.snapshot}
        for number in range(spec.number):
            self.study.add_trial(finished.get(number) or optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
        self.trial = self.study.ask()

    def __call__(self, row: dict) -> None:
        self.trial.report(row[self.metric], row["epoch"])
        if row["epoch"] < self.epochs and self.trial.should_prune():  # after the last epoch it is complete
            raise TrialPruned(f"pruned after epoch {row['epoch']} ({self.metric} {row[self.metric]:.4f})")

    def rung_values(self) -> dict[str, float]:
        """What the pruner recorded of this trial (successive halving's completed_rung_<k> values)."""
        attrs = self.study._storage.get_trial(self.trial._trial_id).system_attrs  # where the pruner writes them
        return {key: value for key, value in attrs.items() if key.startswith("completed_rung_")}


def sweep_table(trials: list, params: list[str]) -> str:
    """sweep.csv: one row per trial."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["trial", "state", "value", *params, "epochs", "seconds", "error"])
    for trial in trials:
        attrs = trial.user_attrs
        writer.writerow([trial.number, _state_word(trial), "" if trial.value is None else f"{trial.value:.6g}",
                         *[trial.params.get(key, "") for key in params], attrs.get("epochs", ""),
                         f"{attrs['seconds']:.1f}" if "seconds" in attrs else "", attrs.get("error", "")])
    return buffer.getvalue()


def _state_word(trial) -> str:
    if trial.user_attrs.get("diverged"):
        return "diverged"
    return {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}.get(trial.state.name, "running")


def sweep_seed(seed: int, number: int) -> int:
    """The sampler's seed for trial `number`: a resumed sweep asks what an uninterrupted one would."""
    return derive_seed(seed, "sweep", number) % 2**32


class Sweep:
    """The driver's side of one run's sweep: hands out trials, records results, writes sweep.csv/json."""

    def __init__(self, cfg: RunConfig, group: Path, made_from: dict) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.cfg, self.spec, self.group, self.made_from = cfg, cfg.sweep, group, made_from
        self.budget = trial_budget(self.spec)
        group.mkdir(parents=True, exist_ok=True)
        self.study = optuna.create_study(
            storage=f"sqlite:///{(group / STORAGE_FILE).resolve()}", study_name=cfg.run_id,
            direction=direction(self.spec), load_if_exists=True, sampler=make_sampler(self.spec, cfg.seed))
        # Trials left running by a killed sweep: this process holds the study lock, so nobody else runs them.
        self.orphans = [t for t in self.study.get_trials(deepcopy=False)
                        if t.state == optuna.trial.TrialState.RUNNING]
        self.in_flight: set[int] = set()
        self.write()

    def trials(self) -> list:
        return self.study.get_trials(deepcopy=False)

    def next_trial(self) -> TrialSpec | None:
        """A trial to train now: first one a killed sweep left running, else a new one while the budget lasts."""
        if self.orphans:
            trial = self.orphans.pop(0)
            number, params = trial.number, dict(trial.params)
        elif len(self.trials()) < self.budget:
            self.study.sampler = make_sampler(self.spec, sweep_seed(self.cfg.seed, len(self.trials())))
            trial = self.study.ask(distributions(self.spec))
            number, params = trial.number, dict(trial.params)
        else:
            return None
        self.in_flight.add(number)
        finished = [t for t in self.trials() if t.state.is_finished()]
        return TrialSpec(number, params, self.spec.metric, direction(self.spec), self.spec.prune,
                         self.cfg.train.epochs, self.cfg.run_id, finished)

    def record(self, number: int, result: dict) -> None:
        """Tell Optuna how trial `number` ended: every epoch's metric, its value, state and facts."""
        import optuna

        frozen = self.study.get_trials(deepcopy=False)[number]
        trial = optuna.trial.Trial(self.study, frozen._trial_id)  # a trial asked in an earlier process too
        for row in result.get("history", []):
            if row["epoch"] not in frozen.intermediate_values and self.spec.metric in row:
                trial.report(row[self.spec.metric], row["epoch"])
        for key in ("epochs", "seconds", "error", "diverged"):
            if result.get(key) is not None:
                trial.set_user_attr(key, bool(result[key]) if key == "diverged" else result[key])
        for key, value in result.get("rung_values", {}).items():  # what Hyperband compares later trials with
            self.study._storage.set_trial_system_attr(frozen._trial_id, key, value)
        state = {"complete": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED,
                 "failed": optuna.trial.TrialState.FAIL}[result["state"]]
        if result.get("diverged"):  # a bad region: told as pruned (TPE ranks it below every finished trial)
            state = optuna.trial.TrialState.PRUNED
        value = objective(self.spec.metric, result.get("history", []))
        if state == optuna.trial.TrialState.COMPLETE and value is None:
            state = optuna.trial.TrialState.FAIL
        # Told outside Study.optimize, where GridSampler.after_trial's study.stop() raises; the
        # sampler is made afresh for every ask anyway (next_trial), so a neutral one hears the tell.
        self.study.sampler = optuna.samplers.RandomSampler()
        self.study.tell(number, value if state == optuna.trial.TrialState.COMPLETE else None, state=state)
        self.in_flight.discard(number)
        self.write()

    @property
    def finished(self) -> bool:
        return not self.orphans and not self.in_flight and len(self.trials()) >= self.budget

    def best(self) -> dict | None:
        complete = [t for t in self.trials() if t.state.name == "COMPLETE"]
        if not complete:
            return None
        best = self.study.best_trial
        return {"trial": best.number, "params": dict(best.params), "value": best.value}

    def write(self) -> None:
        trials = self.trials()
        counts = {word: sum(_state_word(t) == word for t in trials)
                  for word in ("complete", "pruned", "diverged", "failed", "running")}
        state = {"run": self.cfg.run_id, "metric": self.spec.metric, "direction": direction(self.spec),
                 "method": self.spec.method, "budget": self.budget, "trials": len(trials), "counts": counts,
                 "finished": self.finished, "best": self.best(), "made_from": self.made_from}
        atomic_write_text(self.group / TABLE_FILE, sweep_table(trials, list(self.spec.params)))
        write_json(self.group / STATE_FILE, state)

    def best_params(self) -> dict[str, Any]:
        best = self.best()
        if best is None:
            errors = [t.user_attrs.get("error") for t in self.trials() if t.user_attrs.get("error")]
            raise StudyError(f"{self.cfg.run_id}: none of the {len(self.trials())} trials of its sweep finished "
                             f"(see {self.group / TABLE_FILE})" + (f"; first error: {errors[0]}" if errors else ""))
        return best["params"]
