"""`cnnstudy inspect`: what is in a dataset before anything trains on it.

Every image is decoded once (in threads): unreadable files with the reason, sizes, a content hash
and a perceptual hash (for exact and near copies, copies.py), images below a model's minimum input.
The same pass tells the splitter which files to leave out and which to keep together.
"""
from __future__ import annotations

import hashlib
import io
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from .copies import copies_summary, copy_groups, image_hash
from .sources import FolderSource, to_rgb


@dataclass
class ImageCheck:
    item: str
    reason: str | None  # None: the image decodes
    width: int = 0
    height: int = 0
    sha1: str = ""
    phash: str = ""  # copies.image_hash of the decoded image


def _check(source, item: str, copies: bool = True) -> ImageCheck:
    try:
        data = (source.root / item).read_bytes()  # read once: hashed and decoded from memory
        if not data:
            return ImageCheck(item, "zero bytes")
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            upright = to_rgb(image)
        return ImageCheck(item, None, upright.width, upright.height, hashlib.sha1(data).hexdigest(),
                          image_hash(upright) if copies else "")
    except Exception as err:  # noqa: BLE001 - any failure to decode makes the file unusable
        return ImageCheck(item, _reason(err))


def _reason(err: Exception) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    if "truncated" in text.lower():
        return f"truncated ({text})"
    if "cannot identify" in text.lower():
        return "not an image (PIL cannot identify it)"
    return f"{type(err).__name__}: {text}"


def check_images(source, items: list[str], workers: int = 4, progress: str | None = None,
                 copies: bool = True) -> list[ImageCheck]:
    """Decode every item once. Built-in array datasets (Fashion-MNIST) decode by construction: their
    check is the array's image size (no content hash: an IDX file is one file). `progress`: a bar's
    label, where one is wanted (on stderr, gone when done); `copies` False: no perceptual hash (half
    the time), for a look that finds no copies."""
    if hasattr(source, "arrays"):
        height, width = next(iter(source.arrays.values()))[0].shape[1:3]
        return [ImageCheck(item, None, int(width), int(height)) for item in items]
    if not isinstance(getattr(source, "base", source), FolderSource):  # a class subset reads its folder's files
        return []
    with ThreadPoolExecutor(workers) as pool:
        checks = pool.map(lambda item: _check(source, item, copies), items)
        return list(tqdm(checks, total=len(items), desc=progress, unit="image", leave=False,
                         disable=progress is None, mininterval=1.0))


def below_minimums(good: list[ImageCheck], minimums: dict[str, int]) -> list[dict]:
    """Per smallest input size a model has (models sharing one together): how many images are smaller."""
    by_size: dict[int, list[str]] = defaultdict(list)
    for name, size in minimums.items():
        by_size[size].append(name)
    return [{"min_size": size, "models": names, "count": sum(min(c.width, c.height) < size for c in good)}
            for size, names in sorted(by_size.items())]


def inspect_dataset(source, min_size: int = 46, checks: list[ImageCheck] | None = None,
                    minimums: dict[str, int] | None = None, progress: str | None = None, copies: bool = True) -> dict:
    """The full inspection report of a source, as plain data (the JSON form). `minimums`: each model's
    smallest input size, to say how many images each would upscale; `progress` and `copies`: as for
    check_images (without copies, "copies" is None: not searched)."""
    split_of = {item: split for split, items in source.items.items() for item, _ in items}
    checks = check_images(source, list(split_of), progress=progress, copies=copies) if checks is None else checks
    bad = {c.item for c in checks if c.reason}
    counts = {split: [sum(1 for item, label in items if label == k and item not in bad)
                      for k in range(len(source.classes))] for split, items in source.items.items()}
    totals = np.sum(list(counts.values()), axis=0)
    good = [c for c in checks if c.reason is None]
    label_of = {item: label for items in source.items.values() for item, label in items}
    searched = copies and not hasattr(source, "arrays")
    groups = copy_groups(checks, label_of, source.classes, split_of) if searched else None
    sizes = np.array([[c.width, c.height] for c in good]) if good else np.zeros((0, 2))
    return {
        "dataset": str(source.root),
        "layout": source.layout.as_dict(),
        "classes": source.classes,
        "counts": counts,
        "empty_classes": [name for name, total in zip(source.classes, totals) if total == 0],
        # no ratio against an empty class: it would be infinite, and `run` refuses such a folder
        "imbalance_ratio": float(totals.max() / totals.min()) if len(totals) and totals.min() > 0 else None,
        "unreadable": [{"file": c.item, "reason": c.reason} for c in checks if c.reason],
        "ignored": source.ignored,
        "ignored_folders": source.layout.passed_over,
        "stray_images": source.stray_images,
        "copies": groups,  # None: not searched (an IDX array dataset, or asked not to)
        "copies_summary": copies_summary(groups) if groups is not None else
        "not searched (images in an array file)" if copies else "not searched",
        "duplicates_across_splits": [{"files": g["files"], "splits": g["parts"]} for g in groups or []
                                     if len(g["parts"]) > 1],
        "size": _size_stats(sizes),
        "smaller_than_min": [{"file": c.item, "size": [c.width, c.height]} for c in good
                             if min(c.width, c.height) < min_size],
        "min_size": min_size,
        "below_model_minimum": below_minimums(good, minimums or {}),
    }


