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

from ..training.distributed import SINGLE, Dist
from .execution.carry import carry_out, carry_out_together
from .execution.executors import Parallel, make_executor
from .execution.live_report import rebuild_detached
from .execution.tracking import Tracking
from .planning.force import end_force
from .planning.lock import StudyLock
from .planning.only import select_runs
from .planning.plan import force_set
from .planning.prepare import check_batches_split, check_parallel, plan_study, prepare_study
from ..report.report import build_report

__all__ = ["plan_study", "run_study"]


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
            carry_out_together(jobs, study, study_dir, log, dist)
        else:
            carry_out(jobs, study, study_dir, executor, log)
        try:
            report = dist.on_main(lambda: build_report(study_dir))
        except BaseException:  # Ctrl-C or a failure here: the report on disk still says "running"
            dist.on_main(lambda: rebuild_detached(study_dir))
            raise
        dist.on_main(lambda: end_force(study_dir))
        if dist.main:
            Tracking(study.tracking, study_dir, study.name, log).log_report(list(report))
            log(f"study finished: {study_dir / 'summary.md'}, report: {report[0]} and {report[1]}")
    finally:
        lock.release()
    return study_dir


def first_missing(folder: Path) -> Path | None:
    """The outermost folder of `folder`'s path that does not exist yet (what a failed start removes)."""
    missing = None
    for candidate in [folder, *folder.absolute().parents]:
        if candidate.exists():
            break
        missing = candidate
    return missing


