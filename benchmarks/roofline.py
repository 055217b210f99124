"""Where a training step stands against this machine's limits (helpers for throughput.py, not a test).

- `gemm_peak`: the best of three 4096 x 4096 matmuls in the step's dtype, in this process: what
  the same kernels reach on the most GEMM-friendly shape there is.
- `step_flops`: a forward + backward pass's FLOPs per image, counted by torch's FlopCounterMode
  (convolutions and matmuls only, as every roofline does).
- `copy_bandwidth`: the best of five copies of a 512 MiB tensor: the memory bandwidth the
  memory-bound passes (pooling, ReLU, BatchNorm, the optimizer) can hope for.
- `memory_traffic`: bytes each aten op outside the convolutions and matmuls reads and writes per image,
  seen through a TorchDispatchMode: a lower bound (an op's internal scratch and zero-fills are not seen).
- `profile_summary`: torch.profiler's self CPU time per op, grouped by kind, as a share of the step.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from collections import Counter
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode
from torch.utils._pytree import tree_flatten

COMPUTE_OPS = ("convolution", "mm", "addmm", "bmm", "matmul", "linear")
FREE_OPS = ("view", "_unsafe_view", "t", "transpose", "permute", "expand", "as_strided", "detach", "alias",
            "unsqueeze", "squeeze", "reshape", "slice", "select", "_reshape_alias", "lift_fresh")
OP_GROUPS = (("convolution", ("conv",)), ("max-pool", ("max_pool",)),
             ("relu", ("relu", "threshold")), ("batchnorm", ("batch_norm",)),
             ("optimizer (Adam)", ("_foreach", "adam", "lerp", "addcmul", "addcdiv", "sqrt")),
             ("linear / loss", ("addmm", "mm", "log_softmax", "nll_loss", "mean", "sum")),
             ("fill / copy", ("fill", "zero", "copy", "to", "clone", "empty")))


def timed(action: Callable[[], object], device: torch.device, repeats: int = 3) -> float:
    """Best wall time of `repeats` calls, after one warm-up call (a GPU's queued work included)."""
    def run() -> float:
        started = time.perf_counter()
        action()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - started
    run()
    return min(run() for _ in range(repeats))


def gemm_peak(dtype: torch.dtype, device: torch.device, size: int = 4096) -> float:
    """GFLOP/s of the best of three size x size matmuls in `dtype`."""
    a, b = (torch.randn(size, size, device=device).to(dtype) for _ in range(2))
    return 2 * size ** 3 / timed(lambda: a @ b, device) / 1e9


def copy_bandwidth(device: torch.device, mebibytes: int = 512) -> float:
    """GB/s moved (read + write) by the best of five copies of a large tensor."""
    source = torch.ones(mebibytes * 2 ** 18, device=device)
    target = torch.empty_like(source)
    return 2 * source.numel() * 4 / timed(lambda: target.copy_(source), device, repeats=5) / 1e9


def step_flops(step: Callable[[], None], images: int) -> float:
    """FLOPs per image of one call of `step` (a forward + backward pass)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops() / images


class _Traffic(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.bytes: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if not name.startswith(COMPUTE_OPS) and name.rstrip("_") not in FREE_OPS:
            tensors = [t for t in tree_flatten((args, kwargs, result))[0] if isinstance(t, torch.Tensor)]
            self.bytes[name] += sum(t.numel() * t.element_size() for t in tensors)
        return result


def memory_traffic(step: Callable[[], None], images: int) -> Counter[str]:
    """Bytes per image read and written by each memory-bound aten op during one call of `step`."""
    with _Traffic() as traffic:
        step()
    return Counter({name: total / images for name, total in traffic.bytes.items()})


def op_group(name: str) -> str:
    plain = name.removeprefix("aten::")
    return next((group for group, keys in OP_GROUPS if any(key in plain for key in keys)), "other")


def profile_report(step: Callable[[], None], images: int, images_per_second: float, bandwidth: float) -> str:
    """The profile summary, then what the memory-bound ops move per image and what that costs at
    `bandwidth` GB/s against the step's measured time per image."""
    traffic = memory_traffic(step, images)
    total = sum(traffic.values())
    at_bandwidth = total / (bandwidth * 1e9)
    heaviest = ", ".join(f"{name} {size / 1e6:.1f}" for name, size in traffic.most_common(6))
    return (profile_summary(step) + f"\n  memory-bound ops move >= {total / 1e6:.1f} MB/image ({heaviest} MB): "
            f"{at_bandwidth * 1e3:.2f} ms/image at {bandwidth:.1f} GB/s, "
            f"{at_bandwidth * images_per_second:.0%} of the step's {1e3 / images_per_second:.2f} ms/image")


@contextlib.contextmanager
def _quiet_stderr():
    """The profiler's native layer prints start/stop lines to fd 2; they are not the benchmark's output."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def profile_summary(step: Callable[[], None], steps: int = 3, rows: int = 12) -> str:
    """Self CPU time per op group and the heaviest single ops, as shares of `steps` steps."""
    step()
    with _quiet_stderr(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        for _ in range(steps):
            step()
    events = [e for e in profiler.key_averages() if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    groups: Counter[str] = Counter()
    for event in events:
        groups[op_group(event.key)] += event.self_cpu_time_total
    lines = ["  by kind: " + ", ".join(f"{g} {t / total:.0%}" for g, t in groups.most_common())]
    for event in sorted(events, key=lambda e: -e.self_cpu_time_total)[:rows]:
        lines.append(f"  {event.key:45s} {event.self_cpu_time_total / total:6.1%} "
                     f"{event.self_cpu_time_total / steps / 1e3:8.2f} ms/step  x{event.count // steps}")
    return "\n".join(lines)
