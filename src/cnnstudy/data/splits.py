"""Seeded, stratified train/val/test splits, written to disk so every phase of a study uses the same one.

Every split has a test part, so that test scores never come from the images that chose a
checkpoint: a folder without test/ gets one carved (see `make_split`), unless `split.test` is 0.

With `split.folds: k` the images are dealt into k stratified folds instead (k-fold cross-validation):
fold j's split tests fold j, carves its validation images from the other folds (`split.val` of
them, per class) and trains on the rest (`Split.fold`), so every image is tested exactly once.

Each group of copies of one photo (copies.py) stays in one part and one fold (dealing.py deals
them whole); a group filed under two classes is left out unless `data.conflicts: keep`, and the
files of `data.exclude` are left out too (both listed in `Split.excluded`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..fileio import read_json, write_json
from .errors import DataError
from .copies import copy_groups
from .dealing import Items, class_units, deal_folds, limit_per_class, stratified_split
from .inspection import check_images
from .layout import empty_classes_error

PARTS = ("train", "val", "test")


@dataclass
class Split:
    dataset: str
    classes: list[str]
    train: Items
    val: Items
    test: Items
    skipped: list[dict] = field(default_factory=list)  # unreadable files: {"file", "reason"}
    origin: dict[str, str] = field(default_factory=dict)  # part -> where its images came from
    folds: list[Items] = field(default_factory=list)  # k-fold: the k test parts (train holds every image)
    fold_val: float = 0.0  # k-fold: the share of the other folds each fold validates on
    fold_seed: int = 0
    excluded: list[dict] = field(default_factory=list)  # left out on purpose: {"file", "reason"}
    groups: list[list[str]] = field(default_factory=list)  # copies kept in one part (a fold's val carve too)

    @property
    def together(self) -> dict[str, int]:
        """item -> the number of its group of copies."""
        return {item: number for number, group in enumerate(self.groups) for item in group}

    @property
    def digest(self) -> str:
        """What the split is: its classes and the files (and labels) in each part. Not where it lies."""
        payload = {"classes": self.classes, **{part: getattr(self, part) for part in PARTS}}
        if self.folds:  # without folds the digest covers classes and parts alone, as for splits made before folds
            payload.update(folds=self.folds, fold_val=self.fold_val, fold_seed=self.fold_seed)
        return hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()

    def fold(self, j: int) -> "Split":
        """Fold j's own split: test = fold j; validation carved (stratified, seeded per fold) from the
        other folds; train = the rest."""
        rest = [item for i, part in enumerate(self.folds) if i != j for item in part]
        rng = np.random.default_rng([self.fold_seed, j])
        train, val = stratified_split(sorted(rest), (1 - self.fold_val, self.fold_val), rng, self.together)
        k, where = len(self.folds), self.origin.get("train", "the images")
        others = "the other fold" if k == 2 else f"the other {k - 1} folds"
        origin = {"train": f"{others} of {where}, less validation",
                  "val": f"carved from {others}: {self.fold_val:.0%} of each class, seed {self.fold_seed}",
                  "test": f"fold {j + 1} of {k} of {where}"}
        return Split(self.dataset, self.classes, train, val, list(self.folds[j]), self.skipped, origin,
                     excluded=self.excluded, groups=self.groups)

    def folds_digest(self) -> str:
        """What the folds are: the digests of the folds' own splits, in order."""
        return folds_digest([self.fold(j).digest for j in range(len(self.folds))])

    def save(self, path: Path) -> None:
        saved = asdict(self)
        # Keys at their empty default are left out: such a split file reads as older cnnstudy wrote it.
        optional = ("folds", "fold_val", "fold_seed") if not self.folds else ()
        optional += tuple(key for key in ("excluded", "groups") if not saved[key])
        for key in optional:
            saved.pop(key)
        write_json(path, {**saved, "digest": self.digest})

    @classmethod
    def load(cls, path: Path) -> "Split":
        try:
            raw = read_json(path)
            raw.pop("digest", None)  # recomputed from the lists, never trusted from the file
            for key in PARTS:
                raw[key] = [(item, int(label)) for item, label in raw[key]]
            raw["folds"] = [[(item, int(label)) for item, label in part] for part in raw.get("folds", [])]
            raw["groups"] = [list(map(str, group)) for group in raw.get("groups", [])]
            return cls(**raw)
        except (ValueError, KeyError, TypeError) as err:
            raise DataError(f"{path} is not a readable split file ({err}); restore it from a backup. "
                            "Deleting it makes a new split, so every run that used it must be redone "
                            "(--force)") from None

    def counts(self) -> dict[str, list[int]]:
        return {name: np.bincount([label for _, label in getattr(self, name)],
                                  minlength=len(self.classes)).tolist() for name in PARTS}


