"""A study made ready to train: the file loaded and every run validated (plan_study); then, in the
study folder, inputs fetched, splits made, everything checked and every run's action planned, a
forced start recorded (prepare_study). Nothing trains here; anything that would make a number
untrustworthy stops the study before training."""
from __future__ import annotations

from pathlib import Path

import yaml

from ...config import RunConfig, StudyConfig, StudyError
from ...data.prepare import PreparedData, SplitStore
from ...fileio import atomic_write_text
from ...models.registry import get_spec
from ...training.distributed import Dist
from ..execution.executors import Parallel
from ..execution.tracking import check_tracking
from ..search.sweep import BASE_SUFFIX, expand_sweeps
from .force import begin_force, force_id, forced_key, still_forced
from .inputs import ensure_inputs, offline_from_env
from .checks import check_prepared, run_problems
from .plan import plan_actions
from .space import check_free_space
from .studyfile import load_study, raise_problems


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
