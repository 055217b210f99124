"""Watching a study: the driver's progress.json through a real study (serial, --jobs, a sweep, a
failure, Ctrl-C), `cnnstudy status` read from hand-written files, the estimate's arithmetic, a
driver that is gone, --watch, the report's first line and the background report rebuilds."""
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cnnstudy.cli import main
from cnnstudy.fileio import read_json, write_json, write_jsonl
from cnnstudy.runner.execution import carry, live_report, units
from cnnstudy.runner.execution.executors import Parallel
from cnnstudy.runner.execution.recorder import ProgressRecorder
from cnnstudy.runner.planning.lock import StudyLock
from cnnstudy.runner.results.estimate import estimate_left, format_duration
from cnnstudy.runner.results.progress import UnitView, read_study, running_note
from cnnstudy.runner.study import run_study

from helpers import make_image_folder, write_study

PHASES = """
  - name: p1
    runs:
      - {name: base, model: cnn_slim, repeats: 2}
  - name: p2
    runs:
      - name: lr
        model: cnn_slim
        sweep:
          method: grid
          params: {train.lr: [0.002, 0.01]}
"""
LABELS = ["p1/base/r0", "p1/base/r1", "p2/lr.base", "p2/lr/t000", "p2/lr/t001", "p2/lr"]  # .base: the unswept setting


