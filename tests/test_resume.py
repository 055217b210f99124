"""A run killed at any instant resumes to exactly the result of an uninterrupted one (CPU, fixed seed)."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

from cnnstudy.fileio import read_jsonl
from cnnstudy.runner.study import run_study

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
    assert_same(killed_and_resumed(study, tmp_path / "c"), comparable(first))


# A recipe with state beyond Adam's: the schedule (warmup, cosine), the weights' average, mixing draws.
RECIPE = """
  - name: p3
    runs:
      - {name: reg, model: cnn_regularized, augment: {policy: trivialaugment, mixup: 0.2, cutmix: 1.0},
         train: {epochs: 4, optimizer: adamw, weight_decay: 0.05, schedule: cosine, warmup_epochs: 1, ema: 0.9}}
"""


def test_sigkill_resume_matches_with_cosine_ema_and_mixup(tmp_path):
    data = make_image_folder(tmp_path / "colors", per_class=40, size=64)
    study = write_study(tmp_path / "s.yaml", data, RECIPE)
    first = run_study(study, out_dir=tmp_path / "a", log=lambda _: None)
    assert_same(killed_and_resumed(study, tmp_path / "c"), comparable(first))


def killed_and_resumed(study, out):
    """The study run by the command line, killed in the middle of epoch 3, then run again."""
    command = [sys.executable, "-m", "cnnstudy", "run", str(study), "--out", str(out)]
    history = out / "tiny" / "p3" / "reg" / "history.jsonl"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (history.exists() and len(read_jsonl(history)) >= 2) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)  # in the middle of epoch 3 (or its checkpoint writes)
    process.wait()
    assert not (history.parent / "metrics.json").exists(), "the run finished before it could be killed"
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return comparable(out / "tiny")


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path):
    data = make_image_folder(tmp_path / "colors", per_class=40, size=64)
    study = write_study(tmp_path / "s.yaml", data, PHASES)
    history = tmp_path / "runs" / "tiny" / "p3" / "reg" / "history.jsonl"
    command = [sys.executable, "-m", "cnnstudy", "run", str(study), "--out", str(tmp_path / "runs")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (history.parent / "last.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-2000:]
    assert "Run the same command again to resume" in stderr
    assert (history.parent / "last.pt").exists() and not (history.parent / "metrics.json").exists()


KILLER = """
import os, signal, sys
from pathlib import Path
import cnnstudy.models.checkpoint as checkpoint

study, out, epoch, after = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
write_jsonl, save_checkpoint = checkpoint.write_jsonl, checkpoint.save_checkpoint

def history_then_die(path, rows):
    write_jsonl(path, rows)
    if after == "history" and len(rows) == epoch:
        os.kill(os.getpid(), signal.SIGKILL)

def checkpoint_then_die(path, state):
    save_checkpoint(path, state)
    if after == "last.pt" and Path(path).name == "last.pt" and state["epoch"] == epoch:
        os.kill(os.getpid(), signal.SIGKILL)

checkpoint.write_jsonl, checkpoint.save_checkpoint = history_then_die, checkpoint_then_die
from cnnstudy.runner.study import run_study
run_study(study, out_dir=out, log=lambda _: None)
"""


def test_sigkill_between_the_history_and_checkpoint_writes_resumes_to_the_same_result(tmp_path):
    data = make_image_folder(tmp_path / "colors", per_class=12, size=48)
    study = write_study(tmp_path / "s.yaml", data, PHASES.replace("epochs: 4", "epochs: 3"))
    reference = comparable(run_study(study, out_dir=tmp_path / "ref", log=lambda _: None))
    (tmp_path / "killer.py").write_text(KILLER)
    for case, (epoch, after) in enumerate([(3, "history"), (2, "history"), (3, "last.pt")]):
        out = tmp_path / f"k{case}"
        killed = subprocess.run([sys.executable, str(tmp_path / "killer.py"), str(study), str(out), str(epoch), after])
        assert killed.returncode == -signal.SIGKILL
        run_dir = out / "tiny" / "p3" / "reg"
        rows = read_jsonl(run_dir / "history.jsonl")
        if after == "last.pt":  # the order older versions wrote in: the history one epoch short of last.pt
            (run_dir / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:-1]))
        else:
            assert len(rows) == epoch  # the history claims an epoch that last.pt does not
        run_study(study, out_dir=out, log=lambda _: None)
        assert_same(comparable(out / "tiny"), reference)


TERMINATOR = """
import os, signal, sys
from pathlib import Path
import cnnstudy.fileio as fileio
from cnnstudy.cli import main

study, out = sys.argv[1], sys.argv[2]
real_replace, seen = os.replace, []

def replace_with_sigterm_inside(src, dst):
    if Path(dst).name == "last.pt":
        seen.append(dst)
        if len(seen) == 2:  # epoch 2's last.pt: SIGTERM arrives in the middle of its write
            os.kill(os.getpid(), signal.SIGTERM)
    real_replace(src, dst)

fileio.os.replace = replace_with_sigterm_inside
sys.exit(main(["run", study, "--out", out]))
"""


def test_sigterm_finishes_the_write_in_progress_exits_143_and_resumes(tmp_path):
    import torch

    data = make_image_folder(tmp_path / "colors", per_class=12, size=48)
    study = write_study(tmp_path / "s.yaml", data, PHASES.replace("epochs: 4", "epochs: 3"))
    reference = comparable(run_study(study, out_dir=tmp_path / "ref", log=lambda _: None))
    (tmp_path / "term.py").write_text(TERMINATOR)
    done = subprocess.run([sys.executable, str(tmp_path / "term.py"), str(study), str(tmp_path / "t")],
                          capture_output=True, text=True)
    assert done.returncode == 143, done.stderr[-2000:]
    assert "terminated (SIGTERM): every file is whole" in done.stderr and str(tmp_path / "t" / "tiny") in done.stderr
    run_dir = tmp_path / "t" / "tiny" / "p3" / "reg"
    assert torch.load(run_dir / "last.pt", weights_only=True)["epoch"] == 2  # the write was finished
    assert not list(run_dir.rglob("*.tmp")) and not (run_dir / "metrics.json").exists()
    run_study(study, out_dir=tmp_path / "t", log=lambda _: None)
    assert_same(comparable(tmp_path / "t" / "tiny"), reference)
