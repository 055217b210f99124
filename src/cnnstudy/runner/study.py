"""A study: phases of runs, all checked and planned before the first one trains, then run in order.

Order of work in `run_study`: validate every run's config; take the study folder's lock; make sure
every dataset and pretrained weight file is on disk (fetching what is missing); make (or load)
every split; check what needs the splits; decide each run's action from its fingerprint;
then train. Anything that would make a number untrustworthy stops the study before training.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch
import yaml
from tqdm.auto import tqdm

from ..config import RunConfig, StudyConfig, StudyError
from ..data.prepare import PreparedData, SplitStore
from ..training.distributed import SINGLE, Dist
from ..fileio import atomic_write_text
from .inputs import ensure_inputs, offline_from_env
from .lock import StudyLock
from ..models.registry import get_spec
from .plan import Blocked, check_prepared, diverged_already, force_set, plan_actions, run_problems
from .executors import Parallel, make_executor
from .folds import pool_runs
from .force import begin_force, end_force, force_id, forced_key, still_forced
from .only import select_runs
from .run import execute_run
from .schedule import Scheduler, gather_work
from .space import check_free_space
from .studyfile import load_study, raise_problems
from .sweep import BASE_SUFFIX, expand_sweeps
from .units import UnitContext
from ..report.report import build_report
from ..report.summary import write_summary
from .tracking import Tracking, check_tracking


def plan_study(study_path: str | Path, overrides: list[str] | None = None,
               datasets: dict[str, str] | None = None) -> tuple[StudyConfig, list[RunConfig]]:
    """Load, merge and validate the whole study before any work is done. `datasets`: dataset roles
    replaced, {role: folder or name}."""
    study, runs, problems, unread = load_study(study_path, overrides, datasets)
    problems += [f"{cfg.run_id}: a run name ending in {BASE_SUFFIX} is reserved for a swept run's base setting; "
                 "rename it" for cfg in runs if cfg.name.endswith(BASE_SUFFIX)]
    try:
        runs = expand_sweeps(runs, str(study_path))
    except StudyError as err:
        problems.append(str(err))
    known = {role: value for role, value in (datasets or {}).items() if study is not None and role in study.datasets}
    problems += run_problems(runs, Path(study_path), unread, known)  # every run's checks, with the file's
    raise_problems(str(study_path), problems)
    check_tracking(study.tracking)
    return study, runs


def save_resolved_study(study_dir: Path, study: StudyConfig, runs: list[RunConfig]) -> None:
    phases = [{"name": p.name, "title": p.title, "description": p.description, "compare": p.compare,
               "runs": [r.model_dump(mode="json") for r in runs if r.phase == p.name]} for p in study.phases]
    resolved = {"name": study.name, "description": study.description, "datasets": study.roles_used, "phases": phases}
    atomic_write_text(study_dir / "study.yaml", yaml.safe_dump(resolved, sort_keys=False))


def prepare_splits(runs: list[RunConfig], store: SplitStore) -> dict[str, PreparedData]:
    """Every run's split, made before any training so that a bad dataset stops the study early."""
    return {cfg.run_id: store.get(cfg) for cfg in runs}


def run_study(study_path: str | Path, overrides: list[str] | None = None, out_dir: str | Path = "runs",
              force: bool | list[str] = False, log=print, offline: bool = False, dist: Dist = SINGLE,
              parallel: Parallel = Parallel(), datasets: dict[str, str] | None = None,
              only: list[str] | None = None) -> Path:
    """Run (or continue) a study. `force`: True redoes every run; a list of <phase>/<run> redoes those
    and every run that starts from them. `offline`: fetch nothing; stop if a dataset or weight is
    missing. `dist`: this process's place in a torchrun job (rank 0 alone writes and prints).
    `parallel`: how many units at once, with how many threads, on which executor. `datasets`: dataset
    roles replaced ({role: folder or name}). `only`: run only these runs or phases (and their sources)."""
    study, every_run = plan_study(study_path, overrides, datasets)
    log = log if dist.main else (lambda _: None)
    runs = select_runs(every_run, only, log) if only else every_run
    check_batches_split(runs, dist, Path(study_path))
    check_parallel(runs, dist, parallel, Path(study_path))
    forced = force_set(runs, ["*"] if force is True else list(force or []), every_run)
    study_dir = Path(out_dir) / study.name
    lock, created = StudyLock(study_dir), first_missing(study_dir)
    dist.on_main(lock.acquire)
    executor = None
    try:
        try:  # the executor first: an unreachable Ray cluster stops the study before anything is cleared
            executor = None if dist.enabled else make_executor(parallel, study_dir, log)
            jobs = prepare_study(study, runs, every_run, study_path, study_dir, forced, offline, log, dist)
        except BaseException:  # nothing trained yet: the folders this call made are not left behind
            if executor is not None:
                executor.close(interrupted=True)
            if created is not None and dist.main:
                shutil.rmtree(created, ignore_errors=True)
            raise
        torch.use_deterministic_algorithms(True, warn_only=True)
        if dist.enabled:
            tracking = Tracking(study.tracking, study_dir, study.name, log)
            for plan in jobs:
                if isinstance(plan, Blocked) or plan.source and diverged_already(study_dir, plan.source):
                    log(f"not run: {plan.cfg.run_id}: it starts from {plan.cfg.model.init_from}, which diverged "
                        "or was not run")
                    continue
                execute_run(plan, study_dir, log=log, tracking=tracking, dist=dist)
                dist.on_main(lambda: pool_runs([job for job in jobs if job.cfg.run_id == plan.cfg.run_id]))
                dist.on_main(lambda: write_summary(study_dir))
        else:
            carry_out(jobs, study, study_dir, executor, log)
        report = dist.on_main(lambda: build_report(study_dir))
        dist.on_main(lambda: end_force(study_dir))
        if dist.main:
            Tracking(study.tracking, study_dir, study.name, log).log_report(list(report))
            log(f"study finished: {study_dir / 'summary.md'}, report: {report[0]} and {report[1]}")
    finally:
        lock.release()
    return study_dir


