"""--jobs and --executor ray: the same units, the same numbers as a serial run with the same threads."""
import importlib.util

import numpy as np
import pytest

from cnnstudy.config import StudyError
from cnnstudy.fileio import read_json, read_jsonl
from cnnstudy.runner.execution.executors import Parallel
from cnnstudy.runner.study import run_study

from helpers import make_image_folder, write_study

PHASES = """
  - name: p1
    runs:
      - {name: base, model: cnn_slim, repeats: 2}
      - {name: reg, model: cnn_regularized, augment: seed}
  - name: p2
    runs:
      - {name: head, model: {name: cnn_slim, init_from: p1/base, freeze: head}}
"""
RUNS = ["p1/base/r0", "p1/base/r1", "p1/reg", "p2/head"]
QUIET = {"log": lambda _: None}


def numbers(study_dir):
    found = {}
    for run in RUNS:
        folder = study_dir / run
        history = [{k: v for k, v in row.items() if k != "seconds"} for row in read_jsonl(folder / "history.jsonl")]
        with np.load(folder / "predictions.npz") as arrays:
            found[run] = (read_json(folder / "metrics.json")["test"]["accuracy"], history, arrays["test_probs"])
    return found


def assert_same(a, b):
    assert a.keys() == b.keys()
    for run in a:
        assert a[run][0] == b[run][0] and a[run][1] == b[run][1], run
        np.testing.assert_array_equal(a[run][2], b[run][2])


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("parallel")
    data = make_image_folder(tmp / "colors", per_class=12)
    study = write_study(tmp / "s.yaml", data, PHASES)
    study_dir = run_study(study, out_dir=tmp / "serial", parallel=Parallel(threads=1), **QUIET)
    return study, numbers(study_dir), tmp


def test_two_jobs_give_the_serial_numbers(serial):
    study, expected, tmp = serial
    lines = []
    study_dir = run_study(study, out_dir=tmp / "jobs", parallel=Parallel(jobs=2, threads=1), log=lines.append)
    assert_same(numbers(study_dir), expected)
    assert "local: 2 unit(s) at once, 1 thread(s) each" in lines[2]  # after the layout and the data check
    assert (study_dir / "p1" / "reg" / "log.txt").read_text().startswith("== p1/reg: cnn_regularized")
    finished = [line for line in lines if line.startswith("[")]  # one line per unit, as each finished
    assert len(finished) == 4 and all("test acc " in line for line in finished)


def test_ray_gives_the_serial_numbers_and_checks_the_shared_folder(serial):
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed (pip install 'cnnstudy[ray]')")
    import ray

    from cnnstudy.runner.execution.ray_executor import check_shared_storage

    study, expected, tmp = serial
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning")
    try:
        lines = []
        study_dir = run_study(study, out_dir=tmp / "ray", parallel=Parallel(threads=1, executor="ray"),
                              log=lines.append)
        assert_same(numbers(study_dir), expected)
        assert any(line.startswith("Ray: 1 node(s), 2 CPUs") for line in lines)
        assert not list(study_dir.glob(".ray-probe-*"))
        with pytest.raises(StudyError, match="is not shared with every Ray node"):
            check_shared_storage(ray, tmp / "not-there")
    finally:
        ray.shutdown()


def test_torchrun_and_jobs_do_not_mix(tmp_path):
    from cnnstudy.training.distributed import Dist

    study = write_study(tmp_path / "s.yaml", make_image_folder(tmp_path / "colors", per_class=4), PHASES)
    with pytest.raises(StudyError, match="use one of them"):
        run_study(study, out_dir=tmp_path / "runs", dist=Dist(0, 2, 0, 2), parallel=Parallel(jobs=2), **QUIET)


def test_sigterm_stops_every_worker_and_the_same_command_continues(serial):
    """SIGTERM to the process group, as a scheduler sends it (Ctrl-C takes the same path in the driver:
    Terminated is a KeyboardInterrupt; test_resume checks Ctrl-C's own message)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    study, expected, tmp = serial
    out = tmp / "terminated"
    command = [sys.executable, "-m", "cnnstudy", "run", str(study), "--out", str(out), "--jobs", "2", "--threads", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # its own process group, as a terminal's job
    deadline = time.monotonic() + 180
    while not list(out.glob("tiny/p1/*/last.pt")) + list(out.glob("tiny/p1/*/*/last.pt")):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGTERM)  # driver and workers alike
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr[-2000:]
    assert "terminated (SIGTERM)" in stderr and "Traceback" not in stderr, stderr[-3000:]  # idle workers go quietly
    assert "leaked semaphore" not in stderr, stderr[-3000:]  # no worker left tqdm's lock behind
    deadline = time.monotonic() + 30  # the group's last processes (workers, resource tracker) go at once
    while subprocess.run(["pgrep", "-g", str(process.pid)], capture_output=True).stdout:
        assert time.monotonic() < deadline, "a worker outlived the interrupted study"
        time.sleep(0.2)
    assert not (out / "tiny" / "p2" / "head" / "metrics.json").exists()
    run_study(study, out_dir=out, parallel=Parallel(threads=1), **QUIET)  # serially: the same numbers again
    assert_same(numbers(out / "tiny"), expected)


def busy_unit(flag: str) -> None:
    """A unit that never ends on its own (a worker's SIGTERM is its only way out)."""
    import time
    from pathlib import Path

    Path(flag).touch()
    while True:
        time.sleep(0.01)


def test_an_interrupted_worker_exits_instead_of_waiting_for_more_work(tmp_path):
    """A unit that hears SIGTERM unwinds and its worker exits (143); returning to the pool, it would wait for
    work that never comes, until killed after the grace period (-9)."""
    import time

    from cnnstudy.runner.execution.executors import LocalExecutor

    executor = LocalExecutor(1, 1)
    executor.submit(busy_unit, str(tmp_path / "started"))
    deadline = time.monotonic() + 120
    while not (tmp_path / "started").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    processes = list(executor.pool._processes.values())
    executor.close(interrupted=True)
    assert [process.exitcode for process in processes] == [143]
