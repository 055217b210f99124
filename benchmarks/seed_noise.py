"""Seed-to-seed noise (not a test): how much does test accuracy move when only the seed changes?

Runs a study (default: studies/quick.yaml) with `repeats: 5` for every run, in a temporary folder,
and prints per run the mean, standard deviation and range of test accuracy over the repeats. A
difference between two runs smaller than about two of these standard deviations is not evidence
of anything; the report's significance tests say the same per pair.

    .venv/bin/python benchmarks/seed_noise.py [--study studies/quick.yaml] [--repeats 5]
"""
from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time

import torch

from cnnstudy.training.runtime import cpu_flags, tune_runtime
from cnnstudy.runner.study import run_study


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default="studies/quick.yaml")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--set", action="append", default=[], help="extra overrides, as for cnnstudy run")
    args = parser.parse_args()
    tune_runtime()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        study_dir = run_study(args.study, [f"repeats={args.repeats}", *args.set], out_dir=tmp,
                              log=lambda line: print(line, file=sys.stderr))
        with open(study_dir / "summary_grouped.csv") as handle:
            grouped = list(csv.DictReader(handle))
        with open(study_dir / "summary.csv") as handle:
            rows = list(csv.DictReader(handle))
    print(f"\n{args.study}, {args.repeats} repeats per run, torch {torch.__version__}, CPU flags: {cpu_flags()}, "
          f"{time.perf_counter() - started:.0f} s in all")
    print(f"{'run':26s} {'test acc mean':>13s} {'std':>6s} {'min':>6s} {'max':>6s}   (%)")
    for group in grouped:
        name = f"{group['phase']}/{group['run']}"
        values = [float(r["test_acc"]) for r in rows if f"{r['phase']}/{r['run']}" == name and r["test_acc"]]
        print(f"{name:26s} {100 * float(group['test_acc_mean']):>13.2f} {100 * float(group['test_acc_std']):>6.2f} "
              f"{min(values):>6.2f} {max(values):>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