def prepare_study(study: StudyConfig, runs: list[RunConfig], every_run: list[RunConfig], study_path: str | Path,
                  study_dir: Path, forced: set[str], offline: bool, log, dist: Dist) -> list:
    """Inputs fetched, splits made, everything checked and every run's action planned; a forced start
    recorded and its runs cleared. Nothing has trained when this returns."""
    base = Path(study_path).parent
    dist.on_main(lambda: ensure_inputs(runs, base, offline or offline_from_env(), log, every_run))
    store = SplitStore(study_dir, base, lambda cfg: get_spec(cfg.model.name).min_size, log)
    prepared = dist.main_first(lambda: prepare_splits(runs, store))
    check_prepared(runs, prepared, Path(study_path))
    key = forced_key(runs, prepared, forced)
    start = force_id(study_dir, forced, key, log)
    redo = still_forced(runs, study_dir, forced, start)  # an interrupted forced start cleared the rest
    jobs = plan_actions(runs, prepared, study_dir, redo)
    dist.on_main(lambda: check_free_space(jobs, study_dir))
    dist.on_main(lambda: save_resolved_study(study_dir, study, every_run))  # the report lists every run
    dist.on_main(lambda: begin_force(jobs, study_dir, forced, redo, start, key))
    return jobs


def first_missing(folder: Path) -> Path | None:
    """The outermost folder of `folder`'s path that does not exist yet (what a failed start removes)."""
    missing = None
    for candidate in [folder, *folder.absolute().parents]:
        if candidate.exists():
            break
        missing = candidate
    return missing


def carry_out(jobs: list, study: StudyConfig, study_dir: Path, executor, log) -> None:
    """Every planned unit through `executor`; on any failure or Ctrl-C the workers are stopped (a
    unit stopped mid-epoch resumes from its last finished epoch)."""
    ctx = UnitContext(study_dir, study.name, study.tracking, worker=executor.slots > 1 or executor.name == "ray")
    if executor.name == "local" and ctx.worker:
        log(f"{executor.name}: {executor.slots} unit(s) at once, {getattr(executor, 'threads', 1)} thread(s) "
            "each; each unit's own lines go to its folder's log.txt")
    say = tqdm.write if log is print and executor.slots > 1 else log  # lines above the overall bar
    scheduler = Scheduler(gather_work(jobs), executor, ctx, say, lambda: write_summary(study_dir))
    interrupted = True
    try:
        scheduler.run()
        interrupted = False
    finally:
        executor.close(interrupted=interrupted)


def check_parallel(runs: list[RunConfig], dist: Dist, parallel: Parallel, study_path: Path) -> None:
    """torchrun spreads one run over processes; --jobs and Ray spread many runs: not both at once."""
    if not dist.enabled:
        return
    if (parallel.jobs or 1) > 1 or parallel.executor != "local":
        raise StudyError("--jobs and --executor ray spread runs over processes, torchrun spreads each run: "
                         "use one of them, e.g. cnnstudy run --jobs 4 without torchrun")
    swept = [cfg.run_id for cfg in runs if cfg.sweep is not None]
    if swept:
        raise StudyError(f"{study_path}: {', '.join(swept)} sweep(s) run without torchrun: start the study "
                         "with cnnstudy run (add --jobs N to train trials side by side)")


def check_batches_split(runs: list[RunConfig], dist: Dist, study_path: Path) -> None:
    """train.batch_size is the global batch: under torchrun every process takes an equal share."""
    for cfg in runs:
        if dist.enabled and cfg.train.batch_size % dist.world:
            raise StudyError(f"{study_path}, run {cfg.run_id}: train.batch_size {cfg.train.batch_size} is the "
                             f"global batch and must split evenly over the {dist.world} processes; make it a "
                             f"multiple of {dist.world}")
