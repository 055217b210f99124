"""Seeded, stratified train/val/test splits, written to disk so every phase of a study uses the same one.

Every split has a test part, so that test scores never come from the images that chose a
checkpoint: a folder without test/ gets one carved (see `make_split`), unless `split.test` is 0.
"""
from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..fileio import read_json, write_json
from .errors import DataError
from .inspection import check_images

Items = list[tuple[str, int]]
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

    @property
    def digest(self) -> str:
        """What the split is: its classes and the files (and labels) in each part. Not where it lies."""
        payload = {"classes": self.classes, **{part: getattr(self, part) for part in PARTS}}
        return hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()

    def save(self, path: Path) -> None:
        write_json(path, {**asdict(self), "digest": self.digest})

    @classmethod
    def load(cls, path: Path) -> "Split":
        try:
            raw = read_json(path)
            raw.pop("digest", None)  # recomputed from the lists, never trusted from the file
            for key in PARTS:
                raw[key] = [(item, int(label)) for item, label in raw[key]]
            return cls(**raw)
        except (ValueError, KeyError, TypeError) as err:
            raise DataError(f"{path} is not a readable split file ({err}); restore it from a backup. "
                            "Deleting it makes a new split, so every run that used it must be redone "
                            "(--force)") from None

    def counts(self) -> dict[str, list[int]]:
        return {name: np.bincount([label for _, label in getattr(self, name)],
                                  minlength=len(self.classes)).tolist() for name in PARTS}


def split_key(dataset: str, limit: int | None, fractions: tuple[float, float, float], seed: int,
              classes: list[str] | None = None) -> str:
    # Without a class subset the key is what it always was, so existing studies find their splits.
    chosen = [classes] if classes is not None else []
    digest = hashlib.sha1(json.dumps([dataset, limit, fractions, seed, *chosen]).encode()).hexdigest()[:10]
    return f"{Path(dataset).name}-{digest}"


def _by_class(items: Items) -> dict[int, list[str]]:
    grouped: dict[int, list[str]] = defaultdict(list)
    for item, label in items:
        grouped[label].append(item)
    return grouped


def limit_per_class(items: Items, limit: int | None, rng: np.random.Generator) -> Items:
    if limit is None:
        return list(items)
    kept: Items = []
    for label, ids in sorted(_by_class(items).items()):
        chosen = sorted(rng.permutation(len(ids))[:limit])
        kept += [(ids[i], label) for i in chosen]
    return kept


def stratified_split(items: Items, fractions: tuple[float, ...], rng: np.random.Generator) -> list[Items]:
    """Split each class by `fractions` (summing to 1); every class keeps at least one image in the first part."""
    parts: list[Items] = [[] for _ in fractions]
    for label, ids in sorted(_by_class(items).items()):
        order = rng.permutation(len(ids))
        sizes = [int(round(len(ids) * f)) for f in fractions[1:]]
        sizes = [max(1, s) if f > 0 and len(ids) >= len(fractions) else s for s, f in zip(sizes, fractions[1:])]
        while sum(sizes) >= len(ids) and any(sizes):
            sizes[sizes.index(max(sizes))] -= 1
        bounds = np.cumsum([len(ids) - sum(sizes)] + sizes)
        for part, chunk in zip(parts, np.split(order, bounds[:-1])):
            part += [(ids[i], label) for i in sorted(chunk)]
    return parts


def _carved(share: float, source: str, seed: int) -> str:
    return f"carved from {source}: {share:.0%} of each class, seed {seed}"


def _from_split_folders(pools: dict[str, Items], folders: dict[str, str], fractions, seed: int,
                        rng: np.random.Generator) -> tuple[Items, Items, Items, dict[str, str]]:
    """Keep the folders' parts; carve a missing val from train and a missing test from val."""
    train, val, test = pools["train"], pools.get("val", []), pools.get("test", [])
    origin = {part: folders[part] for part in PARTS if pools.get(part)}
    f_train, f_val, f_test = fractions
    if not val and not test:
        train, val, test = stratified_split(train, fractions, rng)
        origin.update(val=_carved(f_val, folders["train"], seed),
                      test=_carved(f_test, folders["train"], seed))
    elif not val:
        share = f_val / (f_train + f_val)
        train, val = stratified_split(train, (1 - share, share), rng)
        origin["val"] = _carved(share, folders["train"], seed)
    elif not test and f_test > 0:
        # The folder's own held-out images are split into model selection (val) and a final score (test).
        share = f_test / (f_val + f_test)
        val, test = stratified_split(val, (1 - share, share), rng)
        origin["test"] = _carved(share, folders["val"], seed)
    return train, val, test, origin


def make_split(source, fractions: tuple[float, float, float], seed: int, limit: int | None,
               on_bad_image: str = "skip", unreadable: list[dict] | None = None) -> Split:
    """Split `source`, leaving out unreadable images (found by decoding, unless already known)."""
    rng = np.random.default_rng(seed)
    pools = {name: limit_per_class(items, limit, rng) for name, items in sorted(source.items.items())}
    if unreadable is None:
        checks = check_images(source, [item for items in pools.values() for item, _ in items])
        unreadable = [{"file": c.item, "reason": c.reason} for c in checks if c.reason]
    pooled = {item for items in pools.values() for item, _ in items}
    skipped = [bad for bad in unreadable if bad["file"] in pooled]
    if skipped and on_bad_image == "fail":
        listing = "\n".join(f"  {source.root / s['file']}: {s['reason']}" for s in skipped[:20])
        raise DataError(f"{len(skipped)} unreadable image(s) in {source.root} (data.on_bad_image: fail):\n"
                        f"{listing}\nFix or delete them, or set data.on_bad_image: skip")
    bad = {s["file"] for s in skipped}
    pools = {name: [it for it in items if it[0] not in bad] for name, items in pools.items()}
    if "all" in pools:
        train, val, test = stratified_split(pools["all"], fractions, rng)
        origin = {"train": "class folders", "val": _carved(fractions[1], "class folders", seed),
                  "test": _carved(fractions[2], "class folders", seed)}
    else:
        slash = "/" if source.layout.kind == "split folders" else ""
        names = {part: f"{folder}{slash}" for part, folder in source.layout.folders.items()}
        train, val, test, origin = _from_split_folders(pools, names, fractions, seed, rng)
    parts = {"train": train, "val": val, "test": test}
    split = Split(str(source.root), list(source.classes), train, val, test, skipped,
                  {part: origin[part] for part in PARTS if parts[part]})
    _check_classes(split, source)
    return split


def _check_classes(split: Split, source) -> None:
    train_counts = split.counts()["train"]
    empty = [cls for cls, n in zip(split.classes, train_counts) if n == 0]
    if empty:
        raise DataError(f"class folder(s) {', '.join(empty)} in {source.root} have no readable training "
                        "images; add images or remove the folder")
    if not split.val:
        raise DataError(f"{split.dataset} gives no validation images; add a val/ folder or raise split.val")
