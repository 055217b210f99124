"""What the data check found for one split: its groups of copies and where they lie, the label
conflicts, the files left out, and the test images that have a copy on the training side (leakage,
possible only in a split made before copies were kept together or in split folders given by the
user). Written as `<split>.check.json` beside the split, keyed by the split's digests, so the report
finds the check of every run from the run's own metrics.json.
"""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

from .copies import conflicts, copies_summary, copy_groups
from .errors import DataError
from .splits import PARTS, Split

LEFT_OUT = "left out"


def part_of(split: Split) -> dict[str, str]:
    """item -> the part it is in: train/val/test, or 'fold j' for a folded split; 'left out' for excluded."""
    parts = {f"fold {j + 1}": fold for j, fold in enumerate(split.folds)} or \
        {part: getattr(split, part) for part in PARTS}
    where = {item: part for part, items in parts.items() for item, _ in items}
    where.update({entry["file"]: LEFT_OUT for entry in split.excluded})
    return where


def leaked_test(split: Split, groups: list[dict]) -> list[str]:
    """Images that are scored while a copy of them trains or validates: a test image with a copy in
    train or val; for folds, every image with a copy in another fold (each fold trains on the others)."""
    where = part_of(split)
    leaked = []
    for group in groups:
        used = [item for item in group["files"] if where.get(item, LEFT_OUT) != LEFT_OUT]
        scored = [item for item in used if where[item] == "test" or where[item].startswith("fold")]
        leaked += [item for item in scored if any(where[other] != where[item] for other in used)]
    return sorted(leaked)


def split_check(split: Split, checks: list, label_of: dict[str, int], conflicts_setting: str = "leave_out") -> dict:
    """The check of `split` from the decoded images (`checks`: at least the split's images and those it
    left out; images outside the split, such as those limit_per_class did not draw, are not its concern)."""
    where = part_of(split)
    groups = copy_groups([check for check in checks if check.item in where], label_of, split.classes, where)
    for group in groups:
        group["part_of_file"] = [where.get(item, LEFT_OUT) for item in group["files"]]
    used = [len({p for p in g["parts"] if p != LEFT_OUT}) for g in groups]
    crossing = [g for g, n in zip(groups, used) if n > 1]
    digests = [split.digest] + ([split.fold(j).digest for j in range(len(split.folds))] + [split.folds_digest()]
                                if split.folds else [])
    return {"dataset": split.dataset, "digests": digests, "images": sum(p != LEFT_OUT for p in where.values()),
            "searched": any(c.phash for c in checks) or (bool(checks) and all(c.reason for c in checks)),
            "summary": copies_summary(groups), "copies": groups, "conflicts": conflicts(groups),
            "within_one_part": used.count(1), "across_parts": crossing,
            "leaked_test": leaked_test(split, groups), "excluded": split.excluded,
            "unreadable": len(split.skipped), "folded": bool(split.folds), "conflicts_setting": conflicts_setting}


def check_sentence(check: dict) -> str:
    """One sentence of what the check found, for the log and the report's first lines."""
    if not check["searched"]:
        return f"{check['images']} images; copies not searched (images in an array file)"
    conflicted = sum(len(g["files"]) for g in check["conflicts"])
    left = [e for e in check["excluded"] if e["reason"].startswith("label conflict")]
    chosen = len(check["excluded"]) - len(left)
    said = [f"{check['images']} images: {check['summary']}"]
    if check["within_one_part"]:
        said.append(f"{check['within_one_part']} kept together (in one part or fold)")
    if check["across_parts"]:
        said.append(f"{len(check['across_parts'])} split apart ({'across folds' if check['folded'] else 'across train/val/test'})")
    if left:
        said.append(f"{len(left)} photo(s) under two classes left out")
    if conflicted > len(left):
        why = "data.conflicts: keep" if check.get("conflicts_setting") == "keep" else \
            "a saved split, made before conflicts were left out"
        said.append(f"{conflicted - len(left)} photo(s) under two classes kept ({why})")
    if chosen:
        said.append(f"{chosen} file(s) left out by data.exclude")
    if check["leaked_test"]:
        said.append(f"{len(check['leaked_test'])} scored image(s) have a copy on the training side")
    return "; ".join(said)


def read_exclude(path: Path) -> dict[str, str]:
    """data.exclude: relative paths to leave out, one a line ('#' starts a comment), or a CSV with a
    'file' column (label_issues.csv as `inspect --labels` and folded runs write it)."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # spreadsheets save CSV with a byte-order mark
    except OSError as err:
        raise DataError(f"data.exclude: cannot read {path} ({err.strerror or err}); give a file of relative "
                        "image paths, one a line, or a CSV with a 'file' column") from None
    lines = text.splitlines()
    if lines and "file" in next(csv.reader([lines[0]])):
        files = [row["file"] for row in csv.DictReader(lines) if row.get("file")]
    else:
        files = [line.split("#", 1)[0].strip() for line in lines]
    reason = f"data.exclude ({path.name})"
    return {Path(file).as_posix(): reason for file in files if file}


def exclude_digest(excluded: dict[str, str]) -> str:
    return hashlib.sha256("\n".join(sorted(excluded)).encode()).hexdigest()[:16]
