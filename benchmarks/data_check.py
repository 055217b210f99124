"""The data check on planted faults (issue 32's must-show).

1. Planted faults on a development dataset (links to its files, nothing copied but the new copies):
   re-saved copies of 5 % of its images, a quarter each at 75 % size, at JPEG quality 60, with 3 % of
   each border cropped, and all three at once; then 3 % of the other images moved to another class.
   Prints the share of planted copies grouped with their original (per kind), every group that holds
   no planted pair (named: a copy the dataset had, or a false group), and the rank of every planted
   mislabel in `inspect --labels`' list, with how many are in its top 2N.
2. The copy search alone at 10^3, 10^4 and 10^5 synthetic hashes (1 % of them near copies of another):
   seconds and peak memory, each size in a fresh process.

    CNNSTUDY_DATA=../shared/data .venv/bin/python benchmarks/data_check.py [--dataset food10] [--skip-labels]
"""
from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cnnstudy.data.copies import NEAR_BITS
from cnnstudy.data.inspection import inspect_dataset
from cnnstudy.data.sources import resolve_dataset, scan_folder
from cnnstudy.training.runtime import cpu_flags

KINDS = ("resize75", "jpeg60", "crop3", "all three")


def resave(image: Image.Image, kind: str) -> bytes:
    if kind in ("resize75", "all three"):
        image = image.resize((int(image.width * 0.75), int(image.height * 0.75)), Image.Resampling.BILINEAR)
    if kind in ("crop3", "all three"):
        dx, dy = int(image.width * 0.03), int(image.height * 0.03)
        image = image.crop((dx, dy, image.width - dx, image.height - dy))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=60 if kind in ("jpeg60", "all three") else 95)
    return buffer.getvalue()


def plant(source_root: Path, out: Path, copy_share: float, move_share: float, seed: int) -> tuple[dict, dict]:
    """Link every image into `out`, add the copies and move some labels: {copy: (original, kind)},
    {moved file: its true class}."""
    source = scan_folder(source_root)
    items = [item for items in source.items.values() for item, _ in items]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(items))
    n_copies, n_moved = int(len(items) * copy_share), int(len(items) * move_share)
    copied, moved = [items[i] for i in order[:n_copies]], [items[i] for i in order[n_copies:n_copies + n_moved]]
    copies, truths = {}, {}
    for item in items:
        cls, name = item.split("/")[-2], item.split("/")[-1]
        target = cls
        if item in moved:
            target = source.classes[(source.classes.index(cls) + 1 + rng.integers(len(source.classes) - 1))
                                    % len(source.classes)]
            truths[f"{target}/{name}"] = cls
        (out / target).mkdir(parents=True, exist_ok=True)
        (out / target / name).symlink_to(source_root / item)
    for n, item in enumerate(copied):
        kind, cls, stem = KINDS[n % len(KINDS)], item.split("/")[-2], Path(item).stem
        with Image.open(source_root / item) as image:
            (out / cls / f"{stem}_copy.jpg").write_bytes(resave(image.convert("RGB"), kind))
        copies[f"{cls}/{stem}_copy.jpg"] = (f"{cls}/{Path(item).name}", kind)
    return copies, truths


def copy_results(report: dict, copies: dict) -> None:
    group_of = {file: n for n, group in enumerate(report["copies"]) for file in group["files"]}
    for kind in KINDS:
        planted = [(c, o) for c, (o, k) in copies.items() if k == kind]
        found = sum(c in group_of and group_of.get(o) == group_of[c] for c, o in planted)
        print(f"  {kind:10s} {found}/{len(planted)} grouped with their original ({100 * found / max(1, len(planted)):.1f} %)")
    planted_files = set(copies) | {o for o, _ in copies.values()}
    other = [g for g in report["copies"] if not set(g["files"]) & planted_files]
    print(f"  groups: {len(report['copies'])}, of which {len(other)} hold no planted pair (listed, to look at):")
    for group in other:
        print(f"    {', '.join(group['files'])} ({' / '.join(group['classes'])}, {group['kind']})")
    big = [g for g in report["copies"] if set(g["files"]) & planted_files and len(g["files"]) > 2]
    print(f"  planted groups holding more than the pair: {len(big)}" + "".join(
        f"\n    {', '.join(g['files'])}" for g in big))


