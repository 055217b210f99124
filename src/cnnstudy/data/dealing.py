"""Dealing labelled images into parts: a seeded draw per class, a stratified split and stratified
folds, each keeping a group of copies whole (`together`: item -> its group's number). Without groups
they are plain stratified splits and a round-robin deal of folds."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

Items = list[tuple[str, int]]


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


def class_units(items: Items, together: dict[str, int] | None) -> dict[int, list[list[int]]]:
    """Per class, the units that go to one part together: positions in `items` of each group of copies
    (`together`: item -> group number), a single image elsewhere. A group spanning classes (a kept label
    conflict) belongs to the class of its first image. Units are in the order of their first image."""
    units: dict[int, list[list[int]]] = defaultdict(list)
    unit_of_group: dict[int, list[int]] = {}
    for position, (item, label) in enumerate(items):
        group = (together or {}).get(item)
        if group is None:
            units[label].append([position])
        elif group in unit_of_group:
            unit_of_group[group].append(position)
        else:
            unit_of_group[group] = [position]
            units[label].append(unit_of_group[group])
    return units


def stratified_split(items: Items, fractions: tuple[float, ...], rng: np.random.Generator,
                     together: dict[str, int] | None = None) -> list[Items]:
    """Split each class by `fractions` (summing to 1); every class keeps at least one image in the first
    part. A group of copies (`together`) goes whole to the part its first image would go to, so with no
    groups this is a plain stratified split."""
    parts: list[list[tuple[int, int]]] = [[] for _ in fractions]  # (class, position): class by class
    for label, units in sorted(class_units(items, together).items()):
        count = sum(len(unit) for unit in units)
        sizes = [int(round(count * f)) for f in fractions[1:]]
        sizes = [max(1, s) if f > 0 and count >= len(fractions) else s for s, f in zip(sizes, fractions[1:])]
        while sum(sizes) >= count and any(sizes):
            sizes[sizes.index(max(sizes))] -= 1
        bounds = np.cumsum([count - sum(sizes)] + sizes)
        placed = 0
        for index in rng.permutation(len(units)):
            part = int(np.searchsorted(bounds, placed, side="right"))
            parts[part] += [(label, position) for position in units[index]]
            placed += len(units[index])
    return [[items[position] for _, position in sorted(part)] for part in parts]


def deal_folds(items: Items, k: int, rng: np.random.Generator, together: dict[str, int] | None = None) -> list[Items]:
    """Stratified folds: each class shuffled and dealt round-robin, so fold sizes per class differ by at most
    one; each class's deal starts where the last one stopped, so the folds' totals differ by at most one too.
    A group of copies (`together`) is dealt whole, larger groups first, each to the fold holding the fewest
    images of its class (the next in the round on a tie), as scikit-learn's StratifiedGroupKFold balances."""
    folds: list[list[int]] = [[] for _ in range(k)]
    cursor = 0
    for label, units in sorted(class_units(items, together).items()):
        held = [0] * k
        shuffled = [units[i] for i in rng.permutation(len(units))]
        for unit in sorted(shuffled, key=len, reverse=True):  # stable: singletons keep the shuffled order
            fold = min(((cursor + step) % k for step in range(k)), key=lambda f: held[f])
            folds[fold] += unit
            held[fold] += len(unit)
            cursor = (fold + 1) % k
    return [sorted(items[position] for position in fold) for fold in folds]
