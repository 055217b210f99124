"""The study's progress file, <study>/progress.json, written by the driver's scheduler alone (so it
holds under `--jobs` and Ray, whose workers never touch it), atomically, at every change of a unit's
state. `cnnstudy status`, the console's "run k of N" lines and the report read it back through
results/progress.py.

What it holds: the driver (pid, host), its slots, when the study started and ended and how, and
every unit known so far, in study order, with its state, times and planned epochs. A sweep's trials
are known only as they are drawn: until then its `waiting` entry counts them (and the confirmation
repeats that follow the search).
"""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from ...fileio import write_json
from ..planning.lock import lock_file_holder
from ..results.progress import PROGRESS_FILE, StudyView, history_facts, left_words, view_progress

FORMAT = 1


class ProgressRecorder:
    """The driver's record of every unit, saved whole after each change."""

    def __init__(self, study_dir: Path, study_name: str, slots: int, executor: str) -> None:
        self.study_dir = study_dir
        self.data = {"format": FORMAT, "study": study_name, "state": "running", "pid": os.getpid(),
                     "host": socket.gethostname(), "started": time.time(), "ended": None, "slots": slots,
                     "executor": executor, "units": [], "waiting": []}
        holder = lock_file_holder(study_dir)
        if holder and holder["pid"] == os.getpid():  # the study's time counts its preparation, from the lock on
            self.data["started"] = holder["since"]
        self.units: dict[str, dict] = {}

    def save(self) -> None:
        write_json(self.study_dir / PROGRESS_FILE, self.data)

    def add(self, label: str, run: str, run_dir: Path | None, epochs: int, state: str = "queued",
            note: str | None = None) -> None:
        """A unit the study will run (once: a unit known already is left as it is)."""
        if label in self.units:
            return
        folder = None if run_dir is None else os.path.relpath(run_dir, self.study_dir)
        entry = {"label": label, "run": run, "run_dir": folder, "state": state, "epochs": epochs,
                 "started": None, "finished": None, "note": note}
        self.units[label] = entry
        self.data["units"].append(entry)

    def waiting(self, run: str, what: str, count: int, epochs: int) -> None:
        """`count` units of `run` not known yet (`what`: e.g. "trials still to draw"); 0 drops them."""
        rows = self.data["waiting"]
        rows[:] = [row for row in rows if (row["run"], row["what"]) != (run, what)]
        if count > 0:
            rows.append({"run": run, "what": what, "count": count, "epochs": epochs})

    def start(self, label: str) -> None:
        entry = self.units[label]
        trained, seconds = self._history(entry)
        entry.update(state="running", started=time.time(), before=seconds, trained=trained)
        self.save()

    def finish(self, label: str, state: str, note: str | None = None) -> None:
        """A unit ended: done, skipped, pruned or failed; its epochs and their seconds are kept here,
        so that a reader need not open its history again."""
        entry = self.units[label]
        trained, seconds = self._history(entry)
        entry.update(state=state, finished=time.time(), trained=trained, seconds=seconds, note=note)
        self.save()

    def block(self, run: str, reason: str) -> None:
        """A run that will not run (its source diverged or was not run): its units and waiting ones."""
        entries = [e for e in self.data["units"] if e["run"] == run and e["state"] == "queued"]
        if not entries:
            self.add(run, run, None, 0, "not run", reason)
        for entry in entries:
            entry.update(state="not run", note=reason)
        self.data["waiting"] = [row for row in self.data["waiting"] if row["run"] != run]
        self.save()

    def end(self, state: str, note: str | None = None) -> None:
        """The study ended (finished, failed or interrupted); a unit still running was stopped."""
        for entry in self.data["units"]:
            if entry["state"] == "running":
                entry["state"] = "interrupted"
        self.data.update(state=state, ended=time.time(), note=note)
        if state == "finished":
            self.data["waiting"] = []
        self.save()

    def view(self) -> StudyView:
        return view_progress(self.study_dir, self.data)

    def left_words(self) -> str:
        """The study's estimate in words, for the console."""
        return left_words(self.view())

    def _history(self, entry: dict) -> tuple[int, float]:
        if entry["run_dir"] is None:
            return 0, 0.0
        return history_facts(self.study_dir / entry["run_dir"])


def finished_state(result: dict) -> tuple[str, str | None]:
    """A unit's state and note in the progress file, from its result."""
    if result.get("action") == "skip":
        return "skipped", None
    if result.get("state") == "complete":
        diverged = result.get("diverged")
        return "done", (f"diverged at epoch {diverged['epoch']}" if diverged else None)
    return result.get("state", "failed"), result.get("error")

