"""A unit of work: one planned run, repeat or sweep trial, carried out wherever an executor sends
it, and the small result the scheduler gets back. Everything here is picklable: a unit travels to
worker processes and Ray tasks as it is."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ...config import TrackingConfig
from ...training.engine import read_history
from ..planning.plan import RunPlan
from .run import execute_run
from ..search.trials import PruneWatch, TrialSpec
from ..search.sweep import TrialPruned, objective
from .tracking import Tracking

LOG_FILE = "log.txt"


@dataclass(frozen=True)
class UnitContext:
    """What every unit of a study shares."""
    study_dir: Path
    study_name: str
    tracking: TrackingConfig
    worker: bool = False  # in a worker: no progress bars, and the run's lines go to its log.txt


@dataclass
class Unit:
    plan: RunPlan
    trial: TrialSpec | None = None

    @property
    def label(self) -> str:
        return self.plan.label


def folder_log(run_dir: Path) -> Callable[[str], None]:
    """A log that appends to the run folder's log.txt (a worker's lines would interleave on a console)."""
    def log(line: str) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / LOG_FILE, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
    return log


def run_unit(unit: Unit, ctx: UnitContext, log: Callable[[str], None] = print) -> dict:
    """Carry out `unit`. A run's failure is raised (the study stops); a trial's is its result."""
    plan = unit.plan
    if ctx.worker:  # the driver prints one line per unit; a skip has nothing more to say
        log = folder_log(plan.run_dir) if plan.action != "skip" else (lambda _: None)
    tracking = Tracking(ctx.tracking, ctx.study_dir, ctx.study_name, log)
    watch = PruneWatch(unit.trial) if unit.trial is not None and unit.trial.prune != "none" else None
    started = time.perf_counter()
    result = {"label": plan.label, "action": plan.action, "state": "complete", "error": None}
    try:
        metrics = execute_run(plan, ctx.study_dir, log=log, tracking=tracking, progress=not ctx.worker,
                              watch=watch)
        result.update(scores(metrics))
        if unit.trial is not None and result["diverged"]:  # a search goes on past a diverged trial
            result.update(state="pruned", error=metrics["verdict"]["explanation"])
    except TrialPruned as stop:
        log(f"{plan.label}: {stop}")
        result["state"] = "pruned"
    except Exception as err:  # noqa: BLE001 - a trial's failure (bad value, divergence) is recorded
        if unit.trial is None:
            raise
        log(f"{plan.label} failed: {type(err).__name__}: {err}")
        result.update(state="failed", error=f"{type(err).__name__}: {err}")
    result["seconds"] = time.perf_counter() - started
    if watch is not None:
        result["rung_values"] = watch.rung_values()
    if unit.trial is not None:
        history = read_history(plan.run_dir) if (plan.run_dir / "history.jsonl").exists() else []
        result.update(history=history, epochs=len(history), metric=unit.trial.metric,
                      value=objective(unit.trial.metric, history))
    return result


def scores(metrics: dict) -> dict:
    test = metrics.get("test") or {}
    return {"val_acc": metrics.get("best_val_acc"), "test_acc": test.get("accuracy"), "epochs": metrics.get("epochs"),
            "diverged": metrics.get("diverged")}


def finished_line(result: dict, done: int, total: int) -> str:
    """One line per finished unit, for the console of a parallel study."""
    head = f"[{done}/{total}] {result['label']}"
    if result["action"] == "skip":
        return f"{head}: already finished with this config, split and inputs"
    if result["state"] != "complete":
        return f"{head}: {'diverged' if result.get('diverged') else result['state']}" + (f" ({result['error']})" if result.get("error") else "") + \
            f", {result.get('epochs', 0)} epoch(s), {result['seconds']:.0f} s"
    if result.get("metric"):  # a sweep's trial: its value, on validation images
        score = f"{result['metric']} {result['value']:.4f}"
    elif result.get("test_acc") is not None:
        score = f"test acc {result['test_acc'] * 100:.1f}%"
    elif result.get("val_acc") is not None:
        score = f"val acc {result['val_acc'] * 100:.1f}%"
    else:
        score = "no checkpoint to score"
    if result.get("diverged"):
        score = f"diverged at epoch {result['diverged']['epoch']}, {score}"
    return f"{head}: {score}, {result.get('epochs')} epoch(s), {result['seconds']:.0f} s"
