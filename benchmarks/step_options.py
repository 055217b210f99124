"""Which step setup is fastest on this machine? (not a test)

The training step of one model (forward, backward, Adam) on in-memory tensors, batch 32, under
each option alone and combined, measured in one process; prints images/second and the ratio to
the plain setup (NCHW, fp32, glibc's default allocator, eager).

    .venv/bin/python benchmarks/step_options.py [--model cnn_baseline] [--size 64] [--compile]
    python benchmarks/step_options.py --device cuda --compile   # on a GPU machine
"""
from __future__ import annotations

import argparse
import sys
import time

import torch
from torch import nn

from cnnstudy.models.registry import create_model
from cnnstudy.training.runtime import cpu_flags, set_allocator, usable_cores

BATCH = 32


def step_rate(model_name: str, size: int, steps: int, channels_last: bool, bf16: bool,
              compiled: bool, device: torch.device = torch.device("cpu")) -> float:
    torch.manual_seed(0)
    model = create_model(model_name, 10).to(device)
    images = torch.randn(BATCH, 3, size, size, device=device)
    labels = torch.randint(0, 10, (BATCH,), device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    forward = torch.compile(model) if compiled else model
    optimizer, criterion = torch.optim.Adam(model.parameters(), 1e-3), nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = criterion(forward(images).float(), labels)
        loss.backward()
        optimizer.step()

    for _ in range(3):  # warm-up (and compilation)
        step()
    synchronize = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize()  # the GPU's queued work counts
    return steps * BATCH / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cnn_baseline")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile (slow to start)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda on a GPU machine")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(usable_cores())
    print(f"CPU flags: {cpu_flags()}")
    options = [("plain (NCHW, fp32, default allocator)", False, False, False, False),
               ("tuned allocator", False, True, False, False),
               ("channels_last", True, False, False, False),
               ("channels_last + tuned allocator (cnnstudy)", True, True, False, False),
               ("bf16 autocast + cnnstudy setup", True, True, True, False)]
    if args.compile:
        options += [("torch.compile + cnnstudy setup", True, True, False, True),
                    ("torch.compile + bf16 + cnnstudy setup", True, True, True, True)]
    print(f"{args.model}, {args.size} px, batch {BATCH}, {torch.get_num_threads()} threads")
    base = None
    for label, channels_last, tuned, bf16, compiled in options:
        set_allocator(tuned)
        rate = step_rate(args.model, args.size, args.steps, channels_last, bf16, compiled, device)
        base = base or rate
        print(f"{label:45s} {rate:8.1f} img/s  {rate / base:5.2f}x", flush=True)
    set_allocator(True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
