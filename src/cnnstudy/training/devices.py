"""Which device a run uses and which precision it computes in.

`precision: auto` picks what the hardware computes natively and never an emulation:
bf16 autocast on CUDA GPUs of compute capability 8.0 or more (Ampere on) and on CPUs with
AVX512-BF16 or AMX; fp16 autocast with a gradient scaler on older CUDA GPUs (T4, V100), whose bf16
is emulated; fp32 elsewhere. `torch.cuda.is_bf16_supported()` is not used: it counts emulation and
asks the current device rather than the run's.

`CNNSTUDY_AUTO_PRECISION=bf16` (or fp32) makes `auto` mean that on a CPU, whatever it computes
natively: the test suite runs under it to behave, on any machine, as it does on a CPU with native
bf16 (where CI may land), only slower.
"""
from __future__ import annotations

import os
from contextlib import AbstractContextManager

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def cpu_has_native_bf16() -> bool:
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def cuda_capability(device: torch.device) -> tuple[int, int]:
    return torch.cuda.get_device_capability(device)


def choose_precision(device: torch.device, requested: str) -> str:
    """'fp32', 'bf16' or 'fp16': the requested one, or for 'auto' what `device` computes natively."""
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16" if cuda_capability(device) >= (8, 0) else "fp16"
    forced = os.environ.get("CNNSTUDY_AUTO_PRECISION", "")
    if device.type == "cpu" and forced in ("bf16", "fp32"):
        return forced
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    return torch.autocast(device.type, dtype=_DTYPES.get(precision, torch.bfloat16),
                          enabled=precision in _DTYPES)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """fp16 gradients underflow without loss scaling; bf16 and fp32 need none (the scaler is then a no-op)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
