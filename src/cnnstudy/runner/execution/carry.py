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
from ..results.progress import PROGRESS_FILE
from .live_report import LiveReport, live_report_enabled
from .recorder import ProgressRecorder
from .run import execute_run
from .schedule import Scheduler, gather_work
from .tracking import Tracking
from .units import UnitContext


def carry_out(jobs: list, study: StudyConfig, study_dir: Path, executor, log) -> None:
    """Every planned unit through `executor`; on any failure or Ctrl-C the workers are stopped (a
    unit stopped mid-epoch resumes from its last finished epoch). progress.json follows every unit;
    the summary and report are rebuilt as runs finish (in the background, see live_report.py)."""
    ctx = UnitContext(study_dir, study.name, study.tracking, worker=executor.slots > 1 or executor.name == "ray")
    if executor.name == "local" and ctx.worker:
        log(f"{executor.name}: {executor.slots} unit(s) at once, {getattr(executor, 'threads', 1)} thread(s) "
            "each; each unit's own lines go to its folder's log.txt")
    say = tqdm.write if log is print and executor.slots > 1 else log  # lines above the overall bar
    live = LiveReport(study_dir) if live_report_enabled() else None
    progress = ProgressRecorder(study_dir, study.name, executor.slots, executor.name)
    scheduler = Scheduler(gather_work(jobs), executor, ctx, say,
                          live.request if live else lambda: write_summary(study_dir), progress)
    ended, note = "interrupted", None  # Ctrl-C or SIGTERM unless it ends otherwise
    try:
        scheduler.run()
        ended = "finished"
    except Exception as err:
        ended, note = "failed", f"{type(err).__name__}: {err}"
        raise
    finally:
        if live is not None:  # before the study's own last report, which follows
            live.close()
        executor.close(interrupted=ended != "finished")
        progress.end(ended, note)  # "finished" before the last report, whose first line reads it
        write_summary(study_dir)  # every finished run in it, whatever a stopped rebuild left undone
        if live is not None and ended != "finished":
            live.last()  # the report rebuilt once more, saying where the study stopped


def carry_out_together(jobs: list, study: StudyConfig, study_dir: Path, log, dist: Dist) -> None:
    """Under torchrun: each run in study order, trained by every process at once (rank 0 writes);
    a run whose source diverged or was not run is skipped with a line."""
    tracking = Tracking(study.tracking, study_dir, study.name, log)
    # No progress file under torchrun (`cnnstudy status` reads the run folders): an earlier one would mislead.
    dist.on_main(lambda: (study_dir / PROGRESS_FILE).unlink(missing_ok=True))
    for plan in jobs:
        if isinstance(plan, Blocked) or plan.source and diverged_already(study_dir, plan.source):
            log(f"not run: {plan.cfg.run_id}: it starts from {plan.cfg.model.init_from}, which diverged "
                "or was not run")
            continue
        execute_run(plan, study_dir, log=log, tracking=tracking, dist=dist)
        dist.on_main(lambda: pool_runs([job for job in jobs if job.cfg.run_id == plan.cfg.run_id]))
        dist.on_main(lambda: write_summary(study_dir))
