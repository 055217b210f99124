"""Transfer-learning benchmark (not a test): is ImageNet pretraining worth it on a small dataset?

On hymenoptera (ants/bees, 245 train / 153 val images, val halved into val and test),
with the same epochs for all three:
  - efficientnet_lite0, ImageNet weights, last 10 layers trained (`freeze: last:10`)
  - efficientnet_lite0 from random init, all layers trained
  - cnn_regularized (our phase-3 CNN) from scratch, all layers trained
and prints the best validation accuracy and the test accuracy of each (the test split is carved
from val/, see the README). Expect pretrained >= 90 % and far above scratch.

    .venv/bin/python benchmarks/transfer.py [--epochs 5] [--image-size 160]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from cnnstudy.data.sources import resolve_dataset
from cnnstudy.training.runtime import cpu_flags
from cnnstudy.runner.study import run_study

STUDY = """
name: transfer-bench
defaults:
  data: {{dataset: {dataset}, image_size: {size}}}
  train: {{epochs: {epochs}, batch_size: 32, lr: 0.001}}
phases:
  - name: bench
    runs:
      - {{name: lite0_pretrained, model: {{name: efficientnet_lite0, pretrained: true, freeze: "last:10"}}}}
      - {{name: lite0_random_init, model: {{name: efficientnet_lite0}}}}
      - {{name: cnn_scratch, model: cnn_regularized, augment: seed}}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--dataset", default="hymenoptera")
    args = parser.parse_args()
    dataset = resolve_dataset(args.dataset)
    with tempfile.TemporaryDirectory() as tmp:
        study = Path(tmp) / "transfer.yaml"
        study.write_text(STUDY.format(dataset=dataset, size=args.image_size, epochs=args.epochs))
        study_dir = run_study(study, out_dir=Path(tmp) / "runs", log=lambda line: print(line, file=sys.stderr))
        rows = (study_dir / "summary.csv").read_text().splitlines()
    header = rows[0].split(",")
    print(f"\n{args.dataset}, {args.epochs} epochs, {args.image_size} px (CPU flags: {cpu_flags()})")
    print(f"{'run':20s} {'trainable':>10s} {'best val %':>10s} {'test %':>8s} {'s/epoch':>8s}")
    for line in rows[1:]:
        row = dict(zip(header, line.split(",")))
        print(f"{row['run']:20s} {int(row['trainable']):>10,d} {row['val_acc']:>10s} {row['test_acc']:>8s} "
              f"{row['sec_per_epoch']:>8s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
