"""Who carries out a unit (a run, a repeat, a sweep trial): this process, local worker processes
(`--jobs N`), or Ray tasks on a cluster (`--executor ray`). Each gives back a
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
import socket
import threading
import uuid
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from tqdm import tqdm

from ..config import StudyError
from ..fileio import Terminated, stop_on_sigterm
from ..training.runtime import set_allocator, usable_cores


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


def prepare_process(threads: int) -> None:
    """What every process that trains sets first, whoever started it."""
    set_allocator(True)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)


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


def _ray_task(threads: int, fn: Callable, *args: Any) -> Any:
    os.environ["TQDM_DISABLE"] = "1"
    prepare_process(threads)
    return fn(*args)


def _write_probe(study_dir: str, token: str) -> str:
    folder = Path(study_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist on this node")
    path = folder / f".ray-probe-{token}"
    path.write_text(token)
    return str(path)


def import_ray():
    try:
        import ray
    except ImportError:
        raise StudyError("--executor ray needs Ray: pip install 'cnnstudy[ray]'") from None
    return ray


class RayExecutor:
    """Units as Ray tasks (`threads` CPUs each, one GPU each where the cluster has GPUs, no retries).
    The study folder must be the same shared folder on every node: checked before anything runs."""
    name = "ray"

    def __init__(self, jobs: int | None, threads: int, address: str | None, study_dir: Path, log) -> None:
        ray = import_ray()
        self.ray, self.started = ray, not ray.is_initialized()
        if self.started:
            connect_ray(ray, address)
        resources = ray.cluster_resources()
        gpus = 1 if resources.get("GPU", 0) >= 1 else 0
        self.task = ray.remote(num_cpus=threads, num_gpus=gpus, max_retries=0)(_ray_task)
        self.threads, self.refs = threads, []
        self.slots = jobs or max(1, int(resources.get("GPU", 0)) if gpus else int(resources.get("CPU", 1) // threads))
        check_shared_storage(ray, study_dir)
        log(f"Ray: {len(alive_nodes(ray))} node(s), {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} "
            f"GPUs; {self.slots} unit(s) at once, {threads} thread(s) and {gpus} GPU each")

    def submit(self, fn: Callable, *args: Any) -> Future:
        ref = self.task.remote(self.threads, fn, *args)
        self.refs.append(ref)
        return ref.future()

    def close(self, interrupted: bool = False) -> None:
        if interrupted:
            for ref in self.refs:
                self.ray.cancel(ref, force=True)
        if self.started:
            self.ray.shutdown()


def head_of(address: str) -> tuple[str, int]:
    """(host, port) a driver connects to for --ray-address: auto (the cluster `ray start` recorded on
    this machine), HOST:PORT (the head's GCS, 6379 by default) or ray://HOST:PORT (Ray Client, 10001)."""
    if address == "auto":
        recorded = Path(os.environ.get("RAY_TMPDIR", "/tmp/ray")) / "ray_current_cluster"
        if not recorded.is_file():
            raise StudyError(f"--ray-address auto: no Ray cluster is recorded on this machine ({recorded}); "
                             "start one (ray start --head, docs/parallel.md) or leave --ray-address out for a "
                             "fresh local instance")
        address = recorded.read_text().strip()
    client = address.startswith("ray://")
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        host, port = address.removeprefix("ray://"), "10001" if client else "6379"
    return host, int(port)


def answers_grpc(host: str, port: int, seconds: float) -> bool:
    """Does host:port speak HTTP/2 as a gRPC server (Ray's GCS and client server do)? It answers the
    connection preface with a SETTINGS frame; anything else (an HTTP/1 server, silence) is not Ray.
    Checked because ray.init retries a wrong address for minutes."""
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # and an empty SETTINGS
    with socket.create_connection((host, port), timeout=seconds) as connection:
        connection.sendall(preface)
        try:
            header = connection.recv(9)
        except socket.timeout:
            return False
    return len(header) == 9 and header[3] == 4  # frame type 4: SETTINGS


def connect_ray(ray, address: str | None, seconds: float = 5.0) -> None:
    """A fresh local instance without an address (`local`: never a cluster a stopped `ray start` left
    recorded); with one, a head that answers within seconds, or one line saying what to check."""
    if address is not None:
        host, port = head_of(address)
        try:
            speaks_grpc = answers_grpc(host, port, seconds)
        except OSError as err:
            raise StudyError(f"--ray-address {address}: nothing answers at {host}:{port} ({err}); check that the "
                             "cluster is up (ray status, on its head node) and that this machine can reach that "
                             "port") from None
        if not speaks_grpc:
            raise StudyError(f"--ray-address {address}: {host}:{port} answers, but not as a Ray head (its GCS port, "
                             "6379 by default, or ray://HOST:10001; the dashboard's 8265 is neither)")
    try:
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=False,
                 logging_level="warning", configure_logging=False)
    except ray.exceptions.AuthenticationError:
        raise StudyError(f"--ray-address {address}: the cluster refused this driver's authentication token; give "
                         "it the cluster's token (RAY_AUTH_TOKEN, or RAY_AUTH_TOKEN_PATH; docs/parallel.md)") from None
    except ConnectionError as err:
        raise StudyError(f"--ray-address {address}: {str(err).splitlines()[0]}") from None


def alive_nodes(ray) -> list[dict]:
    return [node for node in ray.nodes() if node.get("Alive") and node.get("Resources", {}).get("CPU")]


def check_shared_storage(ray, study_dir: Path) -> None:
    """A task on every node writes a file into the study folder; the driver must read each one."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token, problems = uuid.uuid4().hex, []
    probe = ray.remote(num_cpus=0, max_retries=0)(_write_probe)
    for node in alive_nodes(ray):
        where = node.get("NodeManagerAddress", node["NodeID"][:12])
        strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        try:
            written = Path(ray.get(probe.options(scheduling_strategy=strategy).remote(
                str(study_dir.resolve()), f"{token}-{node['NodeID'][:12]}"), timeout=300))
        except Exception as err:  # noqa: BLE001 - any failure means that node cannot write there
            problems.append(f"{where}: {type(err).__name__}: {str(err).splitlines()[0][:200]}")
            continue
        if not written.exists():
            problems.append(f"{where}: wrote {written}, which this machine cannot see")
        written.unlink(missing_ok=True)
    if problems:
        raise StudyError(f"the study folder {study_dir.resolve()} is not shared with every Ray node, so their "
                         "results would not reach the study:\n  " + "\n  ".join(problems) +
                         "\nPut --out on storage every node mounts at the same path (NFS, a cluster file system)")


def make_executor(parallel: Parallel, study_dir: Path, log) -> SerialExecutor | LocalExecutor | RayExecutor:
    if parallel.executor == "ray":
        return RayExecutor(parallel.jobs, parallel.threads or 1, parallel.ray_address, study_dir, log)
    jobs = parallel.jobs or default_jobs()
    if jobs == 1:
        return SerialExecutor(parallel.threads)
    return LocalExecutor(jobs, threads_per_unit(parallel, jobs))
