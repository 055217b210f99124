"""What the images on disk are, now: every file of a split by size and modification time (what the
decode-once cache is keyed by too), and the digest of that table. A run records the digest in its
fingerprint, so a finished run is reused only while the images it was trained and scored on are the
ones on disk; the table itself is kept in the study's splits/ folder under its digest, so that a
change can be counted file by file."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..fileio import read_json, write_json
from .splits import PARTS, Split

Table = dict[str, list[int]]


def files_table(source, items: list[str]) -> Table:
    return {item: list(source.fingerprint(item)) for item in sorted(items)}


def table_digest(table: Table) -> str:
    return hashlib.sha256(json.dumps(table, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def split_items(split: Split) -> list[str]:
    return [item for part in PARTS for item, _ in getattr(split, part)]


def table_path(store: Path, digest: str) -> Path:
    return store / f"files-{digest[:20]}.json"


def record_table(store: Path, table: Table) -> str:
    """Keep the table under its digest (once); returns the digest."""
    digest = table_digest(table)
    path = table_path(store, digest)
    if not path.exists():
        write_json(path, table)
    return digest


def describe_change(store: Path, dataset: str, old_digest: str | None, table: Table) -> str:
    """One line saying how the images differ from those a run recorded (`old_digest`)."""
    if old_digest is None:
        return (f"data: the run recorded no digest of its images (made by cnnstudy < 0.3), so whether {dataset} "
                "changed since cannot be told")
    path = table_path(store, old_digest)
    if not path.exists():
        return f"data: the images of {dataset} changed since this run used them (size or modification time)"
    before = read_json(path)
    changed = [item for item, stat in table.items() if item in before and before[item] != stat]
    added = [item for item in table if item not in before]
    missing = [item for item in before if item not in table]
    example = (changed or added or missing or ["?"])[0]
    return (f"data: {len(changed)} of the {len(table)} images of {dataset} changed since this run used them (size "
            f"or modification time), {len(added)} added, {len(missing)} missing (e.g. {example})")
