"""Units as Ray tasks on a cluster (`cnnstudy run --executor ray`): connecting to a head that
answers (or a fresh local instance), checking that every node shares the study folder, and
cancelling every task on Ctrl-C. Each task sets the same process settings as a local worker."""
from __future__ import annotations

import os
import socket
import uuid
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable

from ...config import StudyError
from ...training.runtime import prepare_process


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
