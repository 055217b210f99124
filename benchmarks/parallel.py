"""Many runs at once (not a test): one study of 8 small independent runs, carried out serially, with
`--jobs 2`, `--jobs 4` and on a local Ray instance; wall-clock of each and speed-up over serial.

Every setup is a fresh `cnnstudy run` process on a warm image cache (built once first, not timed),
so the times include each setup's own start-up (worker processes, Ray's). Serial runs use every
core in each run; N jobs give each run cores / N threads (at least 1). On a machine with few
cores, the gain comes from the parts of a run that one run cannot spread over its threads
(Python overhead, small kernels, evaluation, writing plots), not from more arithmetic.

    python benchmarks/parallel.py [--dataset cifar10] [--limit 100] [--epochs 3] [--skip-ray]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cnnstudy.training.runtime import cpu_flags, usable_cores

STUDY = """
name: parallel-bench
defaults:
  data: {{dataset: {dataset}, image_size: 48, limit_per_class: {limit}}}
  train: {{epochs: {epochs}, batch_size: 32, lr: 0.001}}
phases:
  - name: bench
    runs:
{runs}
"""
MODELS = ["cnn_slim", "cnn_baseline", "cnn_regularized", "cnn_slim"]


def study_text(dataset: str, limit: int, epochs: int) -> str:
    runs = [f"      - {{name: r{k}, model: {MODELS[k % len(MODELS)]}, seed: {k}, "
            f"augment: {'seed' if k % 2 else 'none'}}}" for k in range(8)]
    return STUDY.format(dataset=dataset, limit=limit, epochs=epochs, runs="\n".join(runs))


def timed(study: Path, out: Path, *flags: str) -> tuple[float, list[float]]:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cnnstudy", "run", str(study), "--out", str(out), *flags], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "TQDM_DISABLE": "1"})
    seconds = time.perf_counter() - started
    metrics = sorted((out / "parallel-bench" / "bench").glob("r*/metrics.json"))
    return seconds, [json.loads(path.read_text())["test"]["accuracy"] for path in metrics]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--limit", type=int, default=100, help="images per class per source split")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    setups = [("serial", ()), ("--jobs 2", ("--jobs", "2")), ("--jobs 4", ("--jobs", "4"))]
    if not args.skip_ray and importlib.util.find_spec("ray"):
        setups.append(("Ray local", ("--executor", "ray", "--threads", "1")))
    with tempfile.TemporaryDirectory() as tmp:
        study = Path(tmp) / "study.yaml"
        study.write_text(study_text(args.dataset, args.limit, args.epochs))
        subprocess.run([sys.executable, "-m", "cnnstudy", "run", str(study), "--out", str(Path(tmp) / "warm"),
                        "--set", "train.epochs=1"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        results = [(name, *timed(study, Path(tmp) / name.replace(" ", "_"), *flags)) for name, flags in setups]
    print(f"8 runs on {args.dataset} ({args.limit}/class, 48 px, {args.epochs} epochs); {usable_cores()} cores; "
          f"CPU flags: {cpu_flags()}")
    serial = results[0][1]
    print(f"{'setup':12s} {'wall s':>8s} {'speed-up':>9s}  mean test acc")
    for name, seconds, accuracies in results:
        mean = sum(accuracies) / len(accuracies)
        print(f"{name:12s} {seconds:8.1f} {serial / seconds:8.2f}x  {mean:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
