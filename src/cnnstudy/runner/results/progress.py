"""A study's progress, read back: what its driver records in <study>/progress.json (recorder.py in
execution writes it) joined with each unfinished unit's history.jsonl, for `cnnstudy status`, the
console's "run k of N" lines and the report's first line. Only files are read, and nothing here
imports torch: `cnnstudy status` answers at once, from any terminal, while the study trains.

A study folder made without a progress file (an older cnnstudy, or torchrun) is read from its run
folders alone: each history.jsonl is a unit, done when a metrics.json lies beside it. A study whose
lock is held by a process that has not written its progress yet is "preparing" (checking data,
making splits): told from /proc/locks, read without touching the lock, where there is one (Linux).
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...fileio import read_json, read_jsonl
from ..planning.lock import lock_holder
from .estimate import estimate_left, format_duration

PROGRESS_FILE = "progress.json"
LIVE = ("preparing", "running")  # the driver is (or says it is) at work
ENDED_UNIT = ("done", "skipped", "pruned", "failed", "not run")  # a unit that will not run again this time


@dataclass
class UnitView:
    label: str
    run: str  # <phase>/<run>: its units share an epoch time until a unit's own is measured
    state: str  # queued | running | done | skipped | pruned | failed | not run | interrupted
    epochs: int  # planned (early stopping may end it sooner)
    trained: int = 0  # epochs in its history.jsonl
    seconds: float = 0.0  # their measured seconds
    started: float | None = None
    finished: float | None = None
    note: str | None = None
    before: float = 0.0  # seconds of epochs trained before this session (a resumed unit)
    count: int = 1  # more than 1: units not known yet (a sweep's trials still to draw), all alike

    @property
    def rate(self) -> float | None:
        return self.seconds / self.trained if self.trained else None


@dataclass
class StudyView:
    folder: Path
    name: str
    state: str  # preparing | running | finished | failed | interrupted | stopped | unrecorded
    units: list[UnitView] = field(default_factory=list)
    started: float | None = None
    ended: float | None = None
    pid: int | None = None
    host: str | None = None
    slots: int = 1
    executor: str = "serial"
    left: float | None = None  # seconds, estimated; None: no epoch measured yet
    now: float = 0.0
    note: str | None = None  # why it failed

    @property
    def live(self) -> bool:
        return self.state in LIVE

    @property
    def total(self) -> int:
        return sum(u.count for u in self.units)

    def count(self, *states: str) -> int:
        return sum(u.count for u in self.units if u.state in states)

    @property
    def elapsed(self) -> float | None:
        return None if self.started is None else (self.ended or self.now) - self.started


def read_progress(study_dir: Path) -> dict | None:
    """The progress file as written, or None where there is none (or it cannot be read)."""
    try:
        return read_json(Path(study_dir) / PROGRESS_FILE)
    except (OSError, ValueError):
        return None


def driver_alive(pid: int | None, host: str | None) -> bool | None:
    """Whether the study's driver process still runs: None where that cannot be told (another host)."""
    if pid is None or host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def history_facts(run_dir: Path) -> tuple[int, float]:
    """(epochs trained, their seconds) from a run folder's history.jsonl."""
    try:
        rows = read_jsonl(run_dir / "history.jsonl")
    except (OSError, ValueError):  # a file replaced while read: the next look sees it whole
        return 0, 0.0
    return len(rows), float(sum(row.get("seconds", 0.0) for row in rows))


def unit_view(study_dir: Path, entry: dict) -> UnitView:
    unit = UnitView(entry["label"], entry.get("run", entry["label"]), entry["state"], int(entry.get("epochs") or 0),
                    int(entry.get("trained") or 0), float(entry.get("seconds") or 0.0), entry.get("started"),
                    entry.get("finished"), entry.get("note"), float(entry.get("before") or 0.0),
                    int(entry.get("count") or 1))
    if entry.get("run_dir") and unit.state not in ENDED_UNIT:  # finished units carry their numbers
        unit.trained, unit.seconds = history_facts(study_dir / entry["run_dir"])
    return unit


def study_state(progress: dict) -> str:
    """The recorded state, or "stopped" for a study whose driver is gone without saying so (killed)."""
    state = progress.get("state", "running")
    if state in LIVE and driver_alive(progress.get("pid"), progress.get("host")) is False:
        return "stopped"
    return state


