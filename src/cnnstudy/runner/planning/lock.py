"""One writer per study folder: `cnnstudy run` holds an exclusive lock on <study>/.lock while it runs.

The lock is an `fcntl.flock` on an open file, so the kernel releases it when the process ends, even
on a crash or SIGKILL; the file's content only names the holder for the message a second writer
gets. Where fcntl does not exist (Windows) no lock is taken.
"""
from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Iterator

from ...config import StudyError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_FILE = ".lock"
SINCE_FORMAT = "%Y-%m-%d %H:%M:%S %z"  # the lock file's "since", written and read back alike


def _holder() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "since": time.strftime(SINCE_FORMAT)}


def _describe(path: Path) -> str:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {holder['pid']} on {holder['host']}, running since {holder['since']}"
    except (OSError, ValueError, KeyError):
        return "another process (its details could not be read)"


def lock_file_holder(study_dir: Path) -> dict | None:
    """What the study's .lock names: the pid, host and start (`since`, seconds) of the run that last took it."""
    try:
        holder = json.loads((Path(study_dir) / LOCK_FILE).read_text(encoding="utf-8"))
        since = datetime.strptime(holder["since"], SINCE_FORMAT).timestamp()
        return {"pid": int(holder["pid"]), "host": holder["host"], "since": since}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def lock_holder(study_dir: Path) -> dict | None:
    """The run holding the study's lock now, or None: the lock is free, or that cannot be told here
    (no /proc/locks, or a file system whose locks it does not show)."""
    try:
        stat = (Path(study_dir) / LOCK_FILE).stat()
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    device = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    for line in table.splitlines():  # "1: FLOCK  ADVISORY  WRITE 4242 fe:00:2155474 0 EOF"; "->": a waiter
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == device:
            return lock_file_holder(study_dir)
    return None


class StudyLock:
    """Hold a study folder for this process, or stop at once naming the process that holds it."""

    def __init__(self, study_dir: Path) -> None:
        self.study_dir, self.fd = study_dir, None

    def acquire(self) -> None:
        if fcntl is None:
            return
        self.study_dir.mkdir(parents=True, exist_ok=True)
        path = self.study_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StudyError(f"{self.study_dir} is in use by another cnnstudy run ({_describe(path)}); "
                             "wait for it to finish or stop it, or use another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(_holder()).encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
            self.fd = None


@contextmanager
def study_lock(study_dir: Path) -> Iterator[None]:
    lock = StudyLock(study_dir)
    lock.acquire()
    try:
        yield
    finally:
        lock.release()
