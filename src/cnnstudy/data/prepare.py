"""One split per dataset setting, made (after an inspection) the first time a study needs it, saved
under the study folder and reused by every phase. A saved split is never replaced: if the dataset
no longer holds its images, the study stops and says what to do.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from ..config import RunConfig
from ..fileio import read_json, write_json
from .datacheck import check_sentence, exclude_digest, read_exclude, split_check
from .errors import DataError
from .inspection import check_images, inspect_dataset
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
    check: dict = field(default_factory=dict, repr=False)  # what the data check found (datacheck.split_check)

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
        exclude = self._exclude(data.exclude)
        chosen = {**({"conflicts": data.conflicts} if data.conflicts != "leave_out" else {}),
                  **({"exclude": exclude_digest(exclude)} if exclude else {})}
        key = split_key(dataset, data.limit_per_class, fractions, data.split.seed, data.classes, data.split.folds,
                        chosen)
        if key in self.prepared:
            return self.prepared[key]
        if dataset not in self.sources:
            self.sources[dataset] = open_source(data.dataset, self.base)
            self._warn_layout(self.sources[dataset])
        source = select_classes(self.sources[dataset], data.classes)
        path = self.study_dir / "splits" / f"{key}.json"
        checks = None
        if path.exists():
            split = Split.load(path)
            check_split_against_source(split, source, path, data.limit_per_class, self.log)
        else:
            split, checks = self._new_split(cfg, source, path, fractions, exclude)
        files = files_table(source, split_items(split))
        digest = record_table(self.study_dir / "splits", files)
        hashes = {check.item: check.sha1 for check in checks or [] if check.sha1}
        record_content(self.study_dir / "splits", digest, files, source, hashes)
        check = self._check(path, split, source, digest, checks, data.conflicts)
        self.prepared[key] = PreparedData(split, source, files, digest, check)
        return self.prepared[key]

    def _exclude(self, setting: str | None) -> dict[str, str]:
        if setting is None:
            return {}
        path = Path(setting).expanduser()
        return read_exclude(path if path.is_absolute() else self.base / path)

    def _new_split(self, cfg: RunConfig, source, path: Path, fractions, exclude: dict[str, str]) -> tuple[Split, list]:
        """A new split, and the inspection's decode of every image (hashes read once, for the check too)."""
        data = cfg.data
        items = [item for items in source.items.values() for item, _ in items]
        # Judged against the whole dataset: a listed file of a class this run does not use is no typo.
        everything = {item for items in getattr(source, "base", source).items.values() for item, _ in items}
        unknown = sorted(set(exclude) - everything)
        if exclude and len(unknown) == len(exclude):
            raise DataError(f"data.exclude: none of its {len(exclude)} file(s) is an image of {source.root} "
                            f"(e.g. {unknown[0]}); give paths relative to the dataset folder, as "
                            "cnnstudy inspect and label_issues.csv write them")
        if unknown:
            self.log(f"warning: data.exclude: {len(unknown)} listed file(s) are not in {source.root}, e.g. {unknown[0]}")
        checks = check_images(source, items)
        report = inspect_dataset(source, self.min_size(cfg), checks)
        split = make_split(source, fractions, data.split.seed, data.limit_per_class, data.on_bad_image,
                           unreadable=report["unreadable"], folds=data.split.folds, copies=report["copies"] or [],
                           keep_conflicts=data.conflicts == "keep", exclude=exclude)
        write_json(path.with_suffix(".inspect.json"), report)
        if split.skipped:
            listing = "".join(f"\n  {bad['file']}: {bad['reason']}" for bad in split.skipped[:20])
            self.log(f"warning: left out {len(split.skipped)} unreadable image(s) of {split.dataset}:{listing}")
        split.save(path)
        return split, checks

    def _check(self, path: Path, split: Split, source, files_digest: str, checks: list | None,
               conflicts: str) -> dict:
        """The split's data check: kept beside it while the split and its files are unchanged (a saved
        split is checked once, by decoding its images then)."""
        check_path = path.with_suffix(".check.json")
        if check_path.exists() and checks is None:
            saved = read_json(check_path)
            if saved.get("files_digest") == files_digest and saved.get("digests", [None])[0] == split.digest:
                return saved
        if checks is None:
            checks = check_images(source, split_items(split) + [entry["file"] for entry in split.excluded])
        label_of = {item: label for items in source.items.values() for item, label in items}
        check = {**split_check(split, checks, label_of, conflicts), "files_digest": files_digest,
                 "given_folders": source.layout.kind == "split folders"}
        write_json(check_path, check)
        self._say_check(check, path)
        return check

    def _warn_layout(self, source) -> None:
        self.log(f"{source.root}: {source.layout.describe()}")
        for folder in source.layout.passed_over:
            self.log(f"warning: {source.root / folder['folder']} is not used: {folder['reason']}")
        if source.stray_images:
            self.log(f"warning: {len(source.stray_images)} image(s) of {source.root} lie outside any class "
                     f"folder and are not used, e.g. {source.stray_images[0]}")

    def _say_check(self, check: dict, path: Path) -> None:
        self.log(f"data check ({Path(check['dataset']).name}): {check_sentence(check)}")
        if check["across_parts"]:
            sides = "folds" if check["folded"] else "train/val/test"
            self.log(f"warning: {len(check['across_parts'])} group(s) of copies lie on two sides of {sides} in {path}; "
                     f"{len(check['leaked_test'])} scored image(s) have a copy on the training side, and the report "
                     f"gives each run's test accuracy without them too (see {path.with_suffix('.check.json')}). "
                     + ("They are in the dataset's own split folders: move or delete the copies to end it"
                        if check["given_folders"] else
                        f"A split made now keeps copies together: delete {path} and re-run with --force to make one"))


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
    unused = len(available) - len(in_split) - len(split.skipped) - len(split.excluded)
    if limit is None and unused > 0:
        log(f"note: {unused} image(s) in {source.root} are newer than the study's split {path} and not used; "
            "delete that file and re-run with --force to include them")
