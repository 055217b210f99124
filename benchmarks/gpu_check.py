"""GPU check (not a test): does cnnstudy's CUDA path work, and how fast is it? About 5 minutes (more with --compile).

On a CUDA machine prints: the device's name and compute capability, the precision `auto` chooses
there (bf16 from compute capability 8.0, fp16 with a gradient scaler below), the wall time of the
quick study (studies/quick.yaml, its datasets found under $CNNSTUDY_DATA), and the throughput
benchmark's ratios at 64 and 224 px: end to end / compute limit (b/a) and against the naive
pipeline (b/c), the step against the GPU's own GEMM peak and copy bandwidth (fused order and the
seed's, before/after), and with `--compile` whether torch.compile pays for the step there.

    python benchmarks/gpu_check.py [--dataset hymenoptera] [--skip-study] [--compile]
    python benchmarks/gpu_check.py --device cpu --skip-study --sizes 64   # a smoke test without a GPU
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from step_options import step_rate  # noqa: E402
from throughput import print_roofline, print_table  # noqa: E402

from cnnstudy.training.devices import choose_precision  # noqa: E402
from cnnstudy.training.runtime import tune_runtime  # noqa: E402
from cnnstudy.runner.study import run_study  # noqa: E402


def describe(device: torch.device) -> str:
    if device.type != "cuda":
        return f"{device} (no GPU)"
    major, minor = torch.cuda.get_device_capability(device)
    return f"{torch.cuda.get_device_name(device)}, compute capability {major}.{minor}, CUDA {torch.version.cuda}"


def quick_study_seconds(device: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        run_study("studies/quick.yaml", [f"device={device}"], out_dir=tmp,
                  log=lambda line: print(line, file=sys.stderr))
        return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dataset", default="hymenoptera", help="images for the throughput table")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 224])
    parser.add_argument("--skip-study", action="store_true")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile against eager")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here; run it on a GPU machine (or pass --device cpu for a smoke test)")
        return 1
    tune_runtime()
    print(f"device: {describe(device)}; precision auto -> {choose_precision(device, 'auto')}")
    if not args.skip_study:
        print(f"quick study: {quick_study_seconds(args.device):.0f} s wall time on {args.device}")
    rows = print_table(["cnn_baseline", "cnn_regularized"], args.sizes, 8, 2, args.dataset, device)
    for row in rows:
        print(f"{row['model']} {row['size']} px: b/a {row['b'] / row['a']:.2f}, b/c {row['b'] / row['c']:.2f}")
    print_roofline(["cnn_baseline", "cnn_regularized"], args.sizes, 8, 2, device, reference=True, profile=False)
    if args.compile:
        print_compile_gain(device, args.sizes)
    return 0


def print_compile_gain(device: torch.device, sizes: list[int]) -> None:
    """Eager against torch.compile for the step in the precision `auto` picks: does compiling pay here?"""
    bf16 = choose_precision(device, "auto") == "bf16"
    for size in sizes:
        eager, compiled = (step_rate("cnn_regularized", size, 20, True, bf16, flag, device) for flag in (False, True))
        print(f"cnn_regularized {size} px: eager {eager:.0f} img/s, torch.compile {compiled:.0f} img/s "
              f"({compiled / eager:.2f}x, compile time not counted)")


if __name__ == "__main__":
    sys.exit(main())
