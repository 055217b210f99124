"""The summary and report rebuilt in the background as units finish, so that both fill in while the
study runs and training never waits for them.

Each rebuild is `cnnstudy report <study>` in a child process at low priority (nice 10, one thread,
no GPU), its output in <study>/.live-report.log. At most one runs at a time: a unit that finishes
while one runs asks for one more, started when it ends (however many asked meanwhile). When the
study ends the one running is stopped (SIGTERM: it finishes the file it is writing), since the
study's own last report follows at once; a study that stops part-way (Ctrl-C, a failure) starts one
last rebuild that outlives it, so that the report says where the study stopped instead of "still
running". CNNSTUDY_LIVE_REPORT=0 turns it off (the test suite does): the summary is then rebuilt in
the driver after each run, as before.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

ENV = "CNNSTUDY_LIVE_REPORT"
LOG_FILE = ".live-report.log"
STOP_GRACE_S = 5.0  # a stopped rebuild finishes the file in progress; then it is killed
# The child lowers its own priority: a preexec_fn would be unsafe in this threaded process.
CHILD = "import os; os.nice(10); from cnnstudy.cli import console; console()"


def live_report_enabled() -> bool:
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def child_environment() -> dict[str, str]:
    """The driver's environment, with this cnnstudy importable and the rebuild kept small."""
    package_root = str(Path(__file__).resolve().parents[3])  # src/ of a checkout, site-packages installed
    paths = [package_root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "CUDA_VISIBLE_DEVICES": "", "TQDM_DISABLE": "1"}


def rebuild_detached(study_dir: Path) -> None:
    """One rebuild left to finish on its own, where rebuilds are on: the study's last report was
    interrupted, and the one on disk was built while the study still ran."""
    if live_report_enabled():
        LiveReport(study_dir).last()


class LiveReport:
    """Background rebuilds of one study's report, one at a time, coalesced."""

    def __init__(self, study_dir: Path) -> None:
        self.study_dir = Path(study_dir)
        self.lock = threading.Lock()
        self.dirty = self.closed = False
        self.process: subprocess.Popen | None = None
        self.thread: threading.Thread | None = None
        self.started = 0  # rebuilds started, for tests and the log

    def request(self) -> None:
        """A unit finished: rebuild now, or once the rebuild in progress ends. Returns at once."""
        with self.lock:
            if self.closed:
                return
            self.dirty = True
            if self.thread is None:
                self.thread = threading.Thread(target=self._loop, name="cnnstudy-live-report", daemon=True)
                self.thread.start()

    def _loop(self) -> None:
        while True:
            with self.lock:  # decided under the lock: a request either sees this thread or starts another
                if self.closed or not self.dirty:
                    self.thread = None
                    return
                self.dirty = False
                self.process = self._spawn()
            self.process.wait()

    def _spawn(self) -> subprocess.Popen:
        self.started += 1
        with open(self.study_dir / LOG_FILE, "w", encoding="utf-8") as log:
            return subprocess.Popen([sys.executable, "-c", CHILD, "report", str(self.study_dir)],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    env=child_environment(), start_new_session=True)  # Ctrl-C is the driver's

    def last(self) -> None:
        """After `close`, when the study stopped part-way: one more rebuild, left to finish on its own
        (its own session: the Ctrl-C that stopped the study does not reach it)."""
        self._spawn()

    def close(self) -> None:
        """No more rebuilds; the one running is stopped (the study's own report follows)."""
        with self.lock:
            self.closed = True
            process, thread = self.process, self.thread
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if thread is not None:
            thread.join(STOP_GRACE_S)