def label_results(root: Path, report: dict, truths: dict) -> None:
    from cnnstudy.use.labels import likely_mislabels

    start = time.perf_counter()
    check = likely_mislabels(scan_folder(root), report, progress=False)
    seconds = time.perf_counter() - start
    ranked = [row["file"] for row in check["label_issues"]]
    ranks = sorted(ranked.index(f) + 1 if f in ranked else None for f in truths if f in ranked)
    missing = [f for f in truths if f not in ranked]
    n = len(truths)
    print(f"  {check['images']} images, {check['folds']}-fold probe, probe accuracy {check['probe_accuracy'] * 100:.1f} %, "
          f"{seconds:.0f} s; {len(ranked)} listed")
    print(f"  planted mislabels: {n}; listed {n - len(missing)}; in the top {2 * n}: "
          f"{sum(r <= 2 * n for r in ranks)}; ranks: {ranks}")
    print(f"  not listed: {missing}")
    suggested = {row['file']: row['suggested_label'] for row in check['label_issues']}
    right = sum(suggested.get(f) == truth for f, truth in truths.items())
    print(f"  suggested label = the true class for {right} of {n}")


SCALE_CODE = """
import sys, time, numpy as np
from cnnstudy.data.copies import group_indices, near_pairs
n = int(sys.argv[1]); rng = np.random.default_rng(0)
codes = rng.integers(0, 256, (n, 16), dtype=np.uint8)
near = rng.choice(n, n // 100, replace=False)
for i in near:  # a near copy of another image: 12 random bits flipped
    j = (i + 1) % n; codes[i] = codes[j]
    for bit in rng.choice(128, 12, replace=False): codes[i, bit // 8] ^= 1 << (bit % 8)
hashes = [bytes(row).hex() for row in codes]
import faiss, scipy.sparse.csgraph  # loaded before the measurement: their code is no part of the search's memory
def status(key):  # kB, from the kernel (faiss allocates outside Python's reach)
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key))
open("/proc/self/clear_refs", "w").write("5")  # the peak starts again from here
before = status("VmRSS:")
start = time.perf_counter(); groups = group_indices(n, near_pairs(hashes)); seconds = time.perf_counter() - start
print(f"{n},{seconds:.2f},{(status('VmHWM:') - before) / 1024:.1f},{before / 1024:.0f},{len(groups)}")
"""


def scale_table() -> None:
    print("\n| images | seconds | peak memory added by the search, MB | process before it, MB | groups (1 % planted) |\n|---|---|---|---|---|")
    for n in (1_000, 10_000, 100_000):
        line = subprocess.run([sys.executable, "-c", SCALE_CODE, str(n)], capture_output=True, text=True, check=True)
        print("| " + " | ".join(line.stdout.strip().split(",")) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="food10")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-labels", action="store_true")
    args = parser.parse_args()
    print(f"CPU flags: {cpu_flags()}; near copies: at most {NEAR_BITS} of 128 hash bits apart")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / args.dataset
        copies, truths = plant(resolve_dataset(args.dataset), root, 0.05, 0.03, args.seed)
        start = time.perf_counter()
        report = inspect_dataset(scan_folder(root))
        total = sum(sum(counts) for counts in report["counts"].values())
        print(f"\n{args.dataset} with faults: {total} images, {len(copies)} planted copies, {len(truths)} moved labels; "
              f"inspection (decode, hashes, copy search) {time.perf_counter() - start:.1f} s")
        copy_results(report, copies)
        if not args.skip_labels:
            label_results(root, report, truths)
    scale_table()


if __name__ == "__main__":
    main()
