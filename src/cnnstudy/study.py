"""A study: phases of runs, all checked and planned before the first one trains, then run in order.

Order of work in `run_study`: validate every run's config; take the study folder's lock; make sure
every dataset and pretrained weight file is on disk (fetching what is missing); make (or load)
every split; check what needs the splits; decide each run's action from its fingerprint;
then train. Anything that would make a number untrustworthy stops the study before training.
"""
from __future__ import annotations

from pathlib import Path

import torch
import yaml

from .config import RunConfig, StudyConfig, load_study_file, parse_overrides, resolve_runs
from .data.prepare import PreparedData, SplitStore
from .fileio import atomic_write_text
from .inputs import ensure_inputs, offline_from_env
from .lock import study_lock
from .models import get_spec
from .plan import check_prepared, force_set, plan_actions, validate_runs
from .run import execute_run
from .report import build_report
from .summary import write_summary
from .tracking import Tracking, check_tracking


def plan_study(study_path: str | Path, overrides: list[str] | None = None) -> tuple[StudyConfig, list[RunConfig]]:
    """Load, merge and validate the whole study before any work is done."""
    study = load_study_file(study_path)
    runs = resolve_runs(study, parse_overrides(overrides or []), str(study_path))
    validate_runs(runs, Path(study_path))
    check_tracking(study.tracking)
    return study, runs


def save_resolved_study(study_dir: Path, study: StudyConfig, runs: list[RunConfig]) -> None:
    phases = [{"name": p.name, "title": p.title, "description": p.description,
               "runs": [r.model_dump(mode="json") for r in runs if r.phase == p.name]} for p in study.phases]
    resolved = {"name": study.name, "description": study.description, "phases": phases}
    atomic_write_text(study_dir / "study.yaml", yaml.safe_dump(resolved, sort_keys=False))


def prepare_splits(runs: list[RunConfig], store: SplitStore) -> dict[str, PreparedData]:
    """Every run's split, made before any training so that a bad dataset stops the study early."""
    return {cfg.run_id: store.get(cfg) for cfg in runs}


def run_study(study_path: str | Path, overrides: list[str] | None = None, out_dir: str | Path = "runs",
              force: bool | list[str] = False, log=print, offline: bool = False) -> Path:
    """Run (or continue) a study. `force`: True redoes every run; a list of <phase>/<run> redoes those
    and every run that starts from them. `offline`: fetch nothing; stop if a dataset or weight is missing."""
    study, runs = plan_study(study_path, overrides)
    forced = force_set(runs, ["*"] if force is True else list(force or []))
    study_dir = Path(out_dir) / study.name
    with study_lock(study_dir):
        ensure_inputs(runs, Path(study_path).parent, offline or offline_from_env(), log)
        store = SplitStore(study_dir, Path(study_path).parent, lambda cfg: get_spec(cfg.model.name).min_size, log)
        prepared = prepare_splits(runs, store)
        check_prepared(runs, prepared, Path(study_path))
        plans = plan_actions(runs, prepared, study_dir, forced)
        save_resolved_study(study_dir, study, runs)
        torch.use_deterministic_algorithms(True, warn_only=True)
        tracking = Tracking(study.tracking, study_dir, study.name, log)
        for plan in plans:
            execute_run(plan, study_dir, log=log, tracking=tracking)
            write_summary(study_dir)
        report = build_report(study_dir)
        tracking.log_report(list(report))
    log(f"study finished: {study_dir / 'summary.md'}, report: {report[0]} and {report[1]}")
    return study_dir
