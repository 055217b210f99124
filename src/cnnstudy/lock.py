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
from pathlib import Path
from typing import Iterator

from .config import StudyError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_FILE = ".lock"


def _holder() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S %z")}


def _describe(path: Path) -> str:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {holder['pid']} on {holder['host']}, running since {holder['since']}"
    except (OSError, ValueError, KeyError):
        return "another process (its details could not be read)"


@contextmanager
def study_lock(study_dir: Path) -> Iterator[None]:
    """Hold the study folder for this process, or stop at once naming the process that holds it."""
    if fcntl is None:
        yield
        return
    study_dir.mkdir(parents=True, exist_ok=True)
    path = study_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StudyError(f"{study_dir} is in use by another cnnstudy run ({_describe(path)}); "
                             "wait for it to finish or stop it, or use another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(_holder()).encode())
        yield
    finally:
        os.close(fd)  # closing releases the lock
