"""How long a study has left, from its measured epoch times (progress.py's units, duck-typed here so
that the two modules do not import each other).

Each unfinished unit will take its remaining epochs at the rate measured for it: its own epochs,
else those of its run's other units (repeats, folds, trials: the same model on the same data), else
the study's mean. Every unit also pays a fixed cost outside its epochs (building the model, scoring,
plots), measured as a finished unit's wall time less its epochs: its run's least, else the median of
the runs'. The first unit on each slot also paid once for starting its worker and filling the data
cache: it counts only until a later unit is measured.
A sweep's trials still to draw are expected to train the share of their epochs that its finished
trials trained on average (the pruner stops many early); its confirmation units train all of theirs.
The units are then dealt to the study's slots in study order, each to the slot that frees first
(what the scheduler does), and the last slot to finish is the estimate. Waits for a source run
(`init_from`) are left out, so where they matter the estimate is low.
"""
from __future__ import annotations

import heapq
import re
from typing import Sequence

RUNNING = "running"
UNFINISHED = ("queued", "running", "interrupted")  # what a study still has to train
TRIALS_TO_DRAW = "trials still to draw"  # the recorder's words for a sweep's trials not drawn yet
BASE_SUFFIX = ".base"  # runner.search.sweep.BASE_SUFFIX (a test holds them equal); not imported: status stays light


def run_of(unit) -> str:
    """The run whose measurements a unit shares: a sweep's base setting is its sweep's run."""
    return unit.run.removesuffix(BASE_SUFFIX)


def measured_rates(units: Sequence) -> tuple[float | None, dict[str, float]]:
    """(the study's seconds per epoch, each run's), from every epoch measured so far."""
    seconds: dict[str, float] = {}
    epochs: dict[str, int] = {}
    for unit in units:
        if unit.trained and unit.seconds > 0:
            seconds[run_of(unit)] = seconds.get(run_of(unit), 0.0) + unit.seconds
            epochs[run_of(unit)] = epochs.get(run_of(unit), 0) + unit.trained
    if not epochs:
        return None, {}
    return sum(seconds.values()) / sum(epochs.values()), {run: seconds[run] / epochs[run] for run in epochs}


def fixed_costs(units: Sequence, slots: int) -> tuple[float, dict[str, float]]:
    """(the study's, each run's) wall time a unit spends outside its epochs, from units trained this session."""
    measured = sorted((u for u in units if u.state in ("done", "pruned") and u.trained
                       and u.started is not None and u.finished is not None), key=lambda u: u.started)
    warm = measured[slots:] or measured  # the first on each slot also started a worker, filled a cache
    by_run: dict[str, float] = {}
    for u in warm:
        cost = max(0.0, (u.finished - u.started) - (u.seconds - u.before))
        by_run[run_of(u)] = min(cost, by_run.get(run_of(u), cost))
    costs = sorted(by_run.values())
    return (costs[len(costs) // 2] if costs else 0.0), by_run


def is_trial(unit) -> bool:
    """A sweep's trial (<run>/t003) or its trials still to draw."""
    return bool(re.fullmatch(r"t\d+", unit.label.rsplit("/", 1)[-1])) or unit.label.endswith(TRIALS_TO_DRAW)


def trained_shares(units: Sequence) -> dict[str, float]:
    """Per swept run, the mean share of their planned epochs its finished trials trained (below 1
    where the pruner stopped them)."""
    shares: dict[str, list[float]] = {}
    for unit in units:
        if is_trial(unit) and unit.state in ("done", "pruned") and unit.epochs > 0 and unit.trained:
            shares.setdefault(unit.run, []).append(min(1.0, unit.trained / unit.epochs))
    return {run: sum(values) / len(values) for run, values in shares.items()}


def unit_left(unit, rate: float, cost: float, now: float) -> float:
    """Seconds `unit` still needs: its remaining epochs, and its fixed cost; a running unit has spent
    part of both already, but never needs less than its remaining epochs."""
    epochs_left = max(0, unit.epochs - unit.trained) * rate
    if unit.state != RUNNING or unit.started is None:
        return epochs_left + cost
    expected = max(0, unit.epochs) * rate + cost - unit.before  # this session's share of the unit
    return max(expected - (now - unit.started), epochs_left)


def estimate_left(units: Sequence, slots: int, now: float) -> float | None:
    """Seconds until the study's last unit finishes; None before any epoch is measured (0.0 when
    nothing is left)."""
    unfinished = [u for u in units if u.state in UNFINISHED]
    if not unfinished:
        return 0.0
    study_rate, run_rates = measured_rates(units)
    if study_rate is None:
        return None
    study_cost, run_costs = fixed_costs(units, slots)
    shares = trained_shares(units)

    def need(unit) -> float:
        share = shares.get(unit.run, 1.0) if unit.state == "queued" and is_trial(unit) else 1.0
        return unit_left(unit, share * (unit.rate or run_rates.get(run_of(unit), study_rate)),
                         run_costs.get(run_of(unit), study_cost), now)

    running = [need(u) for u in unfinished if u.state == RUNNING]
    free = running + [0.0] * max(0, slots - len(running))  # when each slot is next free, from now
    heapq.heapify(free)
    for unit in (u for u in unfinished if u.state != RUNNING):
        for _ in range(unit.count):
            heapq.heappush(free, heapq.heappop(free) + need(unit))
    return max(free)


def format_duration(seconds: float) -> str:
    """A duration as a person reads it: "a few seconds", "40 s", "12 min", "3 h 05 min", "2 d 4 h"."""
    minutes = int(round(seconds / 60))
    if seconds < 10:
        return "a few seconds"
    if seconds < 55:
        return f"{int(round(seconds / 10)) * 10} s"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours // 24} d {hours % 24} h"