def folds_digest(digests: list[str]) -> str:
    """What k folds are: the digests of their splits, in order (equal for runs on the same folds)."""
    return hashlib.sha256(",".join(digests).encode()).hexdigest()


def split_key(dataset: str, limit: int | None, fractions: tuple[float, float, float], seed: int,
              classes: list[str] | None = None, folds: int | None = None, chosen: dict | None = None) -> str:
    """The split's file name. `chosen`: what else decides which images go where (label conflicts kept,
    the digest of data.exclude's list), only where set."""
    # Without a class subset, folds or choices the key hashes only dataset, limit, fractions and seed, so
    # splits saved before those settings existed are still found.
    parts = ([classes] if classes is not None or folds or chosen else []) + ([{"folds": folds}] if folds else [])
    parts += [chosen] if chosen else []
    digest = hashlib.sha1(json.dumps([dataset, limit, fractions, seed, *parts]).encode()).hexdigest()[:10]
    return f"{Path(dataset).name}-{digest}"


def _carved(share: float, source: str, seed: int) -> str:
    return f"carved from {source}: {share:.0%} of each class, seed {seed}"


def _from_split_folders(pools: dict[str, Items], folders: dict[str, str], fractions, seed: int,
                        rng: np.random.Generator, together: dict[str, int]) -> tuple[Items, Items, Items, dict[str, str]]:
    """Keep the folders' parts; carve a missing val from train and a missing test from val (copies kept
    together within the carved folder; copies across the given folders are the user's split, kept)."""
    train, val, test = pools["train"], pools.get("val", []), pools.get("test", [])
    origin = {part: folders[part] for part in PARTS if pools.get(part)}
    f_train, f_val, f_test = fractions
    if not val and not test:
        train, val, test = stratified_split(train, fractions, rng, together)
        origin.update(val=_carved(f_val, folders["train"], seed),
                      test=_carved(f_test, folders["train"], seed))
    elif not val:
        share = f_val / (f_train + f_val)
        train, val = stratified_split(train, (1 - share, share), rng, together)
        origin["val"] = _carved(share, folders["train"], seed)
    elif not test and f_test > 0:
        # The folder's own held-out images are split into model selection (val) and a final score (test).
        share = f_test / (f_val + f_test)
        val, test = stratified_split(val, (1 - share, share), rng, together)
        origin["test"] = _carved(share, folders["val"], seed)
    return train, val, test, origin


def _folded(source, pools: dict[str, Items], folds: int, rng, together: dict[str, int]) -> tuple[Items, dict, list]:
    """Every image (class folders, or train/ + val/ of split folders) dealt into folds."""
    if pools.get("test"):
        raise DataError(f"data.split.folds: {source.root} has its own test/ folder. Cross-validation tests every "
                        "image once, so it would leave those test images unused: drop split.folds to use the "
                        "folder's own split, or move test/'s images into train/ to fold over all of them")
    items = sorted(pools.get("all", []) + pools.get("train", []) + pools.get("val", []))
    where = "class folders" if "all" in pools else "train/ + val/"
    counts = np.bincount([label for _, label in items], minlength=len(source.classes))
    short = [f"{name} ({n})" for name, n in zip(source.classes, counts) if n < folds]
    if short:
        raise DataError(f"data.split.folds {folds}: class(es) {', '.join(short)} of {source.root} have fewer images "
                        "than folds, so some fold would test none of them; lower split.folds or add images")
    units = class_units(items, together)  # a group of copies goes to one fold: it counts once
    few = [f"{name} ({counts[k]} images, {len(units[k])} distinct)" for k, name in enumerate(source.classes)
           if len(units[k]) < folds]
    if few:
        raise DataError(f"data.split.folds {folds}: class(es) {', '.join(few)} of {source.root} have fewer distinct "
                        "photos than folds (copies of one photo stay in one fold), so some fold would test or train "
                        "on none of them; lower split.folds, or add photos to those classes")
    return items, {"train": where}, deal_folds(items, folds, rng, together)


