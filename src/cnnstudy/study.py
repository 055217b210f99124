"""A study: phases of runs, validated up front, run in order, each finished run skipped on a re-run."""
from __future__ import annotations

from pathlib import Path

import torch
import yaml

from .config import RunConfig, StudyConfig, StudyError, load_study_file, parse_overrides, resolve_runs
from .datasets import DataError, open_source, resolve_dataset
from .fileio import atomic_write_text, write_json
from .inspection import check_images, duplicate_groups, inspect_dataset
from .freeze import FreezeError, trainable_modules
from .models import create_model, get_spec
from .run import execute_run
from .splits import Split, make_split, split_key
from .summary import write_summary


def plan_study(study_path: str | Path, overrides: list[str] | None = None) -> tuple[StudyConfig, list[RunConfig]]:
    """Load, merge and validate the whole study before any work is done."""
    study = load_study_file(study_path)
    runs = resolve_runs(study, parse_overrides(overrides or []), str(study_path))
    validate_runs(runs, Path(study_path))
    return study, runs


def validate_runs(runs: list[RunConfig], study_path: Path) -> None:
    seen: set[str] = set()
    for cfg in runs:
        where = f"{study_path}, run {cfg.run_id}"
        if cfg.run_id in seen:
            raise StudyError(f"{where}: the name is used twice in phase {cfg.phase!r}; rename one")
        try:
            spec = get_spec(cfg.model.name)
        except ValueError as err:
            raise StudyError(f"{where}: model.name: {err}") from None
        if cfg.data.image_size < spec.min_size:
            raise StudyError(f"{where}: data.image_size {cfg.data.image_size} is below {cfg.model.name}'s "
                             f"minimum of {spec.min_size} px; raise it to {spec.min_size} or more")
        if cfg.model.init_from and cfg.model.init_from not in seen:
            raise StudyError(f"{where}: model.init_from {cfg.model.init_from!r} names no earlier run; "
                             f"use one of: {', '.join(sorted(seen)) or '(none yet)'}")
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise StudyError(f"{where}: device {cfg.device!r} but CUDA is not available; use device: auto")
        if cfg.model.weights and not Path(cfg.model.weights).is_file():
            raise StudyError(f"{where}: model.weights file {cfg.model.weights} does not exist")
        try:
            resolve_dataset(cfg.data.dataset, study_path.parent)
        except DataError as err:
            raise StudyError(f"{where}: data.dataset: {err}") from None
        check_freeze(cfg, where)
        seen.add(cfg.run_id)


def check_freeze(cfg: RunConfig, where: str) -> None:
    """The freeze policy must name parts the model has; checked on a weightless (meta) copy."""
    with torch.device("meta"):
        model = create_model(cfg.model.name, 2, image_size=cfg.data.image_size)
    try:
        trainable_modules(model, cfg.model.freeze)
    except FreezeError as err:
        raise StudyError(f"{where}: model.{err}") from None


def save_resolved_study(study_dir: Path, study: StudyConfig, runs: list[RunConfig]) -> None:
    phases = [{"name": p.name, "title": p.title, "description": p.description,
               "runs": [r.model_dump() for r in runs if r.phase == p.name]} for p in study.phases]
    resolved = {"name": study.name, "description": study.description, "phases": phases}
    atomic_write_text(study_dir / "study.yaml", yaml.safe_dump(resolved, sort_keys=False))


class SplitCache:
    """One split per dataset setting, saved under the study folder and reused by every phase.

    A new split is preceded by an inspection of the dataset (saved beside it), whose decode pass
    also finds the unreadable images the split leaves out.
    """

    def __init__(self, study_dir: Path, study_path: Path, log=print) -> None:
        self.study_dir, self.base, self.log = study_dir, study_path.parent, log
        self.sources: dict[str, object] = {}

    def get(self, cfg: RunConfig) -> tuple[Split, object]:
        data = cfg.data
        fractions = (data.split.train, data.split.val, data.split.test)
        key = split_key(str(resolve_dataset(data.dataset, self.base)), data.limit_per_class, fractions,
                        data.split.seed)
        if key not in self.sources:
            self.sources[key] = open_source(data.dataset, self.base)
        source, path = self.sources[key], self.study_dir / "splits" / f"{key}.json"
        if path.exists():
            return Split.load(path), source
        checks = check_images(source, [item for items in source.items.values() for item, _ in items])
        report = inspect_dataset(source, get_spec(cfg.model.name).min_size, checks)
        split = make_split(source, fractions, data.split.seed, data.limit_per_class, data.on_bad_image,
                           unreadable=report["unreadable"])
        split_of = {item: name for name in ("train", "val", "test") for item, _ in getattr(split, name)}
        report["duplicates_across_study_split"] = duplicate_groups(checks, split_of)
        write_json(path.with_suffix(".inspect.json"), report)
        self._warn(split, report, path)
        split.save(path)
        return split, source

    def _warn(self, split: Split, report: dict, path: Path) -> None:
        if split.skipped:
            listing = "".join(f"\n  {bad['file']}: {bad['reason']}" for bad in split.skipped[:20])
            self.log(f"warning: left out {len(split.skipped)} unreadable image(s) of {split.dataset}:{listing}")
        leaks = report["duplicates_across_study_split"]
        if leaks:
            self.log(f"warning: {len(leaks)} image(s) appear in more than one of train/val/test "
                     f"(see {path.with_suffix('.inspect.json')})")


def prepare_splits(runs: list[RunConfig], splits: SplitCache, study_path: Path) -> list[tuple]:
    """Every run's split, made before any training so that a bad dataset stops the study early."""
    prepared = []
    for cfg in runs:
        split, source = splits.get(cfg)
        if cfg.train.batch_size > len(split.train):
            raise StudyError(f"{study_path}, run {cfg.run_id}: train.batch_size {cfg.train.batch_size} is "
                             f"larger than the {len(split.train)} training images; lower it")
        prepared.append((cfg, split, source))
    return prepared


def run_study(study_path: str | Path, overrides: list[str] | None = None, out_dir: str | Path = "runs",
              force: bool = False, log=print) -> Path:
    study, runs = plan_study(study_path, overrides)
    study_dir = Path(out_dir) / study.name
    save_resolved_study(study_dir, study, runs)
    torch.use_deterministic_algorithms(True, warn_only=True)
    for cfg, split, source in prepare_splits(runs, SplitCache(study_dir, Path(study_path), log), Path(study_path)):
        execute_run(cfg, study_dir, split, source, force=force, log=log)
        write_summary(study_dir)
    log(f"study finished: {study_dir / 'summary.md'}")
    return study_dir
