"""A run killed at any instant resumes to exactly the result of an uninterrupted one (CPU, fixed seed)."""
import os
import signal
import subprocess
import sys
import time

import numpy as np

from cnnstudy.fileio import read_jsonl
from cnnstudy.study import run_study

from helpers import make_image_folder, write_study

PHASES = """
  - name: p3
    runs:
      - {name: reg, model: cnn_regularized, augment: seed, train: {epochs: 4}}
"""


def comparable(study_dir):
    run_dir = study_dir / "p3" / "reg"
    history = [{k: v for k, v in row.items() if k != "seconds"} for row in read_jsonl(run_dir / "history.jsonl")]
    predictions = dict(np.load(run_dir / "predictions.npz"))
    return history, predictions


def assert_same(a, b):
    assert a[0] == b[0]
    assert a[1].keys() == b[1].keys()
    for key in a[1]:
        np.testing.assert_array_equal(a[1][key], b[1][key])


def test_two_seeded_runs_are_identical_and_sigkill_resume_matches(tmp_path):
    data = make_image_folder(tmp_path / "colors", per_class=40, size=64)
    study = write_study(tmp_path / "s.yaml", data, PHASES)
    first = run_study(study, out_dir=tmp_path / "a", log=lambda _: None)
    second = run_study(study, out_dir=tmp_path / "b", log=lambda _: None)
    assert_same(comparable(first), comparable(second))

    command = [sys.executable, "-m", "cnnstudy", "run", str(study), "--out", str(tmp_path / "c")]
    history = tmp_path / "c" / "tiny" / "p3" / "reg" / "history.jsonl"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (history.exists() and len(read_jsonl(history)) >= 2) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)  # in the middle of epoch 3 (or its checkpoint writes)
    process.wait()
    assert not (history.parent / "metrics.json").exists(), "the run finished before it could be killed"
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert_same(comparable(tmp_path / "c" / "tiny"), comparable(first))


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path):
    data = make_image_folder(tmp_path / "colors", per_class=40, size=64)
    study = write_study(tmp_path / "s.yaml", data, PHASES)
    history = tmp_path / "runs" / "tiny" / "p3" / "reg" / "history.jsonl"
    command = [sys.executable, "-m", "cnnstudy", "run", str(study), "--out", str(tmp_path / "runs")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not history.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-2000:]
    assert "Run the same command again to resume" in stderr
    assert (history.parent / "last.pt").exists() and not (history.parent / "metrics.json").exists()
