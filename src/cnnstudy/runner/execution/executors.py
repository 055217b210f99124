"""Who carries out a unit (a run, a repeat, a sweep trial): this process, local worker processes
(`--jobs N`), or Ray tasks on a cluster (`--executor ray`, ray_executor.py). Each gives back a
`concurrent.futures.Future`, so the scheduler (schedule.py) waits on all of them alike.

Every unit runs with the same process settings wherever it runs: `threads` intra-op threads,
deterministic algorithms, the step's allocator. A run's numbers depend on its seeds, its split and
its thread count (CPU reductions split the work by thread), so with the same `--threads` a unit
gives the same numbers under any executor.
"""
from __future__ import annotations

import os
import signal
import time
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
from tqdm import tqdm

from ...fileio import Terminated, stop_on_sigterm
from ...training.runtime import prepare_process, usable_cores

if TYPE_CHECKING:
    from .ray_executor import RayExecutor


@dataclass(frozen=True)
class Parallel:
    """How a study spreads its units: `cnnstudy run --jobs N --threads T --executor local|ray`."""
    jobs: int | None = None  # units at once; default 1 on CPU, one per visible GPU
    threads: int | None = None  # torch threads per unit; default all cores serially, cores / jobs in parallel
    executor: str = "local"  # local | ray
    ray_address: str | None = None  # None: a local Ray instance; "auto" or "ray://host:10001"


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES would name them."""
    if not torch.cuda.is_available():
        return []
    named = os.environ.get("CUDA_VISIBLE_DEVICES")
    return named.split(",")[:torch.cuda.device_count()] if named else \
        [str(k) for k in range(torch.cuda.device_count())]


def default_jobs() -> int:
    return max(1, len(visible_gpus()))


def threads_per_unit(parallel: Parallel, jobs: int) -> int:
    return parallel.threads or max(1, usable_cores() // jobs)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """`threads` intra-op threads inside the block, the process's own setting again after it."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class SerialExecutor:
    """Units one after another in this process, each finished before `submit` returns."""
    slots, name = 1, "serial"

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def submit(self, fn: Callable, *args: Any) -> Future:
        future: Future = Future()
        with torch_threads(self.threads):
            try:
                future.set_result(fn(*args))
            except Exception as err:  # noqa: BLE001 - handed to the scheduler like a worker's failure
                future.set_exception(err)
        return future

    def close(self, interrupted: bool = False) -> None:
        pass


def _setup_worker(threads: int, gpus) -> None:
    # Ctrl-C reaches the whole process group; the driver alone decides, and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gpu = gpus.get() if gpus is not None else None
    if gpu is not None:  # before CUDA starts in this process: the worker sees its one GPU as cuda:0
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    os.environ["TQDM_DISABLE"] = "1"
    # tqdm's default lock is a multiprocessing one (a named semaphore): a worker killed on Ctrl-C
    # could not release it, and the resource tracker would warn of it at the study's end.
    tqdm.set_lock(threading.RLock())
    stop_on_sigterm()  # the driver stops workers with SIGTERM: each finishes the write in progress
    in_unit = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda signum, frame: in_unit(signum, frame) if _busy["unit"] else os._exit(143))
    prepare_process(threads)


# How long a stopped worker may take to finish the write in progress before it is killed. Every
# file is written atomically, so a kill loses no file; the wait only spares a half-written temporary.
WORKER_GRACE_S = 1.5
_busy = {"unit": False}  # a worker between units has nothing to finish: SIGTERM ends it quietly


def _worker_call(fn: Callable, *args: Any) -> Any:
    _busy["unit"] = True
    try:
        return fn(*args)
    except Terminated:
        # Only the driver stops a worker, and only when the study is interrupted: nobody waits for this
        # unit's result, and a pool worker that returned it would wait for work that never comes.
        os._exit(143)
    finally:
        _busy["unit"] = False


class LocalExecutor:
    """`jobs` worker processes on this machine (spawned: a forked torch can deadlock), each with
    `threads` threads and, where there are GPUs, one GPU (worker k takes GPU k mod their count)."""
    name = "local"

    def __init__(self, jobs: int, threads: int) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        gpus = visible_gpus()
        queue = context.Queue() if gpus else None
        for k in range(jobs if gpus else 0):
            queue.put(gpus[k % len(gpus)])
        self.slots, self.threads = jobs, threads
        self.pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_setup_worker,
                                        initargs=(threads, queue))

    def submit(self, fn: Callable, *args: Any) -> Future:
        return self.pool.submit(_worker_call, fn, *args)

    def close(self, interrupted: bool = False) -> None:
        if interrupted:  # a unit stopped mid-epoch resumes from its last finished epoch
            processes = list(getattr(self.pool, "_processes", {}).values())
            terminate = getattr(self.pool, "terminate_workers", None)  # Python 3.14+
            if terminate is not None:
                terminate()
            else:
                for process in processes:
                    process.terminate()
            # A worker inside a long torch operation hears SIGTERM only when the operation returns: after
            # the grace period it is killed (atomic writes: nothing is lost).
            deadline = time.monotonic() + WORKER_GRACE_S
            for process in processes:
                process.join(max(0.0, deadline - time.monotonic()))
                if process.is_alive():
                    process.kill()
                    process.join()
        self.pool.shutdown(wait=True, cancel_futures=True)


def make_executor(parallel: Parallel, study_dir: Path, log) -> SerialExecutor | LocalExecutor | RayExecutor:
    if parallel.executor == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor(parallel.jobs, parallel.threads or 1, parallel.ray_address, study_dir, log)
    jobs = parallel.jobs or default_jobs()
    if jobs == 1:
        return SerialExecutor(parallel.threads)
    return LocalExecutor(jobs, threads_per_unit(parallel, jobs))
