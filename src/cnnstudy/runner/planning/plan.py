"""Everything decided before the first run trains.

What each run's config is checked for is in checks.py; `plan_actions` decides what each run will do (train, resume, skip, redo) and stops the study,
naming what differs, when a run folder no longer matches its config, split or inputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...config import RunConfig, StudyError
from ...data.prepare import PreparedData, data_change
from ...fileio import read_json
from .fingerprint import checkpoint_inputs, differences, make_fingerprint, read_fingerprint
from ..search.sweep import STATE_FILE as SWEEP_STATE, TRIALS_DIR, confirmed_config, read_state, \
    trial_config
from .repeats import (group_dir, has_results, leftover_layout, repeat_config, repeat_dirs, run_label,
                      source_checkpoint, unit_dirs)


@dataclass
class RunPlan:
    """One training job: a run, one repeat of a run, or one fold (of one repeat) of a run."""
    cfg: RunConfig  # with the repeat's own seed
    data: PreparedData
    action: str  # "train" (nothing there yet) | "resume" | "skip" (finished, matches) | "redo" (--force)
    run_dir: Path
    repeat: int | None = None  # None: a run without repeats
    source: RunConfig | None = None  # the init_from run
    clear: Path | None = None  # a folder to delete before training (inside the study folder)
    scored: tuple[str, ...] = ("val", "test")  # a sweep's trials never see the test split
    trial: int | None = None  # the trial's number, for a sweep's trial
    fold: int | None = None  # k-fold: which fold (data is that fold's)

    @property
    def label(self) -> str:
        if self.trial is not None:
            return f"{self.cfg.run_id}/t{self.trial:03d}"
        return run_label(self.cfg.run_id, self.repeat, self.fold)


def force_set(runs: list[RunConfig], force: list[str], every_run: list[RunConfig] | None = None) -> set[str]:
    """Runs to redo: every run for a bare --force, else the named runs and every run downstream.
    `every_run`: the study's runs, where --only chose `runs` among them."""
    ids = [cfg.run_id for cfg in runs]
    if "*" in force:
        return set(ids)
    left_out = [name for name in force if name not in ids and name in {cfg.run_id for cfg in every_run or []}]
    if left_out:
        raise StudyError(f"--force {', '.join(left_out)}: --only leaves {'it' if len(left_out) == 1 else 'them'} "
                         f"out; add {'it' if len(left_out) == 1 else 'them'} to --only, or drop --force")
    unknown = [name for name in force if name not in ids]
    if unknown:
        raise StudyError(f"--force {', '.join(unknown)}: no such run in this study; use <phase>/<run>, "
                         f"one of: {', '.join(ids)}")
    chosen = set(force)
    for cfg in runs:  # study order: a run's source always comes before it
        if cfg.model.init_from in chosen:
            chosen.add(cfg.run_id)
    return chosen


def check_removable(run_dir: Path, study_dir: Path) -> Path:
    """The real path of a run folder that may be deleted: inside the study folder, never a link out of it."""
    study, target = study_dir.resolve(), run_dir.resolve()
    if run_dir.is_symlink() or target == study or study not in target.parents:
        raise StudyError(f"refusing to delete {run_dir}: it is not a run folder inside {study_dir} "
                         "(a link, or a path that leaves it); move it away by hand")
    return target


@dataclass
class SweepPlan:
    """A swept run whose search is still to do (or to finish): its trials, then its confirmation."""
    cfg: RunConfig  # the run's own setting, with its sweep
    data: PreparedData
    group: Path
    source: RunConfig | None = None
    clear: Path | None = None  # --force: the whole sweep is redone

    @property
    def label(self) -> str:
        return self.cfg.run_id


@dataclass
class Blocked:
    """A run that will not train: the run it starts from diverged, or is itself blocked."""
    cfg: RunConfig
    reason: str


Job = RunPlan | SweepPlan | Blocked
Stale = list[tuple[str, list[str]]]


def diverged_already(study_dir: Path, cfg: RunConfig) -> bool:
    """Every repeat of the run finished with the verdict "diverged": nothing may start from it."""
    folders = [folder / "metrics.json" for _, folder in repeat_dirs(study_dir, cfg)]
    return all(path.exists() for path in folders) and \
        all(read_json(path).get("verdict", {}).get("verdict") == "diverged" for path in folders)


def plan_actions(runs: list[RunConfig], prepared: dict[str, PreparedData], study_dir: Path,
                 forced: set[str]) -> list[Job]:
    """What every run will do, in study order; stops the study, naming each difference, when any run
    folder holds results made from other settings or inputs."""
    jobs: list[Job] = []
    stale: Stale = []
    retrained: set[str] = set()
    blocked: set[str] = set()
    by_id = {cfg.run_id: cfg for cfg in runs}
    for cfg in runs:
        group = group_dir(study_dir, cfg)
        if group.exists() or group.is_symlink():
            check_removable(group, study_dir)
        source = by_id.get(cfg.model.init_from)
        if source is not None and (source.run_id in blocked or source.run_id not in retrained and
                                   diverged_already(study_dir, source)):
            why = "was not run" if source.run_id in blocked else "diverged"
            jobs.append(Blocked(cfg, f"it starts from {source.run_id}, which {why}"))
            blocked.add(cfg.run_id)
            continue
        source_ready = source is not None and source.run_id not in retrained
        first = prepared[cfg.run_id].fold(0 if cfg.data.split.folds else None)  # the first unit's data
        if source_ready:  # its checkpoint must be there now: say so before anything trains
            source_checkpoint(study_dir, source, 0 if cfg.data.split.folds else None, first.split.digest)
        leftover = None if cfg.run_id in forced else leftover_layout(study_dir, cfg) or sweep_leftover(group, cfg)
        stale += [(cfg.run_id, [f"{group} {leftover}"])] if leftover else []
        run_cfg = cfg
        if cfg.sweep is not None:
            source_ckpt = source_checkpoint(study_dir, source, 0 if cfg.data.split.folds else None,
                                            first.split.digest) if source_ready else None
            found = plan_sweep(cfg, prepared[cfg.run_id], study_dir, source, source_ckpt, cfg.run_id in forced,
                               stale)
            if not isinstance(found, RunConfig):  # a search to run (or a stale one): trains later
                jobs += [found] if found is not None else []
                retrained.add(cfg.run_id)
                continue
            run_cfg = found
        planned = plan_repeats(run_cfg, prepared[cfg.run_id], study_dir, source, source_ready,
                               cfg.run_id in forced, stale)
        if any(job.action != "skip" for job in planned):  # it will train: what starts from it changes too
            retrained.add(cfg.run_id)
        jobs += planned
    if stale:
        raise StudyError(stale_message(study_dir, stale))
    return jobs


