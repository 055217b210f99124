"""Seeded, stratified train/val/test splits, written to disk so every phase of a study uses the same one."""
from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .datasets import DataError
from .fileio import read_json, write_json
from .inspection import check_images

Items = list[tuple[str, int]]


@dataclass
class Split:
    dataset: str
    classes: list[str]
    train: Items
    val: Items
    test: Items
    skipped: list[dict] = field(default_factory=list)  # unreadable files: {"file", "reason"}

    def save(self, path: Path) -> None:
        write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> "Split":
        raw = read_json(path)
        for key in ("train", "val", "test"):
            raw[key] = [(item, int(label)) for item, label in raw[key]]
        return cls(**raw)

    def counts(self) -> dict[str, list[int]]:
        return {name: np.bincount([label for _, label in items], minlength=len(self.classes)).tolist()
                for name, items in (("train", self.train), ("val", self.val), ("test", self.test))}


def split_key(dataset: str, limit: int | None, fractions: tuple[float, float, float], seed: int) -> str:
    digest = hashlib.sha1(json.dumps([dataset, limit, fractions, seed]).encode()).hexdigest()[:10]
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
    """Split each class by `fractions` (summing to 1); every class keeps at least one training image."""
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
    else:
        train, val, test = pools["train"], pools.get("val", []), pools.get("test", [])
        if not val:
            carve = fractions[1] / (fractions[0] + fractions[1])
            train, val = stratified_split(train, (1 - carve, carve), rng)
    split = Split(str(source.root), list(source.classes), train, val, test, skipped)
    _check_classes(split, source)
    return split


def _check_classes(split: Split, source) -> None:
    train_counts = split.counts()["train"]
    empty = [cls for cls, n in zip(split.classes, train_counts) if n == 0]
    if empty:
        where = source.root
        raise DataError(f"class folder(s) {', '.join(empty)} in {where} have no readable training images; "
                        "add images or remove the folder")
    if not split.val:
        raise DataError(f"{split.dataset} gives no validation images; add a val/ folder or raise split.val")