def make_split(source, fractions: tuple[float, float, float], seed: int, limit: int | None,
               on_bad_image: str = "skip", unreadable: list[dict] | None = None, folds: int | None = None,
               copies: list[dict] | None = None, keep_conflicts: bool = False,
               exclude: dict[str, str] | None = None) -> Split:
    """Split `source`, leaving out unreadable images (found by decoding, unless already known), the files
    of `exclude` (file -> why) and, unless `keep_conflicts`, every copy of a photo filed under two classes;
    each group of `copies` (copies.copy_groups, found by decoding unless given) stays in one part. With
    `folds`, into stratified folds (see `Split.fold`)."""
    rng = np.random.default_rng(seed)
    pools = {name: limit_per_class(items, limit, rng) for name, items in sorted(source.items.items())}
    label_of = {item: label for items in pools.values() for item, label in items}
    if unreadable is None or copies is None:
        checks = check_images(source, list(label_of))
        unreadable = [{"file": c.item, "reason": c.reason} for c in checks if c.reason]
        copies = copy_groups(checks, label_of, source.classes)
    pooled = {item for items in pools.values() for item, _ in items}
    skipped = [bad for bad in unreadable if bad["file"] in pooled]
    if skipped and on_bad_image == "fail":
        listing = "\n".join(f"  {source.root / s['file']}: {s['reason']}" for s in skipped[:20])
        raise DataError(f"{len(skipped)} unreadable image(s) in {source.root} (data.on_bad_image: fail):\n"
                        f"{listing}\nFix or delete them, or set data.on_bad_image: skip")
    excluded = [{"file": item, "reason": why} for item, why in sorted((exclude or {}).items()) if item in pooled]
    groups = [[item for item in group["files"] if item in pooled] for group in copies]
    if not keep_conflicts:
        excluded += conflict_exclusions(groups, label_of, source.classes)
    bad = {s["file"] for s in skipped} | {e["file"] for e in excluded}
    pools = {name: [it for it in items if it[0] not in bad] for name, items in pools.items()}
    groups = [kept for kept in ([item for item in group if item not in bad] for group in groups) if len(kept) > 1]
    together = {item: number for number, group in enumerate(groups) for item in group}
    extra = {"excluded": excluded, "groups": groups}
    if folds:
        items, origin, dealt = _folded(source, pools, folds, rng, together)
        split = Split(str(source.root), list(source.classes), items, [], [], skipped, origin, dealt,
                      fractions[1] / (fractions[0] + fractions[1]), seed, **extra)
        if any(not split.fold(j).val for j in range(folds)):
            raise DataError(f"data.split.folds {folds}: {source.root} is too small for that many folds with "
                            f"split.val {fractions[1]}: some fold gets no validation images; lower split.folds "
                            "or raise split.val")
        return split
    if "all" in pools:
        train, val, test = stratified_split(pools["all"], fractions, rng, together)
        origin = {"train": "class folders", "val": _carved(fractions[1], "class folders", seed),
                  "test": _carved(fractions[2], "class folders", seed)}
    else:
        slash = "/" if source.layout.kind == "split folders" else ""
        names = {part: f"{folder}{slash}" for part, folder in source.layout.folders.items()}
        train, val, test, origin = _from_split_folders(pools, names, fractions, seed, rng, together)
    parts = {"train": train, "val": val, "test": test}
    split = Split(str(source.root), list(source.classes), train, val, test, skipped,
                  {part: origin[part] for part in PARTS if parts[part]}, **extra)
    _check_classes(split, source)
    return split


def conflict_exclusions(groups: list[list[str]], label_of: dict[str, int], classes: list[str]) -> list[dict]:
    """Every member of a group of copies filed under more than one class, with the classes it is filed under."""
    left_out = []
    for group in groups:
        labels = sorted({label_of[item] for item in group})
        if len(labels) > 1:
            under = " and ".join(classes[label] for label in labels)
            left_out += [{"file": item, "reason": f"label conflict: the same photo is filed under {under}"}
                         for item in sorted(group)]
    return left_out


def _check_classes(split: Split, source) -> None:
    train_counts = split.counts()["train"]
    empty = [cls for cls, n in zip(split.classes, train_counts) if n == 0]
    if empty:
        conflicted = sum(entry["reason"].startswith("label conflict") for entry in split.excluded)
        why = (f" ({conflicted} image(s) were left out as label conflicts, the same photo under two classes: "
               "data.conflicts: keep keeps them)") if conflicted else ""
        raise empty_classes_error(empty, source.root, why)
    if not split.val:
        raise DataError(f"{split.dataset} gives no validation images; add a val/ folder or raise split.val")
