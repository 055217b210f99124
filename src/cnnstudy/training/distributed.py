"""Data-parallel training on PyTorch's own engine: `torchrun --nproc-per-node N -m cnnstudy run ...`.

A `Dist` describes this process's place in the job (rank, world size, local rank); it is made once
at start-up from torchrun's environment and passed down. Without torchrun it is the single process
(rank 0 of 1) and every helper here does nothing, so a plain `cnnstudy run` runs as one process, undistributed.

Conventions: rank 0 alone writes files, prints and plots, and the others wait at a barrier; a step
only rank 0 performs (fetching, making splits, taking the study lock) broadcasts its error, so that
every rank stops with the same message instead of hanging.
"""
from __future__ import annotations

import gc
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as torch_dist

from ..config import StudyError
from .devices import resolve_device

T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1  # processes of the job on this machine

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch_dist.barrier()

    def on_main(self, action: Callable[[], T]) -> T | None:
        """Run `action` on rank 0 only; its failure reaches every rank (the others get None)."""
        result, error = None, None
        if self.main:
            try:
                result = action()
            except Exception as err:  # noqa: BLE001 - re-raised below, after the other ranks heard of it
                error = err
        if self.enabled:
            message = [None if error is None else f"{type(error).__name__}: {error}"]
            torch_dist.broadcast_object_list(message, src=0)
            if message[0] is not None and not self.main:
                raise StudyError(f"rank 0 stopped: {message[0]}")
        if error is not None:
            raise error
        return result

    def main_first(self, action: Callable[[], T]) -> T:
        """Rank 0 runs `action` (which may write files); then the others run it (and read them)."""
        result = self.on_main(action)
        self.barrier()
        return result if self.main else action()

    def all_sum(self, *values: torch.Tensor) -> list[torch.Tensor]:
        if self.enabled:
            for value in values:
                torch_dist.all_reduce(value, op=torch_dist.ReduceOp.SUM)
        return list(values)

    def sync_buffers(self, module: torch.nn.Module) -> None:
        """Every rank takes rank 0's buffers (BatchNorm running statistics drift apart per shard)."""
        if self.enabled:
            for buffer in module.buffers():
                torch_dist.broadcast(buffer, src=0)

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        gathered: list[Any] = [None] * self.world
        torch_dist.all_gather_object(gathered, obj)
        return gathered

    def device(self, name: str) -> torch.device:
        """The run's device: under torchrun, one CUDA device per local rank."""
        device = resolve_device(name)
        if self.enabled and device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_rank)
        return device


SINGLE = Dist()


def init_from_env() -> Dist:
    """This process's Dist: torchrun's RANK/WORLD_SIZE/LOCAL_RANK, with gloo on CPU and nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    dist = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")),
                int(os.environ.get("LOCAL_WORLD_SIZE", world)))
    if not torch_dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(dist.local_rank)
        torch_dist.init_process_group(backend)
    return dist


def leave_together(dist: Dist) -> None:
    """After a command that went well on every rank: wait for the others (rank 0 writes the report
    while the rest are done) before the process group goes."""
    if dist.enabled and torch_dist.is_initialized():
        torch_dist.barrier()


def shutdown(dist: Dist) -> None:
    """The process group destroyed, and what still held it (a DistributedDataParallel model in a
    reference cycle keeps its ProcessGroupGloo) collected while the interpreter is whole."""
    if dist.enabled and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
        gc.collect()


def end_rank(code: int) -> None:
    """How a torchrun rank ends: its output flushed, then os._exit. A gloo process group still alive
    when the interpreter is torn down has worker threads holding tensors; destroying them then, or
    C++ destructors racing the other rank's closed sockets at exit(), aborts the rank with
    "terminate called without an active exception" (SIGABRT), which fails the whole torchrun job
    after every file was written (pytorch/pytorch#190489, #179291). Every file is written and
    closed by now, so there is nothing for that teardown to do."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to say
            pass
    os._exit(code)
