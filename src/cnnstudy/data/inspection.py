"""`cnnstudy inspect`: what is in a dataset before anything trains on it.

Every image is decoded once (in threads): unreadable files with the reason, sizes, content hashes
for duplicates across splits, images below a model's minimum input. The same pass tells the
splitter which files to leave out.
"""
from __future__ import annotations

import hashlib
import io
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .sources import FolderSource, to_rgb


@dataclass
class ImageCheck:
    item: str
    reason: str | None  # None: the image decodes
    width: int = 0
    height: int = 0
    sha1: str = ""


def _check(source, item: str) -> ImageCheck:
    try:
        data = (source.root / item).read_bytes()  # read once: hashed and decoded from memory
        if not data:
            return ImageCheck(item, "zero bytes")
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            upright = to_rgb(image)
        return ImageCheck(item, None, upright.width, upright.height, hashlib.sha1(data).hexdigest())
    except Exception as err:  # noqa: BLE001 - any failure to decode makes the file unusable
        return ImageCheck(item, _reason(err))


def _reason(err: Exception) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    if "truncated" in text.lower():
        return f"truncated ({text})"
    if "cannot identify" in text.lower():
        return "not an image (PIL cannot identify it)"
    return f"{type(err).__name__}: {text}"


def check_images(source, items: list[str], workers: int = 4) -> list[ImageCheck]:
    """Decode every item once. Built-in array datasets (Fashion-MNIST) decode by construction: their
    check is the array's image size (no content hash: an IDX file is one file)."""
    if hasattr(source, "arrays"):
        height, width = next(iter(source.arrays.values()))[0].shape[1:3]
        return [ImageCheck(item, None, int(width), int(height)) for item in items]
    if not isinstance(source, FolderSource):
        return []
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda item: _check(source, item), items))


def duplicate_groups(checks: list[ImageCheck], split_of: dict[str, str]) -> list[dict]:
    """Identical files (same content hash) that sit in more than one split: leakage between them."""
    by_hash: dict[str, list[str]] = defaultdict(list)
    for check in checks:
        if check.reason is None and check.sha1:
            by_hash[check.sha1].append(check.item)
    groups = []
    for items in by_hash.values():
        splits = sorted({split_of.get(item, "?") for item in items})
        if len(items) > 1 and len(splits) > 1:
            groups.append({"files": items, "splits": splits})
    return groups


def below_minimums(good: list[ImageCheck], minimums: dict[str, int]) -> list[dict]:
    """Per smallest input size a model has (models sharing one together): how many images are smaller."""
    by_size: dict[int, list[str]] = defaultdict(list)
    for name, size in minimums.items():
        by_size[size].append(name)
    return [{"min_size": size, "models": names, "count": sum(min(c.width, c.height) < size for c in good)}
            for size, names in sorted(by_size.items())]


def inspect_dataset(source, min_size: int = 46, checks: list[ImageCheck] | None = None,
                    minimums: dict[str, int] | None = None) -> dict:
    """The full inspection report of a source, as plain data (the JSON form). `minimums`: each model's
    smallest input size, to say how many images each would upscale."""
    split_of = {item: split for split, items in source.items.items() for item, _ in items}
    checks = check_images(source, list(split_of)) if checks is None else checks
    bad = {c.item for c in checks if c.reason}
    counts = {split: [sum(1 for item, label in items if label == k and item not in bad)
                      for k in range(len(source.classes))] for split, items in source.items.items()}
    totals = np.sum(list(counts.values()), axis=0)
    good = [c for c in checks if c.reason is None]
    sizes = np.array([[c.width, c.height] for c in good]) if good else np.zeros((0, 2))
    return {
        "dataset": str(source.root),
        "layout": source.layout.as_dict(),
        "classes": source.classes,
        "counts": counts,
        "imbalance_ratio": float(totals.max() / max(totals.min(), 1)) if len(totals) else None,
        "unreadable": [{"file": c.item, "reason": c.reason} for c in checks if c.reason],
        "ignored": source.ignored,
        "ignored_folders": source.layout.passed_over,
        "stray_images": source.stray_images,
        "duplicates_across_splits": duplicate_groups(checks, split_of),
        "size": _size_stats(sizes),
        "smaller_than_min": [{"file": c.item, "size": [c.width, c.height]} for c in good
                             if min(c.width, c.height) < min_size],
        "min_size": min_size,
        "below_model_minimum": below_minimums(good, minimums or {}),
    }


def _size_stats(sizes: np.ndarray) -> dict | None:
    if not len(sizes):
        return None
    return {axis: {"min": int(col.min()), "median": float(np.median(col)), "max": int(col.max())}
            for axis, col in (("width", sizes[:, 0]), ("height", sizes[:, 1]))}


def format_report(report: dict) -> str:
    """A readable table of an inspection report."""
    splits = list(report["counts"])
    width = max(len(c) for c in report["classes"] + ["class"]) + 2
    lines = [f"dataset: {report['dataset']}", f"layout: {report['layout']['description']}", "",
             "class".ljust(width) + "".join(s.rjust(8) for s in splits) + "total".rjust(8)]
    for k, name in enumerate(report["classes"]):
        row = [report["counts"][s][k] for s in splits]
        lines.append(name.ljust(width) + "".join(str(n).rjust(8) for n in row) + str(sum(row)).rjust(8))
    lines.append(f"\nimbalance ratio (largest / smallest class): {report['imbalance_ratio']:.2f}")
    if report["size"]:
        w, h = report["size"]["width"], report["size"]["height"]
        lines.append(f"image size: width {w['min']}-{w['max']} (median {w['median']:.0f}), "
                     f"height {h['min']}-{h['max']} (median {h['median']:.0f})")
    sections = [("unreadable (left out)", [f"{u['file']}: {u['reason']}" for u in report["unreadable"]]),
                ("ignored (hidden or not an image)", report["ignored"]),
                ("folders passed over", [f"{f['folder']}/: {f['reason']}" for f in report["ignored_folders"]]),
                ("images outside a class folder (not used)", report["stray_images"]),
                ("same image in more than one split",
                 [f"{', '.join(d['files'])} ({'/'.join(d['splits'])})" for d in report["duplicates_across_splits"]]),
                (f"smaller than {report['min_size']} px (upscaled)",
                 [f"{s['file']}: {s['size'][0]}x{s['size'][1]}" for s in report["smaller_than_min"]])]
    for below in report.get("below_model_minimum", []):
        lines.append(f"\nsmaller than {below['min_size']} px, the minimum of {', '.join(below['models'])} "
                     f"(upscaled for them): {below['count']}")
    for title, entries in sections:
        lines.append(f"\n{title}: {len(entries)}")
        lines += [f"  {entry}" for entry in entries[:30]]
        if len(entries) > 30:
            lines.append(f"  ... and {len(entries) - 30} more (see the JSON)")
    return "\n".join(lines)
