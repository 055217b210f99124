"""The detectable difference checked by simulation (not a test; tests/test_power.py holds a smaller one).

For the "no clear difference" comparisons of a finished study (default: the first three), takes the
smallest difference the report says its test could detect (report/power.py), simulates studies in
which the true difference is exactly that (the same test images, the same share of disagreements or
the same spread over repeats), and counts how often the report's own test, at the family's level,
says "better". About 80 % is right.

    .venv/bin/python benchmarks/detectable.py runs/seed_shaped [--studies 4000] [--count 3]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from cnnstudy.report.compare import comparisons, phase_compare
from cnnstudy.report.groups import group_records
from cnnstudy.report.power import detectable
from cnnstudy.report.settle import unsettled
from cnnstudy.report.stats import mcnemar_exact, paired_t, welch, words
from cnnstudy.runner.results.records import collect_records, study_phases


def says_better(diff: float, p: float, family: int) -> bool:
    return words(diff, min(1.0, p * family)) == "better"


def simulate(c: dict, shift: float, studies: int, rng: np.random.Generator) -> float:
    family, test = round(0.05 / (1 - c["level"])), c["test"]
    hits = 0
    if "mcnemar" in test:
        b, c_, n = test["mcnemar"]
        psi = (b + c_) / n
        pi = (shift / psi + 1) / 2
        for _ in range(studies):
            split, won = rng.random(n) < psi, rng.random(n) < pi
            right_a, right_b = ~(split & ~won), ~(split & won)
            hits += says_better(right_a.mean() - right_b.mean(), mcnemar_exact(right_a, right_b)["p"], family)
        return hits / studies
    a, b = test.get("welch") or test["paired_t"]
    for _ in range(studies):
        if "welch" in test:
            result = welch(list(rng.normal(shift, np.std(a, ddof=1), len(a))), list(rng.normal(0, np.std(b, ddof=1), len(b))))
        else:
            base = rng.normal(0.6, 0.05, len(a))
            result = paired_t(list(base + rng.normal(shift, np.std(np.subtract(a, b), ddof=1), len(a))), list(base))
        hits += says_better(result["diff"], result["p"], family)
    return hits / studies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study_dir", type=Path)
    parser.add_argument("--studies", type=int, default=4000)
    parser.add_argument("--count", type=int, default=3)
    args = parser.parse_args()
    groups = group_records(collect_records(args.study_dir))
    found = comparisons(groups, phase_compare(study_phases(args.study_dir)))
    rng = np.random.default_rng(0)
    print("| comparison | test | detectable (points) | simulated studies | said \"better\" | seconds |")
    print("|---|---|---|---|---|---|")
    for c in unsettled(found)[:args.count]:
        shift = detectable(c["test"], c["level"])
        if shift is None:
            continue
        started = time.perf_counter()
        share = simulate(c, shift, args.studies, rng)
        method = c["method"].split(" (")[0]
        print(f"| {c['a']} vs {c['b']} | {method}, {c['test_images']} images | {shift * 100:.1f} | "
              f"{args.studies} | {share * 100:.1f}% | {time.perf_counter() - started:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
