"""Everything decided before the first run trains.

`run_problems` checks each run's config against the models, datasets and files it names;
`check_prepared` checks what needs the splits (batch sizes, init_from across splits);
`plan_actions` decides what each run will do (train, resume, skip, redo) and stops the study,
naming what differs, when a run folder no longer matches its config, split or inputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..models.checkpoint import CheckpointError, check_same_split, load_checkpoint_file
from ..config import RunConfig, StudyError
from ..data.prepare import PreparedData, data_change
from ..fileio import read_json
from .fingerprint import checkpoint_inputs, differences, make_fingerprint, read_fingerprint
from ..models.freeze import FreezeError, apply_freeze
from ..models.registry import check_state_fits, create_model, get_spec, model_state
from .sweep import STATE_FILE as SWEEP_STATE, TRIALS_DIR, check_sweep, confirmed_config, read_state, \
    trial_config
from .precheck import dataset_problems
from .studyfile import merge_by_run, raise_problems
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


def run_problems(runs: list[RunConfig], study_path: Path, unread: set[str] = frozenset(),
                 datasets: dict[str, str] | None = None) -> list[str]:
    """Every config error a run can have on its own, found before anything trains: each run's first.
    `unread`: runs whose settings did not validate (a run starting from one is not blamed for it).
    `datasets`: the --dataset pairs (a missing folder is named by its pair)."""
    by_id: dict[str, RunConfig] = {}
    problems = []
    for cfg in runs:
        where = f"run {cfg.run_id}"
        try:
            if cfg.run_id in by_id:
                raise StudyError(f"{where}: the name is used twice in phase {cfg.phase!r}; rename one")
            if cfg.model.init_from not in unread:
                _check_model(cfg, where, by_id)
                for trial_cfg in check_sweep(cfg, where) if cfg.sweep is not None else []:
                    _check_model(trial_cfg, f"{where} (a value its sweep would try)", by_id)
            _check_environment(cfg, where, study_path)
        except StudyError as err:
            problems.append(str(err))
        by_id.setdefault(cfg.run_id, cfg)
    # found, not opened: the split store opens each dataset next (and the command line's quick check did)
    return merge_by_run(dataset_problems(runs, study_path, datasets, opened=False) + problems)


def _check_model(cfg: RunConfig, where: str, earlier: dict[str, RunConfig]) -> None:
    try:
        spec = get_spec(cfg.model.name)
    except ValueError as err:
        raise StudyError(f"{where}: model.name: {err}") from None
    if cfg.data.image_size < spec.min_size:
        raise StudyError(f"{where}: data.image_size {cfg.data.image_size} is below {cfg.model.name}'s "
                         f"minimum of {spec.min_size} px; raise it to {spec.min_size} or more")
    if cfg.model.pretrained and not spec.pretrained_available:
        hint = " on the Hugging Face Hub (timm knows only a URL for them; cnnstudy fetches timm weights from the Hub)" \
            if cfg.model.name.startswith("timm/") else ""
        raise StudyError(f"{where}: model.pretrained: {cfg.model.name} has no pretrained weights{hint}; use "
                         "model.init_from (a run of this study) or model.weights (a file) instead")
    source = cfg.model.init_from
    if source and cfg.model.weights:
        raise StudyError(f"{where}: model.init_from and model.weights both name a starting point; keep one")
    if source and source not in earlier:
        raise StudyError(f"{where}: model.init_from {source!r} names no earlier run; "
                         f"use one of: {', '.join(sorted(earlier)) or '(none yet)'}")
    if source and earlier[source].model.name != cfg.model.name:
        raise StudyError(f"{where}: model.init_from {source} trains a {earlier[source].model.name}, but this "
                         f"run builds a {cfg.model.name}; set model.name: {earlier[source].model.name}")
    with torch.device("meta"):  # weightless: only names and shapes are checked
        model = create_model(cfg.model.name, 2, image_size=cfg.data.image_size)
    try:
        apply_freeze(model, cfg.model.freeze)
    except FreezeError as err:
        raise StudyError(f"{where}: model.{err}") from None
    if cfg.model.weights:
        _check_weights_file(cfg, model, where)


def _check_weights_file(cfg: RunConfig, model, where: str) -> None:
    path = Path(cfg.model.weights)
    if not path.is_file():
        raise StudyError(f"{where}: model.weights file {path} does not exist")
    try:
        state = model_state(load_checkpoint_file(path))
        check_state_fits(model, {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}, str(path))
    except CheckpointError as err:
        raise StudyError(f"{where}: model.weights: {err}") from None


def _check_environment(cfg: RunConfig, where: str, study_path: Path) -> None:
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise StudyError(f"{where}: device {cfg.device!r} but CUDA is not available; use device: auto")
    if cfg.train.precision == "fp16" and not (cfg.device != "cpu" and torch.cuda.is_available()):
        raise StudyError(f"{where}: train.precision fp16 needs a CUDA device; use auto, fp32 or bf16")


def check_prepared(runs: list[RunConfig], prepared: dict[str, PreparedData], study_path: Path) -> None:
    """What can only be checked once every split is made: every run's first problem, in one message."""
    problems = []
    for cfg in runs:
        try:
            _check_split(cfg, prepared, f"run {cfg.run_id}")
        except StudyError as err:
            problems.append(str(err))
    raise_problems(str(study_path), problems)


def _check_split(cfg: RunConfig, prepared: dict[str, PreparedData], where: str) -> None:
    split = prepared[cfg.run_id].split
    trained = len(split.fold(0).train) if split.folds else len(split.train)  # a fold trains on fewer
    if cfg.train.batch_size > trained:
        raise StudyError(f"{where}: train.batch_size {cfg.train.batch_size} is larger than the {trained} training "
                         f"images{' of a fold' if split.folds else ''}; lower it")
    weights = cfg.train.class_weights
    if isinstance(weights, list) and len(weights) != len(split.classes):
        raise StudyError(f"{where}: train.class_weights has {len(weights)} weights, but {split.dataset} has "
                         f"{len(split.classes)} classes ({', '.join(split.classes)}): give one per class, in this "
                         "order, or use balanced")
    source = cfg.model.init_from
    if source and prepared[source].split.dataset == split.dataset and prepared[source].split.digest != split.digest:
        raise StudyError(
            f"{where}: model.init_from {source} trained on another split of the same dataset "
            f"({split.dataset}), so some of this run's validation and test images were among its "
            "training images and its scores would be inflated. Give both runs the same data.split "
            "and data.limit_per_class, or start this run from a run on another dataset")
    if cfg.model.weights:
        try:
            check_same_split(load_checkpoint_file(cfg.model.weights), split.dataset, split.digest, cfg.model.weights)
        except CheckpointError as err:
            raise StudyError(f"{where}: model.weights: {err}") from None


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
