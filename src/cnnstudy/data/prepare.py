"""One split per dataset setting, made (after an inspection) the first time a study needs it, saved
under the study folder and reused by every phase. A saved split is never replaced: if the dataset
no longer holds its images, the study stops and says what to do.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from ..config import RunConfig
from ..fileio import write_json
from .errors import DataError
from .inspection import check_images, duplicate_groups, inspect_dataset
from .sources import open_source, resolve_dataset, select_classes
from .splits import PARTS, Split, make_split, split_key
from .state import describe_change, files_table, record_content, record_table, split_items


def data_change(study_dir: Path, data: "PreparedData"):
    """For fingerprint.differences: how the images on disk differ from a recorded digest."""
    return lambda old_digest: describe_change(study_dir / "splits", data.split.dataset, old_digest, data.files)


@dataclass
class PreparedData:
    split: Split
    source: object
    files: dict = field(default_factory=dict, repr=False)  # every split file: [size, mtime_ns]
    data_digest: str | None = None  # the digest of `files`, recorded in each run's fingerprint

    @property
    def folds(self) -> int | None:
        return len(self.split.folds) or None

    def fold(self, j: int | None) -> "PreparedData":
        """Fold j's data (its own split, the same files); itself for None."""
        return self if j is None else replace(self, split=self.split.fold(j))


class SplitStore:
    """Splits of a study, keyed by dataset, limit_per_class, fractions and seed."""

    def __init__(self, study_dir: Path, base: Path, min_size: Callable[[RunConfig], int],
                 log: Callable[[str], None] = print) -> None:
        self.study_dir, self.base, self.min_size, self.log = study_dir, base, min_size, log
        self.sources: dict[str, object] = {}
        self.prepared: dict[str, PreparedData] = {}

    def get(self, cfg: RunConfig) -> PreparedData:
        data = cfg.data
        fractions = (data.split.train, data.split.val, data.split.test)
        dataset = str(resolve_dataset(data.dataset, self.base))
        key = split_key(dataset, data.limit_per_class, fractions, data.split.seed, data.classes, data.split.folds)
        if key in self.prepared:
            return self.prepared[key]
        if dataset not in self.sources:
            self.sources[dataset] = open_source(data.dataset, self.base)
            self._warn_layout(self.sources[dataset])
        source = select_classes(self.sources[dataset], data.classes)
        path = self.study_dir / "splits" / f"{key}.json"
        hashes = None
        if path.exists():
            split = Split.load(path)
            check_split_against_source(split, source, path, data.limit_per_class, self.log)
        else:
            split, hashes = self._new_split(cfg, source, path, fractions)
        files = files_table(source, split_items(split))
        digest = record_table(self.study_dir / "splits", files)
        record_content(self.study_dir / "splits", digest, files, source, hashes)
        self.prepared[key] = PreparedData(split, source, files, digest)
        return self.prepared[key]

    def _new_split(self, cfg: RunConfig, source, path: Path, fractions) -> tuple[Split, dict[str, str]]:
        """A new split, and the SHA-1 of every file the inspection read (so they are not read twice)."""
        data = cfg.data
        checks = check_images(source, [item for items in source.items.values() for item, _ in items])
        report = inspect_dataset(source, self.min_size(cfg), checks)
        split = make_split(source, fractions, data.split.seed, data.limit_per_class, data.on_bad_image,
                           unreadable=report["unreadable"], folds=data.split.folds)
        parts = {f"fold {j + 1}": part for j, part in enumerate(split.folds)} or \
            {name: getattr(split, name) for name in PARTS}
        split_of = {item: name for name, items in parts.items() for item, _ in items}
        report["duplicates_across_study_split"] = duplicate_groups(checks, split_of)
        write_json(path.with_suffix(".inspect.json"), report)
        self._warn_split(split, report, path)
        split.save(path)
        return split, {check.item: check.sha1 for check in checks if check.sha1}

    def _warn_layout(self, source) -> None:
        self.log(f"{source.root}: {source.layout.describe()}")
        for folder in source.layout.passed_over:
            self.log(f"warning: {source.root / folder['folder']} is not used: {folder['reason']}")
        if source.stray_images:
            self.log(f"warning: {len(source.stray_images)} image(s) of {source.root} lie outside any class "
                     f"folder and are not used, e.g. {source.stray_images[0]}")

    def _warn_split(self, split: Split, report: dict, path: Path) -> None:
        if split.skipped:
            listing = "".join(f"\n  {bad['file']}: {bad['reason']}" for bad in split.skipped[:20])
            self.log(f"warning: left out {len(split.skipped)} unreadable image(s) of {split.dataset}:{listing}")
        leaks = report["duplicates_across_study_split"]
        if leaks:
            self.log(f"warning: {len(leaks)} image(s) appear in more than one of {'the folds' if split.folds else 'train/val/test'} "
                     f"(see {path.with_suffix('.inspect.json')})")


def check_split_against_source(split: Split, source, path: Path, limit: int | None, log) -> None:
    """A saved split must still describe the dataset: same classes, every image still there."""
    if list(source.classes) != split.classes:
        raise DataError(f"{source.root} now has the classes {source.classes}, but the study's split {path} "
                        f"was made with {split.classes}. Restore the class folders; or delete {path} "
                        "and re-run with --force to make a new split and redo every run on this dataset")
    available = {item for items in source.items.values() for item, _ in items}
    in_split = [item for part in PARTS for item, _ in getattr(split, part)]
    gone = [item for item in in_split if item not in available]
    if gone:
        raise DataError(f"{len(gone)} image(s) of the study's split {path} are no longer in {source.root} "
                        f"(e.g. {', '.join(gone[:3])}). Put them back; or delete {path} and re-run with "
                        "--force to make a new split and redo every run on this dataset")
    unused = len(available) - len(in_split) - len(split.skipped)
    if limit is None and unused > 0:
        log(f"note: {unused} image(s) in {source.root} are newer than the study's split {path} and not used; "
            "delete that file and re-run with --force to include them")
