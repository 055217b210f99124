"""A planned study carried out: every unit through an executor (carry_out), or, under torchrun, each
run in turn over every process (carry_out_together)."""
from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from ...config import StudyConfig
from ...report.summary import write_summary
from ...training.distributed import Dist
from ..planning.plan import Blocked, diverged_already
from ..results.folds import pool_runs
from .run import execute_run
from .schedule import Scheduler, gather_work
from .tracking import Tracking
from .units import UnitContext


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


def carry_out_together(jobs: list, study: StudyConfig, study_dir: Path, log, dist: Dist) -> None:
    """Under torchrun: each run in study order, trained by every process at once (rank 0 writes);
    a run whose source diverged or was not run is skipped with a line."""
    tracking = Tracking(study.tracking, study_dir, study.name, log)
    for plan in jobs:
        if isinstance(plan, Blocked) or plan.source and diverged_already(study_dir, plan.source):
            log(f"not run: {plan.cfg.run_id}: it starts from {plan.cfg.model.init_from}, which diverged "
                "or was not run")
            continue
        execute_run(plan, study_dir, log=log, tracking=tracking, dist=dist)
        dist.on_main(lambda: pool_runs([job for job in jobs if job.cfg.run_id == plan.cfg.run_id]))
        dist.on_main(lambda: write_summary(study_dir))
