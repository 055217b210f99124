"""Process-wide settings that make the CPU training step faster, applied once at start-up."""
from __future__ import annotations

import ctypes
import ctypes.util
import os

import torch

# glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
GLIBC_DEFAULTS = {M_TRIM_THRESHOLD: 128 * 1024, M_MMAP_MAX: 65536}


def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "mallopt") else None


def set_allocator(tuned: bool = True) -> bool:
    """Keep freed memory instead of returning it to the OS after every step.

    Each step frees and re-allocates the same large activation buffers; glibc's default serves those
    with mmap/munmap and trims the heap, paying page faults every time. Returns False where glibc's
    mallopt is not available (other libcs, macOS, Windows).
    """
    libc = _libc()
    if libc is None:
        return False
    values = {M_MMAP_MAX: 0, M_TRIM_THRESHOLD: 1 << 30} if tuned else GLIBC_DEFAULTS
    return all(libc.mallopt(param, value) == 1 for param, value in values.items())


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def tune_runtime(processes_per_machine: int = 1) -> None:
    """Allocator as above, and the usable cores shared out as intra-op threads between the processes
    of a torchrun job on this machine (all of them for a single process)."""
    set_allocator(True)
    torch.set_num_threads(max(1, usable_cores() // processes_per_machine))


def prepare_process(threads: int) -> None:
    """What every process that trains sets first, whoever started it."""
    set_allocator(True)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)


def cpu_flags(wanted: tuple[str, ...] = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")) -> str:
    """The CPU features that decide kernel speed and native bf16, for benchmark headers."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), [])
    except OSError:
        return "unknown (no /proc/cpuinfo)"
    return " ".join(flag for flag in wanted if flag in flags) or "none of " + ", ".join(wanted)
