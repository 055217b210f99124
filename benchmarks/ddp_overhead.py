"""What data parallelism costs on one machine (not a test): the same run with 1 process and under
torchrun with N processes, same global batch, same data; seconds per epoch compared.

On a 2-core CPU, N processes share the same cores (one thread each instead of N threads for one
process), so DDP cannot be faster there; the ratio shows the cost of the machinery itself (gradient
all-reduce over gloo, gathered evaluation, barriers). On N GPUs it is the path to N times the
throughput.

    python benchmarks/ddp_overhead.py [--dataset cifar10] [--processes 2] [--epochs 3]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from cnnstudy.training.runtime import cpu_flags

STUDY = """
name: ddp-bench
defaults:
  data: {{dataset: {dataset}, image_size: 48, limit_per_class: {limit}}}
  train: {{epochs: {epochs}, batch_size: {batch}, lr: 0.001}}
phases:
  - name: bench
    runs:
      - {{name: {model}, model: {model}, augment: seed}}
"""


def seconds_per_epoch(study: Path, out: Path, processes: int, model: str) -> tuple[float, float]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"] \
        if processes > 1 else [sys.executable]
    subprocess.run([*launcher, "-m", "cnnstudy", "run", str(study), "--out", str(out)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_dir = out / "ddp-bench" / "bench" / model
    rows = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    later = rows[1:] or rows  # the first epoch also pays for start-up
    accuracy = json.loads((run_dir / "metrics.json").read_text())["test"]["accuracy"]
    return sum(r["seconds"] for r in later) / len(later), accuracy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--limit", type=int, default=200, help="images per class per source split")
    parser.add_argument("--model", default="cnn_regularized")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32, help="the global batch, the same in both runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        study = Path(tmp) / "study.yaml"
        study.write_text(STUDY.format(dataset=args.dataset, limit=args.limit, epochs=args.epochs, batch=args.batch,
                                      model=args.model))
        one, one_acc = seconds_per_epoch(study, Path(tmp) / "one", 1, args.model)
        many, many_acc = seconds_per_epoch(study, Path(tmp) / "many", args.processes, args.model)
    print(f"{args.model} on {args.dataset} ({args.limit}/class, 48 px), global batch {args.batch}, "
          f"{args.epochs} epochs; CPU flags: {cpu_flags()}")
    print(f"1 process:   {one:.2f} s/epoch, test accuracy {one_acc:.3f}")
    print(f"{args.processes} processes: {many:.2f} s/epoch, test accuracy {many_acc:.3f}")
    print(f"DDP / single: {many / one:.2f}x the time per epoch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
