"""Atomic file writes: a kill at any instant leaves each file either old or new, never torn.

Written files get the mode an ordinary open() would give them (0666 minus the umask), not the
0600 of a temp file, so a group that shares results can read them.
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator



def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask sets it to read it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class Terminated(KeyboardInterrupt):
    """SIGTERM (what Slurm, Kubernetes and Ray send before a kill): stop like Ctrl-C, after the write
    in progress."""


class DiskFullError(OSError):
    """No space left while writing a file; what was written before is whole."""

    def __str__(self) -> str:
        return str(self.strerror)


_writes = {"depth": 0, "pending": False}


def stop_on_sigterm() -> None:
    """From now on SIGTERM raises Terminated, but never inside an atomic write: a write in progress
    is finished first, then it is raised."""
    def handler(signum, frame) -> None:
        if _writes["depth"]:
            _writes["pending"] = True
            return
        raise Terminated()
    signal.signal(signal.SIGTERM, handler)


@contextmanager
def _whole_write() -> Iterator[None]:
    _writes["depth"] += 1
    try:
        yield
    finally:
        _writes["depth"] -= 1
        if not _writes["depth"] and _writes["pending"]:
            _writes["pending"] = False
            raise Terminated()


def existing_parent(folder: str | Path) -> Path:
    """`folder`, or its nearest parent that exists (where a folder still to be made will live)."""
    folder = Path(folder).absolute()
    while not folder.exists():
        folder = folder.parent
    return folder


def free_bytes(folder: str | Path) -> int:
    """Free space for this user on the file system holding `folder` (or its nearest existing parent)."""
    stats = os.statvfs(existing_parent(folder))
    return stats.f_bavail * stats.f_frsize


def _disk_full(path: Path, err: OSError) -> DiskFullError:
    return DiskFullError(errno.ENOSPC, f"no space left on the device while writing {path} "
                         f"({free_bytes(path.parent) / 2**20:.0f} MB free there); every file written before is "
                         "whole: free some space and run the same command again, it continues from the last "
                         "finished epoch", str(path))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _whole_write():
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, 0o666 & ~current_umask())
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException as err:
            Path(tmp).unlink(missing_ok=True)
            if isinstance(err, OSError) and err.errno == errno.ENOSPC and not isinstance(err, DiskFullError):
                raise _disk_full(path, err) from None
            raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    # Rewritten whole each epoch (it is tiny) so that it is never half a line long.
    atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    import torch  # here, not at the top: commands that only check a study file never load torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