@pytest.fixture(scope="module")
def study_file(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("status")
    return write_study(tmp / "s.yaml", make_image_folder(tmp / "colors", per_class=8), PHASES)


def snapshots(study_dir, lines):
    """A log that keeps each line, and the progress file as it was when each "run k of N" line came."""
    seen = []

    def log(line):
        lines.append(line)
        if line.startswith("run "):
            seen.append((line, read_json(study_dir / "progress.json")))
    return log, seen


def states(progress):
    return {u["label"]: u["state"] for u in progress["units"]}


class FakeLive:
    """Stands in for the background rebuilds: counts what the driver asks of them."""
    made = []

    def __init__(self, study_dir):
        self.requests, self.closed, self.lasts = 0, False, 0
        FakeLive.made.append(self)

    def request(self):
        self.requests += 1

    def close(self):
        self.closed = True

    def last(self):
        self.lasts += 1


def test_a_serial_study_records_every_unit_and_says_run_k_of_n(study_file, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNSTUDY_LIVE_REPORT", "1")
    monkeypatch.setattr(carry, "LiveReport", FakeLive)
    lines = []
    log, seen = snapshots(tmp_path / "runs" / "tiny", lines)
    study_dir = run_study(study_file, ["train.epochs=2"], out_dir=tmp_path / "runs", log=log)
    live = FakeLive.made[-1]  # a rebuild asked after each finished run (not each trial), stopped at the end
    assert live.requests == 4 and live.closed and live.lasts == 0
    # no rebuild ran, yet the summary holds every run: the driver writes it once the units are done
    assert "| p2 | lr |" in (study_dir / "summary.md").read_text() and "lr.base" in (study_dir / "summary.csv").read_text()
    assert [line.split(":")[0] for line, _ in seen] == [f"run {k} of 6" for k in range(1, 7)]
    assert seen[0][0] == "run 1 of 6: p1/base/r0 (no estimate yet for the study)"
    assert all(line.endswith("left for the study)") for line, _ in seen[1:])
    second = seen[1][1]  # as r1 started: r0 done, r1 running, the sweep's units all still to draw
    assert states(second) == {"p1/base/r0": "done", "p1/base/r1": "running", "p2/lr.base": "queued"}
    assert {(w["what"], w["count"]) for w in second["waiting"]} == {
        ("trials still to draw", 2), ("the best setting's units, after the search", 1)}
    trial = seen[3][1]  # the first trial drawn: one left to draw
    assert states(trial)["p2/lr/t000"] == "running"
    assert [w["count"] for w in trial["waiting"] if w["what"] == "trials still to draw"] == [1]
    assert not [w for w in seen[5][1]["waiting"]]  # the confirmation known: nothing waits
    final = read_json(study_dir / "progress.json")
    assert final["state"] == "finished" and final["ended"] >= final["started"] and final["slots"] == 1
    assert states(final) == dict.fromkeys(LABELS, "done")
    assert all(u["trained"] == 2 and u["seconds"] > 0 and u["epochs"] == 2 for u in final["units"])
    assert running_note(study_dir) is None  # the report of a finished study has no such line
    trials = [line for line in lines if line.startswith("[")]  # a sweep's trial lines carry the estimate
    assert len(trials) == 2 and all("left" in line for line in trials[:1]) and trials[1].endswith("left")


def test_two_jobs_record_progress_in_the_driver(study_file, tmp_path, monkeypatch):
    lines = []
    study_dir = run_study(study_file, ["train.epochs=1"], out_dir=tmp_path / "runs", log=lines.append,
                          parallel=Parallel(jobs=2, threads=1))
    progress = read_json(study_dir / "progress.json")
    assert progress["slots"] == 2 and progress["executor"] == "local" and progress["pid"] == os.getpid()
    assert states(progress) == dict.fromkeys(LABELS, "done")
    finished = [line for line in lines if line.startswith("[") and "/6]" in line]  # the last unit is never a trial
    assert len(finished) == 4 and finished[-1].endswith("; nothing left")
    assert not [line for line in lines if line.startswith("run ")]  # the serial line is for one slot only
    # The real background rebuild, on this finished study: `cnnstudy report` in a child, at low priority.
    before = (study_dir / "report.md").stat().st_mtime_ns
    live = live_report.LiveReport(study_dir)
    live.request()
    while live.process is None:
        time.sleep(0.05)
    assert live.process.wait(120) == 0, (study_dir / live_report.LOG_FILE).read_text()
    assert (study_dir / "report.md").stat().st_mtime_ns > before
    live.close()
    # A rebuild that a new `cnnstudy run` overtook (its progress file now another run's) writes nothing.
    from cnnstudy.report import report as report_module

    def overtaken(folder):
        write_json(folder / "progress.json", {**read_json(folder / "progress.json"), "pid": 1, "started": time.time()})
        return None
    monkeypatch.setattr(report_module, "running_note", overtaken)
    before = (study_dir / "report.md").stat().st_mtime_ns
    report_module.build_report(study_dir)
    assert (study_dir / "report.md").stat().st_mtime_ns == before


@pytest.mark.parametrize("stop", [RuntimeError("out of memory"), KeyboardInterrupt()])
def test_a_failed_or_interrupted_study_says_so(study_file, tmp_path, monkeypatch, stop):
    monkeypatch.setenv("CNNSTUDY_LIVE_REPORT", "1")
    monkeypatch.setattr(carry, "LiveReport", FakeLive)
    real = units.execute_run

    def fails_second(plan, *args, **kwargs):
        if plan.label == "p1/base/r1":
            raise stop
        return real(plan, *args, **kwargs)

    monkeypatch.setattr(units, "execute_run", fails_second)
    with pytest.raises(type(stop)):
        run_study(study_file, ["train.epochs=1"], out_dir=tmp_path / "runs", log=lambda _: None)
    study_dir = tmp_path / "runs" / "tiny"
    progress = read_json(study_dir / "progress.json")
    failed = isinstance(stop, RuntimeError)
    assert progress["state"] == ("failed" if failed else "interrupted")
    assert states(progress) == {"p1/base/r0": "done", "p1/base/r1": "failed" if failed else "interrupted",
                                "p2/lr.base": "queued"}
    if failed:
        assert progress["note"] == "RuntimeError: out of memory" == progress["units"][1]["note"]
    note = running_note(study_dir)
    assert note.startswith(f"This study did not finish ({progress['state']}): 1 of 6 units done;")
    # one last rebuild, so that the report says so instead of "still running"; the summary is written
    assert FakeLive.made[-1].lasts == 1 and "| p1 | base | 0 |" in (study_dir / "summary.md").read_text()
    out = subprocess.run([sys.executable, "-m", "cnnstudy", "status", str(study_dir)], capture_output=True, text=True)
    assert out.returncode == 0 and ("failed: RuntimeError: out of memory" if failed else "interrupted") in out.stdout


# --- status from hand-written files -------------------------------------------------------------------

def unit(label, state, epochs=4, **extra):
    run = label.rsplit("/", 1)[0] if label.count("/") > 1 else label
    return {"label": label, "run": run, "run_dir": label, "state": state, "epochs": epochs, "started": None,
            "finished": None, "note": None, **extra}


def history(study_dir, label, seconds):
    write_jsonl(study_dir / label / "history.jsonl", [{"epoch": k + 1, "seconds": s} for k, s in enumerate(seconds)])


def hand_written(study_dir, state="running", pid=None, host=None, now=None):
    """Four units of a study with 2 slots: done, running at epoch 2 of 4, failed, queued; and 3 trials to draw."""
    now = now or time.time()
    (study_dir / "study.yaml").parent.mkdir(parents=True, exist_ok=True)
    (study_dir / "study.yaml").write_text("name: tiny\n")
    history(study_dir, "p1/a/r0", [10.0, 10.0, 10.0, 10.0])
    history(study_dir, "p1/a/r1", [10.0])
    write_json(study_dir / "progress.json", {
        "format": 1, "study": "tiny", "state": state, "pid": pid or os.getpid(), "host": host or socket.gethostname(),
        "started": now - 100, "ended": None, "slots": 2, "executor": "local", "note": None,
        "units": [unit("p1/a/r0", "done", started=now - 100, finished=now - 52, trained=4, seconds=40.0, before=0.0),
                  unit("p1/a/r1", "running", started=now - 15, before=0.0),
                  unit("p1/b", "failed", started=now - 100, finished=now - 90, note="ValueError: bad"),
                  unit("p2/c", "queued", epochs=2)],
        "waiting": [{"run": "p3/s", "what": "trials still to draw", "count": 3, "epochs": 1}]})
    return now


def test_status_shows_each_unit_and_the_estimate(tmp_path, capsys):
    study_dir = tmp_path / "tiny"
    now = hand_written(study_dir)
    view = read_study(study_dir, now=now)
    # Rates: 10 s an epoch everywhere; a unit's fixed cost: r0's 48 s wall less its 40 s of epochs = 8 s.
    # r1: 40 + 8 expected, 15 spent: 33 s left. c: 2 epochs + 8 = 28; each trial 1 epoch + 8 = 18.
    # Two slots: [33, 0] -> c on the free one [33, 28] -> trials at 28, 33, 46 -> [51, 64]: 64 s.
    assert view.left == pytest.approx(64.0)
    assert main(["status", str(study_dir)]) == 0
    out = capsys.readouterr().out
    assert "tiny: running (pid" in out and "2 unit(s) at once (local)" in out
    assert "1 of 7 units done; 1 running; 4 queued; 1 failed; about 1 min left\n" in out
    assert "the estimate: from 5 measured epoch(s), 2 at once; 4 unit(s) of runs not measured yet counted at " \
        "the study's mean epoch\n" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(("p1/", "p2/", "p3/"))}
    assert "running: epoch 2 of 4" in rows["p1/a/r1"] and " 1/4 " in rows["p1/a/r1"]
    assert "done" in rows["p1/a/r0"] and " 4/4 " in rows["p1/a/r0"] and "0:48" in rows["p1/a/r0"]
    assert "failed" in rows["p1/b"] and "ValueError: bad" in rows["p1/b"]
    assert "queued" in rows["p2/c"] and "trials still to draw" in rows["p3/s:"] and "3 × 0/1" in rows["p3/s:"]
    assert running_note(study_dir).startswith("This study is still running: 1 of 7 units done at ")


def test_estimate_arithmetic():
    done = UnitView("a/r0", "a", "done", 2, 2, 10.0, started=0.0, finished=12.0)  # 5 s an epoch, 2 s fixed cost
    running = UnitView("b", "b", "running", 4, 1, 6.0, started=94.0)  # 6 s an epoch, its own rate
    queued = [UnitView("c", "c", "queued", 3), UnitView("a/r1", "a", "queued", 1)]
    # b: 4 * 6 + 2 expected, 6 spent -> 20 (more than its 3 epochs left, 18). c: study rate 16/3 a
    # epoch, 3 epochs + 2 = 18. a/r1: its run's 5 s + 2 = 7. Slots [20, 0] -> c: [20, 18] -> a/r1 at 18: 25.
    assert estimate_left([done, running, *queued], 2, now=100.0) == pytest.approx(25.0)
    assert estimate_left([done, running, *queued], 1, now=100.0) == pytest.approx(20 + 18 + 7)
    # A run's fixed cost is its least, and a slot's first unit (a/r2, 11 s: it also started a worker) is
    # left out once a later one is measured: 2 s.
    first = UnitView("a/r2", "a", "done", 2, 2, 10.0, started=-1.0, finished=20.0)
    assert estimate_left([first, done, UnitView("a/r3", "a", "queued", 1)], 1, now=0.0) == pytest.approx(5 + 2)
    # The first unit on each slot counts only until a later one is measured: 11 s, alone.
    assert estimate_left([first, UnitView("a/r3", "a", "queued", 1)], 1, now=0.0) == pytest.approx(5 + 11)
    assert estimate_left([UnitView("c", "c", "queued", 3)], 2, now=0.0) is None  # nothing measured yet
    assert estimate_left([done], 2, now=0.0) == 0.0
    # A sweep's trials still to draw take its base setting's measured rate, not the study's mean.
    from cnnstudy.runner.results.estimate import BASE_SUFFIX
    from cnnstudy.runner.search.sweep import BASE_SUFFIX as SWEEP_BASE

    base = UnitView("p/s.base/r0", "p/s.base", "done", 2, 2, 2.0, started=0.0, finished=2.0)  # 1 s an epoch
    slow = UnitView("p/big", "p/big", "done", 2, 2, 38.0, started=0.0, finished=38.0)  # 19 s an epoch
    trials = UnitView("p/s: trials still to draw", "p/s", "queued", 5, count=4)
    assert BASE_SUFFIX == SWEEP_BASE and estimate_left([base, slow, trials], 1, now=0.0) == pytest.approx(4 * 5 * 1.0)
    # Trials the pruner stopped after 1 and 3 of their 5 epochs: the ones to draw are expected to train 40 %.
    pruned = [UnitView(f"p/s/t00{k}", "p/s", "pruned", 5, n, float(n), started=0.0, finished=float(n))
              for k, n in enumerate((1, 3))]
    assert estimate_left([base, slow, *pruned, trials], 1, now=0.0) == pytest.approx(4 * 5 * 0.4 * 1.0)
    assert [format_duration(s) for s in (4, 36, 59, 754, 3 * 3600 + 300, 50 * 3600)] == \
        ["a few seconds", "40 s", "1 min", "13 min", "3 h 05 min", "2 d 2 h"]


def test_a_study_whose_driver_is_gone_reads_stopped(tmp_path, capsys):
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    hand_written(tmp_path / "tiny", pid=ended.pid)
    assert read_study(tmp_path / "tiny").state == "stopped"
    assert main(["status", str(tmp_path / "tiny")]) == 0
    assert "stopped (not running): its process" in capsys.readouterr().out
    assert running_note(tmp_path / "tiny").startswith("This study did not finish (stopped)")
    hand_written(tmp_path / "far", pid=ended.pid, host="another-host")  # cannot be told from here
    assert read_study(tmp_path / "far").state == "running"


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="a held lock is told from /proc/locks (Linux)")
def test_a_study_whose_lock_is_taken_reads_preparing_until_its_run_records(tmp_path):
    study_dir = tmp_path / "tiny"
    hand_written(study_dir, state="finished", now=time.time() - 3600)  # an earlier run's record
    lock = StudyLock(study_dir)
    lock.acquire()
    try:
        view = read_study(study_dir)
        assert view.state == "preparing" and view.live and view.pid == os.getpid() and view.started > time.time() - 5
        recorder = ProgressRecorder(study_dir, "tiny", 1, "serial")
        recorder.save()  # the run records its units: running, its time counted from the lock on
        assert read_study(study_dir).state == "running" and recorder.data["started"] == view.started
        recorder.end("finished")  # the study's last report is built under the lock: still finished
        assert read_study(study_dir).state == "finished"
    finally:
        lock.release()


