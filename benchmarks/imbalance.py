"""Imbalanced training data (issue 23's must-show): does `class_weights: balanced` or `sampler:
balanced` raise the minority class's recall?

Builds, from animals3 (500 cats, dogs, pandas), a folder whose train/ part keeps one class at a tenth
(35 cats against 350 dogs and 350 pandas) and whose test/ part is balanced (150 each), links only,
then trains the same CNN three ways on it (nothing, balanced class weights, a balanced sampler) and
prints each run's recall per class on the test images and, against the plain run, McNemar's exact
test on the minority class's test images (paired by image: which of them each run gets right).

    CNNSTUDY_DATA=../shared/data .venv/bin/python benchmarks/imbalance.py [--epochs 15] [--out /tmp/imbalance]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from cnnstudy.data.sources import resolve_dataset
from cnnstudy.runner.study import run_study

STUDY = """name: imbalance
datasets:
  main: {folder}
defaults:
  data: {{dataset: main, image_size: 64}}
  model: cnn_regularized
  augment: seed
  train: {{epochs: {epochs}, batch_size: 32, lr: 0.001}}
phases:
  - name: imbalance
    compare: none
    runs:
      - {{name: plain}}
      - {{name: class_weights, train: {{class_weights: balanced}}}}
      - {{name: sampler, train: {{sampler: balanced}}}}
"""


def build_folder(root: Path, minority: str = "cats", kept: int = 35, train: int = 350, test: int = 150) -> Path:
    source = resolve_dataset("animals3")
    for name in ("cats", "dogs", "panda"):
        files = sorted((source / name).iterdir())
        for part, chosen in (("train", files[:kept if name == minority else train]), ("test", files[-test:])):
            (root / part / name).mkdir(parents=True, exist_ok=True)
            for path in chosen:
                link = root / part / name / path.name
                if not link.exists():
                    link.symlink_to(path)
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="imbalance-"))
    folder = build_folder(out / "animals3-imbalanced")
    study = out / "imbalance.yaml"
    study.write_text(STUDY.format(folder=folder, epochs=args.epochs))
    study_dir = run_study(study, out_dir=out / "runs", log=lambda _: None)
    outputs = {run: dict(np.load(study_dir / "imbalance" / run / "predictions.npz"))
               for run in ("plain", "class_weights", "sampler")}
    print(f"{folder}: train 35 cats, 350 dogs, 350 pandas; test 150 each; {args.epochs} epochs, 64 px; "
          f"study folder {study_dir}")
    return report(outputs)


def report(outputs: dict) -> int:
    names = ["cats", "dogs", "panda"]
    right = {}
    for run, out in outputs.items():
        probs, truth = out["test_probs"], out["test_targets"]
        right[run] = probs.argmax(1) == truth
        recalls = [right[run][truth == k].mean() for k in range(3)]
        print(f"{run:14s} test accuracy {right[run].mean():.3f}; recall " +
              ", ".join(f"{name} {value:.3f}" for name, value in zip(names, recalls)))
    truth = outputs["plain"]["test_targets"]
    minority = truth == 0
    for run in ("class_weights", "sampler"):
        gained = int((right[run] & ~right["plain"] & minority).sum())
        lost = int((~right[run] & right["plain"] & minority).sum())
        p = binomtest(gained, gained + lost).pvalue if gained + lost else 1.0
        print(f"{run} vs plain on the {minority.sum()} minority test images: {gained} now right, {lost} now wrong, "
              f"McNemar exact p = {p:.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
