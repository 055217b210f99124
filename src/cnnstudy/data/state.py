"""What the images on disk are, now: every file of a split by size and modification time (what the
decode-once cache is keyed by too), and the digest of that table. A run records the digest in its
fingerprint, so a finished run is reused only while the images it was trained and scored on are the
ones on disk; the table itself is kept in the study's splits/ folder under its digest, so that a
change can be counted file by file.

Size and time are only the fast test. Beside each table the store keeps the SHA-1 of every file
(`content-<digest>.json`, from the inspection's own reads where it has them), so that a dataset that
was copied or cloned (new modification times, the same bytes) is recognised as the same data: only
the files whose size or time changed are read again."""
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


def content_path(store: Path, digest: str) -> Path:
    return store / f"content-{digest[:20]}.json"


def _known_hashes(store: Path) -> dict[tuple[str, int, int], str]:
    """(item, size, mtime) -> SHA-1 from every table the store has hashed before."""
    known = {}
    for path in store.glob("content-*.json"):
        table_file = store / path.name.replace("content-", "files-")
        if table_file.exists():
            table, hashes = read_json(table_file), read_json(path)
            known.update({(item, *table[item]): sha for item, sha in hashes.items() if item in table})
    return known


def record_content(store: Path, digest: str, table: Table, source, given: dict[str, str] | None = None) -> None:
    """Keep the SHA-1 of every file of the table `digest` (once): from `given` (the inspection's hashes),
    from an earlier table where a file's size and time are unchanged, else read from disk."""
    path = content_path(store, digest)
    if path.exists():
        return
    known, given, hashes, read = _known_hashes(store), given or {}, {}, {}
    for item, (size, mtime) in table.items():
        file = source.file_of(item)
        if item in given:
            hashes[item] = given[item]
        elif (item, size, mtime) in known:
            hashes[item] = known[(item, size, mtime)]
        else:  # several items can be one file (an IDX array): read it once
            hashes[item] = read.get(file) or read.setdefault(file, file_sha1(file))
    write_json(path, hashes)


def file_sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def same_content(store: Path, old_digest: str, new_digest: str) -> bool:
    """The two tables list the same files with the same bytes (only modification times differ)."""
    old, new = content_path(store, old_digest), content_path(store, new_digest)
    return old.exists() and new.exists() and read_json(old) == read_json(new)


def describe_change(store: Path, dataset: str, old_digest: str | None, table: Table) -> str | None:
    """One line saying how the images differ from those a run recorded (`old_digest`); None when
    they are the same bytes under new modification times (a copy or a clone of the dataset)."""
    if old_digest is not None and same_content(store, old_digest, table_digest(table)):
        return None
    if old_digest is None:
        return (f"data: the run recorded no digest of its images (made by cnnstudy < 0.3), so whether {dataset} "
                "changed since cannot be told")
    old_content, new_content = content_path(store, old_digest), content_path(store, table_digest(table))
    if old_content.exists() and new_content.exists():  # compare bytes: a copy's new times are no change
        before, now, how = read_json(old_content), read_json(new_content), "their bytes"
    elif table_path(store, old_digest).exists():
        before, now, how = read_json(table_path(store, old_digest)), table, "size or modification time"
    else:
        return f"data: the images of {dataset} changed since this run used them (size or modification time)"
    changed = [item for item, value in now.items() if item in before and before[item] != value]
    added = [item for item in now if item not in before]
    missing = [item for item in before if item not in now]
    example = (changed or added or missing or ["?"])[0]
    return (f"data: {len(changed)} of the {len(table)} images of {dataset} changed since this run used them ({how}), "
            f"{len(added)} added, {len(missing)} missing (e.g. {example})")
