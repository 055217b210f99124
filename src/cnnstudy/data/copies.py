"""Copies of one photo: exact (the same bytes) and near (re-encoded, resized or slightly cropped).

Each decoded image gets a 128-bit perceptual hash: imagededup's PHash (the signs of the 8x8
lowest-frequency DCT coefficients of a 32x32 greyscale thumbnail, against their median) followed by
a difference hash (the signs of horizontal steps in a 9x8 thumbnail). Two images are near copies
when the two hashes together differ in at most NEAR_BITS bits; copies are grouped transitively.
docs/data-check.md gives the measurements behind the threshold.

The search is faiss' exact binary range search (popcount in C++, no pairs in Python): 10^5 images
in seconds on 2 cores. A group holding more than one class is a label conflict.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
from PIL import Image

HASH_BYTES = 16
NEAR_BITS = 24  # of 128: every planted copy within it, no false pair on two development sets (docs)


def image_hash(image: Image.Image) -> str:
    """The image's 128-bit perceptual hash (pHash + dHash) as 32 hex digits."""
    from scipy.fft import dctn

    grey = image.convert("L")
    small = np.asarray(grey.resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    low = dctn(small, norm="ortho")[:8, :8]
    steps = np.asarray(grey.resize((9, 8), Image.Resampling.LANCZOS), dtype=np.float64)
    bits = np.concatenate([(low > np.median(low)).ravel(), (steps[:, 1:] > steps[:, :-1]).ravel()])
    return np.packbits(bits).tobytes().hex()


def near_pairs(hashes: list[str], max_bits: int = NEAR_BITS) -> np.ndarray:
    """Every pair (i, j), i < j, whose hashes differ in at most `max_bits` bits, as an (m, 2) array."""
    if len(hashes) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    import faiss

    codes = np.frombuffer(bytes.fromhex("".join(hashes)), dtype=np.uint8).reshape(-1, HASH_BYTES)
    index = faiss.IndexBinaryFlat(HASH_BYTES * 8)
    index.add(codes)
    limits, _, found = index.range_search(codes, max_bits + 1)  # faiss keeps distances below the radius
    queries = np.repeat(np.arange(len(hashes)), np.diff(limits).astype(np.int64))
    pairs = np.stack([queries, found.astype(np.int64)], axis=1)
    return pairs[pairs[:, 0] < pairs[:, 1]]


def group_indices(count: int, pairs: np.ndarray) -> list[list[int]]:
    """Connected components of `pairs` over `count` nodes: only those with two members or more."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(count, count))
    _, component = connected_components(graph, directed=False)
    members: dict[int, list[int]] = defaultdict(list)
    for index, label in enumerate(component):
        members[label].append(index)
    return [found for found in members.values() if len(found) > 1]


def copy_groups(checks: list, label_of: dict[str, int], classes: list[str],
                part_of: dict[str, str] | None = None) -> list[dict]:
    """Groups of copies among the decoded `checks` (inspection.ImageCheck): each with its files
    (relative paths), the classes it spans, exact or near, and, given `part_of`, the parts it lies in."""
    hashed = [check for check in checks if check.reason is None and check.phash]
    groups = []
    for indices in group_indices(len(hashed), near_pairs([check.phash for check in hashed])):
        files = sorted(hashed[i].item for i in indices)
        group = {"files": files, "classes": sorted({classes[label_of[f]] for f in files}, key=classes.index),
                 "kind": "exact" if len({hashed[i].sha1 for i in indices}) == 1 else "near"}
        if part_of is not None:
            group["parts"] = sorted({part_of[f] for f in files if f in part_of})
        groups.append(group)
    return sorted(groups, key=lambda group: group["files"][0])


def conflicts(groups: list[dict]) -> list[dict]:
    """The groups filed under more than one class: the same photo with two labels."""
    return [group for group in groups if len(group["classes"]) > 1]


def copies_summary(groups: list[dict]) -> str:
    """'12 groups of copies (27 images: 5 exact, 7 near), 2 of them under two classes', or 'no copies found'."""
    if not groups:
        return "no copies found"
    images = sum(len(group["files"]) for group in groups)
    exact = sum(group["kind"] == "exact" for group in groups)
    clashing = len(conflicts(groups))
    return (f"{len(groups)} group(s) of copies ({images} images: {exact} exact, {len(groups) - exact} near)"
            + (f", {clashing} of them under two classes or more" if clashing else ""))