def plan_repeats(cfg: RunConfig, data: PreparedData, study_dir: Path, source: RunConfig | None,
                 source_ready: bool, forced: bool, stale: Stale) -> list[RunPlan]:
    """One plan per repeat (and fold) of a run: train, resume, skip (finished and matching), redo
    (forced) or stale (added to `stale`). `source_ready`: the init_from run's checkpoints are final
    (it does not train again first)."""
    plans, group = [], group_dir(study_dir, cfg)
    for repeat, fold, run_dir in unit_dirs(study_dir, cfg):
        job = RunPlan(repeat_config(cfg, repeat), data.fold(fold), "train", run_dir, repeat, source, fold=fold)
        if forced:
            job.action, job.clear = "redo", group if not plans and group.exists() else None
        elif run_dir.exists() and not has_results(run_dir):
            # Only what a run writes before its first epoch; a swept run's own folder also holds its sweep.
            job.clear = None if cfg.sweep is not None and run_dir == group else run_dir
        elif run_dir.exists():
            source_ckpt = source_checkpoint(study_dir, source, fold, job.data.split.digest) if source_ready else None
            expected = make_fingerprint(job.cfg, job.data.split, checkpoint_inputs(job.cfg, study_dir, source_ckpt),
                                        data.data_digest)
            diffs = differences(read_fingerprint(run_dir), expected, data_change(study_dir, data))
            stale += [(job.label, diffs)] if diffs else []
            job.action = "stale" if diffs else "skip" if (run_dir / "metrics.json").exists() else "resume"
        plans.append(job)
    return plans


def plan_sweep(cfg: RunConfig, data: PreparedData, study_dir: Path, source: RunConfig | None,
               source_ckpt: Path | None, forced: bool, stale: Stale) -> SweepPlan | RunConfig | None:
    """A swept run: its search to run (a SweepPlan), or, when a matching search is over, the run's
    confirmed config (best params applied); None when the recorded search is stale."""
    group = group_dir(study_dir, cfg)
    if forced:
        return SweepPlan(cfg, data, group, source, clear=group if group.exists() else None)
    state = read_state(group)
    if state is None:
        return SweepPlan(cfg, data, group, source)
    made_from = make_fingerprint(cfg, data.split, checkpoint_inputs(cfg, study_dir, source_ckpt), data.data_digest)
    diffs = differences(state.get("made_from"), made_from, data_change(study_dir, data))
    if diffs:
        stale.append((f"{cfg.run_id} (its sweep)", diffs))
        return None
    if state.get("finished") and state.get("best"):
        return confirmed_config(cfg, state["best"]["params"])
    return SweepPlan(cfg, data, group, source)


def sweep_leftover(group: Path, cfg: RunConfig) -> str | None:
    """A run folder from before a sweep was added to the run, or removed from it."""
    swept = (group / SWEEP_STATE).exists()
    if cfg.sweep is None and swept:
        return f"holds a sweep ({SWEEP_STATE}), but the study no longer sweeps this run"
    if cfg.sweep is not None and not swept and (has_results(group) or
                                                any(has_results(d) for d in group.glob("r[0-9]*"))):
        return "holds the results of a run without a sweep, but the study now sweeps it"
    return None


def trial_plan(sweep: SweepPlan, number: int, params: dict) -> RunPlan:
    """Trial `number` of a sweep: trained in trials/t<number>, scored on validation only."""
    cfg, run_dir = trial_config(sweep.cfg, params), sweep.group / TRIALS_DIR / f"t{number:03d}"
    # A folded run's trials train on its first fold's split: chosen on that fold's validation images.
    fold = 0 if sweep.data.folds else None
    job = RunPlan(cfg, sweep.data.fold(fold), "train", run_dir, None, sweep.source, scored=("val",), trial=number,
                  fold=fold)
    if run_dir.exists() and not has_results(run_dir):
        job.clear = run_dir
    elif run_dir.exists():
        job.action = "skip" if (run_dir / "metrics.json").exists() else "resume"
    return job


def stale_message(study_dir: Path, stale: list[tuple[str, list[str]]]) -> str:
    lines = [f"{study_dir}: {len(stale)} run(s) there were made from other settings or inputs than the "
             "study asks for now, so their results cannot be reused. Nothing was trained."]
    for run_id, diffs in stale:
        lines.append(f"  {run_id}:")
        lines += [f"    {line}" for line in diffs]
    run_id = "/".join(stale[0][0].split(" ")[0].split("/")[:2])  # p/run/r0/f1 -> p/run
    lines.append(f"Fix: add --force to redo every run, or --force {run_id} (repeatable) to redo that run "
                 "and the runs that start from it. To keep the old results, use another --out or rename the runs.")
    return "\n".join(lines)