def _copy_lines(groups: list[dict]) -> list[str]:
    """One line a group: its files, the classes (a label conflict flagged) and the source splits it spans."""
    lines = []
    for group in groups:
        flag = "LABEL CONFLICT: " if len(group["classes"]) > 1 else ""
        where = f"; in {' and '.join(group['parts'])}" if len(group.get("parts", [])) > 1 else ""
        lines.append(f"{flag}{', '.join(group['files'])} ({group['kind']}; {' / '.join(group['classes'])}{where})")
    return lines


def _label_section(check: dict) -> tuple[str, list[str]]:
    accuracy = "" if check["probe_accuracy"] is None else f", probe accuracy {check['probe_accuracy'] * 100:.1f}%"
    title = (f"likely mislabels, most likely first ({check['method']}; {check['folds']}-fold{accuracy}; "
             f"score = probability of the given label)")
    rows = [f"{row['file']}: labelled {row['given_label']}, looks like {row['suggested_label']} "
            f"(score {row['score']:.3f})" for row in check["label_issues"]]
    if check["not_checked"]:
        rows.append(f"not checked (the only image of its class): {', '.join(check['not_checked'])}")
    return title, rows


def _size_stats(sizes: np.ndarray) -> dict | None:
    if not len(sizes):
        return None
    return {axis: {"min": int(col.min()), "median": float(np.median(col)), "max": int(col.max())}
            for axis, col in (("width", sizes[:, 0]), ("height", sizes[:, 1]))}


def _minimum_lines(report: dict, sections: list) -> list[str]:
    """A line per model minimum; the images below --min-size listed under the line of the same size,
    or as a section of their own (appended to `sections`) where no model has that minimum."""
    small = [f"{s['file']}: {s['size'][0]}x{s['size'][1]}" for s in report["smaller_than_min"]]
    minimums, lines = report.get("below_model_minimum", []), []
    for below in minimums:
        lines.append(f"\nsmaller than {below['min_size']} px, the minimum of {', '.join(below['models'])} "
                     f"(upscaled for them): {below['count']}")
        if below["min_size"] == report["min_size"]:
            lines += [f"  {entry}" for entry in small[:30]]
            lines += [f"  ... and {len(small) - 30} more (see the JSON)"] if len(small) > 30 else []
    if report["min_size"] not in [below["min_size"] for below in minimums]:
        sections.append((f"smaller than {report['min_size']} px (upscaled)", small))
    return lines


def format_report(report: dict) -> str:
    """A readable table of an inspection report."""
    splits = list(report["counts"])
    width = max(len(c) for c in report["classes"] + ["class"]) + 2
    lines = [f"dataset: {report['dataset']}", f"layout: {report['layout']['description']}", "",
             "class".ljust(width) + "".join(s.rjust(8) for s in splits) + "total".rjust(8)]
    for k, name in enumerate(report["classes"]):
        row = [report["counts"][s][k] for s in splits]
        lines.append(name.ljust(width) + "".join(str(n).rjust(8) for n in row) + str(sum(row)).rjust(8))
    lines.append(f"\ncopies: {report['copies_summary']}")
    if report["imbalance_ratio"] is not None:
        lines.append(f"imbalance ratio (largest / smallest class): {report['imbalance_ratio']:.2f}")
    elif report.get("empty_classes"):
        lines.append(f"imbalance ratio: none, class folder(s) {', '.join(report['empty_classes'])} hold no "
                     "readable image")
    if report["size"]:
        w, h = report["size"]["width"], report["size"]["height"]
        lines.append(f"image size: width {w['min']}-{w['max']} (median {w['median']:.0f}), "
                     f"height {h['min']}-{h['max']} (median {h['median']:.0f})")
    sections = [("unreadable (left out)", [f"{u['file']}: {u['reason']}" for u in report["unreadable"]]),
                ("ignored (hidden or not an image)", report["ignored"]),
                ("folders passed over", [f"{f['folder']}/: {f['reason']}" for f in report["ignored_folders"]]),
                ("images outside a class folder (not used)", report["stray_images"]),
                ("groups of copies (a study keeps each in one part and leaves label conflicts out)",
                 _copy_lines(report["copies"] or []))]
    lines += _minimum_lines(report, sections)
    if "label_check" in report:
        sections.append(_label_section(report["label_check"]))
    for title, entries in sections:
        lines.append(f"\n{title}: {len(entries)}")
        lines += [f"  {entry}" for entry in entries[:30]]
        if len(entries) > 30:
            lines.append(f"  ... and {len(entries) - 30} more (see the JSON)")
    return "\n".join(lines)