def test_a_study_under_torchrun_reads_running_from_its_run_folders(tmp_path):
    study_dir = tmp_path / "tiny"
    (study_dir / "study.yaml").parent.mkdir(parents=True)
    (study_dir / "study.yaml").write_text("name: tiny\n")
    lock = StudyLock(study_dir)
    lock.acquire()  # torchrun's rank 0 holds the lock and keeps no progress file
    try:
        assert read_study(study_dir).state == "preparing"
        history(study_dir, "p1/a", [10.0])  # a run trains
        view = read_study(study_dir)
        assert view.state == "running" and [u.state for u in view.units] == ["running"]
    finally:
        lock.release()


def test_a_folder_that_is_not_a_study_exits_2_naming_the_fix(tmp_path, capsys):
    hand_written(tmp_path / "runs" / "tiny", state="finished")
    assert main(["status", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'runs'} is not a study folder" in err
    assert f"the studies in it: {tmp_path / 'runs' / 'tiny'}" in err
    assert main(["status", str(tmp_path / "nowhere")]) == 2


def test_watch_ends_when_the_study_does(tmp_path, capsys):
    study_dir = tmp_path / "tiny"
    hand_written(study_dir, state="finished")
    started = time.monotonic()
    assert main(["status", str(study_dir), "--watch", "--interval", "5"]) == 0  # finished: no redraw awaited
    assert time.monotonic() - started < 4 and "tiny: finished" in capsys.readouterr().out
    hand_written(study_dir)  # running, by this (live) process; it finishes a moment later

    def finish():
        time.sleep(0.4)
        progress = read_json(study_dir / "progress.json")
        write_json(study_dir / "progress.json", {**progress, "state": "finished", "ended": time.time()})

    threading.Thread(target=finish).start()
    assert main(["status", str(study_dir), "--watch", "--interval", "0.05"]) == 0
    assert "tiny: finished" in capsys.readouterr().out


def test_a_study_without_a_progress_file_is_read_from_its_run_folders(tmp_path, capsys):
    study_dir = tmp_path / "old"
    study_dir.mkdir()
    (study_dir / "study.yaml").write_text("name: old\n")
    history(study_dir, "p1/a", [3.0, 3.0])
    write_json(study_dir / "p1" / "a" / "metrics.json", {})
    history(study_dir, "p1/b", [3.0])
    (study_dir / "p1" / "b" / "config.yaml").write_text("train: {epochs: 5}\n")
    assert main(["status", str(study_dir)]) == 0
    out = capsys.readouterr().out
    assert "progress is not recorded in this folder" in out and "1 of 2 units done; 1 interrupted" in out
    assert " 1/5 " in next(line for line in out.splitlines() if line.startswith("p1/b"))
    assert running_note(study_dir) is None


# --- background report rebuilds ---------------------------------------------------------------------------

def test_background_rebuilds_are_coalesced_and_stopped(tmp_path, monkeypatch):
    # Each "rebuild" takes 0.5 s and leaves a mark: four requests while the first runs make one more, not four.
    monkeypatch.setattr(live_report, "CHILD", "import sys, time; time.sleep(0.5); "
                                              "open(sys.argv[2] + '/builds', 'a').write('x')")
    live = live_report.LiveReport(tmp_path)
    live.request()
    while live.process is None:
        time.sleep(0.01)
    for _ in range(4):
        live.request()
    deadline = time.monotonic() + 20
    while (not (tmp_path / "builds").exists() or len((tmp_path / "builds").read_text()) < 2) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert (tmp_path / "builds").read_text() == "xx" and live.started == 2
    monkeypatch.setattr(live_report, "CHILD", "import time; time.sleep(60)")
    live.request()
    time.sleep(0.2)
    started = time.monotonic()
    live.close()  # the rebuild in progress is stopped, and no other starts
    assert time.monotonic() - started < 3 and live.process.poll() is not None
    live.request()
    assert live.started == 3


def test_the_live_report_is_on_unless_turned_off(monkeypatch):
    monkeypatch.delenv("CNNSTUDY_LIVE_REPORT")
    assert live_report.live_report_enabled()
    for off in ("0", "false", "off"):
        monkeypatch.setenv("CNNSTUDY_LIVE_REPORT", off)
        assert not live_report.live_report_enabled()
    env = live_report.child_environment()
    assert env["CUDA_VISIBLE_DEVICES"] == "" and Path(env["PYTHONPATH"].split(os.pathsep)[0]) == \
        Path(live_report.__file__).resolve().parents[3]


def test_status_loads_no_torch(tmp_path):
    hand_written(tmp_path / "tiny", state="finished")
    code = f"import sys; from cnnstudy.cli import main; main(['status', {str(tmp_path / 'tiny')!r}]); " \
           "print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("False")