def view_progress(study_dir: Path, progress: dict, now: float | None = None) -> StudyView:
    """The study as `progress` (a progress file's content) and the run folders tell it, with its estimate."""
    now = time.time() if now is None else now
    units = [unit_view(study_dir, entry) for entry in progress.get("units", [])]
    units += [UnitView(f"{w['run']}: {w['what']}", w["run"], "queued", int(w["epochs"]), count=int(w["count"]))
              for w in progress.get("waiting", []) if w.get("count")]
    view = StudyView(Path(study_dir), progress.get("study", Path(study_dir).name), study_state(progress), units,
                     progress.get("started"), progress.get("ended"), progress.get("pid"), progress.get("host"),
                     int(progress.get("slots") or 1), progress.get("executor", "serial"), now=now,
                     note=progress.get("note"))
    if view.state == "stopped":  # killed: its running units were stopped with it, at its last sign of life
        view.ended = last_sign(study_dir, progress, units)
        for unit in units:
            unit.state = "interrupted" if unit.state == "running" else unit.state
    view.left = estimate_left(units, view.slots, now)
    return view


def last_sign(study_dir: Path, progress: dict, units: list[UnitView]) -> float:
    """When a study killed without a word last wrote: its progress file or a running unit's history."""
    files = [study_dir / PROGRESS_FILE]
    for entry, unit in zip(progress.get("units", []), units):  # `units` begins with the file's own
        if unit.state == "running" and entry.get("run_dir"):
            files.append(study_dir / entry["run_dir"] / "history.jsonl")
    return max((f.stat().st_mtime for f in files if f.exists()), default=progress.get("started") or time.time())


def view_folders(study_dir: Path) -> StudyView:
    """A study without a progress file: each run folder with a history.jsonl, done or stopped."""
    import yaml  # here: only an older study folder needs its run's config read

    units = []
    for history in sorted(Path(study_dir).rglob("history.jsonl")):
        run_dir = history.parent
        trained, seconds = history_facts(run_dir)
        done = (run_dir / "metrics.json").exists()
        try:
            epochs = int(yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))["train"]["epochs"])
        except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
            epochs = trained
        label = run_dir.relative_to(study_dir).as_posix()
        units.append(UnitView(label, label, "done" if done else "interrupted", epochs, trained, seconds))
    return StudyView(Path(study_dir), Path(study_dir).name, "unrecorded", units, now=time.time())


def read_study(study_dir: str | Path, now: float | None = None) -> StudyView:
    """Everything `cnnstudy status` shows, read from the study folder."""
    study_dir = Path(study_dir)
    progress = read_progress(study_dir)
    view = view_folders(study_dir) if progress is None else view_progress(study_dir, progress, now)
    holder = lock_holder(study_dir)
    if holder and (progress is None or (view.started or 0) < holder["since"]):  # begun, not recording yet
        view.state, view.pid, view.host, view.started, view.ended = \
            "preparing", holder["pid"], holder["host"], holder["since"], None
        if progress is None and trained_since(study_dir, view, holder["since"]):
            view.state = "running"  # under torchrun, which keeps no progress file: the run folders say it
    return view


def trained_since(study_dir: Path, view: StudyView, since: float) -> bool:
    """Whether a unit trained after `since` (the lock taken); the unfinished ones that did are running."""
    fresh = False
    for unit in view.units:
        history = study_dir / unit.label / "history.jsonl"
        if history.exists() and history.stat().st_mtime >= since:
            fresh = True
            unit.state = "running" if unit.state == "interrupted" else unit.state
    return fresh


def left_words(view: StudyView) -> str:
    """The estimate in words: "about 12 min left", "no estimate yet" or "nothing left"."""
    if view.total == view.count(*ENDED_UNIT):
        return "nothing left"
    if view.left is None:
        return "no estimate yet"
    words = format_duration(view.left)
    return f"{words} left" if words == "a few seconds" else f"about {words} left"


def session_of(study_dir: Path) -> tuple | None:
    """Which `cnnstudy run` of the study its progress file belongs to (pid, host, start), or None."""
    progress = read_progress(Path(study_dir))
    return None if progress is None else (progress.get("pid"), progress.get("host"), progress.get("started"))


def running_note(study_dir: Path) -> str | None:
    """The report's first line while its study is not finished (running, or stopped part-way), else
    None: a finished study, or a folder without a progress file."""
    progress = read_progress(Path(study_dir))
    if progress is None:
        return None
    view = view_progress(Path(study_dir), progress)
    if view.state == "finished":
        return None
    done = f"{view.count('done', 'skipped', 'pruned')} of {view.total} units done"
    at = time.strftime("%H:%M UTC", time.gmtime(view.now))
    status = f"`cnnstudy status {study_dir}`"
    if view.live:
        return (f"This study is still running: {done} at {at}; this report shows the finished units only. "
                f"{status} shows the rest.")
    return (f"This study did not finish ({view.state}): {done}; this report shows the finished units only. "
            f"The same `cnnstudy run` command continues it; {status} shows where it stopped.")
