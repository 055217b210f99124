"""A disk too small for a study: refused before training; one that fills during training: one line,
nothing damaged, and the same command continues once there is room. On a size-limited tmpfs."""
import subprocess
import sys
import uuid

import numpy as np
import pytest

from cnnstudy.config import StudyError
from cnnstudy.fileio import read_jsonl
from cnnstudy.runner.study import run_study

from helpers import make_image_folder, write_study

PHASES = "  - name: p1\n    runs:\n      - {name: base, model: cnn_baseline, train: {epochs: 3}}\n"


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of a few MB (needs root and mount; skipped where the machine does not allow it)."""
    def mount(megabytes: int):
        folder = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a size-limited tmpfs here ({done.stderr.strip() or 'mount failed'})")
        mounted.append(folder)
        return folder
    mounted = []
    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_a_study_the_disk_cannot_hold_stops_before_training(tmp_path, small_disk):
    disk = small_disk(6)  # cnn_baseline's checkpoints alone need about 8.4 MB
    study = write_study(tmp_path / "s.yaml", make_image_folder(tmp_path / "colors", per_class=6), PHASES)
    with pytest.raises(StudyError, match=r"not enough free space: the study will write about \d+ MB into .*"
                                         r"only \d+ MB are free there. Nothing was trained"):
        run_study(study, out_dir=disk, log=lambda _: None)
    assert not (disk / "tiny" / "p1").exists()


FILLER = """
import os, sys
from pathlib import Path
import cnnstudy.models.checkpoint as checkpoint
from cnnstudy.cli import main
from cnnstudy.fileio import free_bytes

study, out = sys.argv[1], sys.argv[2]
real_save = checkpoint.save_checkpoint

def save_then_fill(path, state):
    real_save(path, state)
    if Path(path).name == "last.pt" and state["epoch"] == 1:  # the disk fills up during epoch 2
        with open(Path(out) / "filler", "wb") as handle:
            handle.write(b"x" * (free_bytes(out) - 64 * 1024))

checkpoint.save_checkpoint = save_then_fill
sys.exit(main(["run", study, "--out", out]))
"""


def test_a_disk_that_fills_mid_run_gives_one_line_and_the_run_continues_later(tmp_path, small_disk):
    disk = small_disk(40)
    study = write_study(tmp_path / "s.yaml", make_image_folder(tmp_path / "colors", per_class=6), PHASES)
    reference = run_study(study, out_dir=tmp_path / "ref", log=lambda _: None) / "p1" / "base"
    (tmp_path / "fill.py").write_text(FILLER)
    done = subprocess.run([sys.executable, str(tmp_path / "fill.py"), str(study), str(disk)], capture_output=True,
                          text=True)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.strip() and "it/s" not in line and "%|" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: no space left on the device while writing "), lines
    assert "Traceback" not in done.stderr and "it continues from the last finished epoch" in lines[0]
    run_dir = disk / "tiny" / "p1" / "base"
    assert [row["epoch"] for row in read_jsonl(run_dir / "history.jsonl")][:1] == [1]
    assert not list(run_dir.rglob("*.tmp")) and not (run_dir / "metrics.json").exists()
    (disk / "filler").unlink()
    run_study(study, out_dir=disk, log=lambda _: None)
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in read_jsonl(run_dir / "history.jsonl")]
    assert strip == [{k: v for k, v in row.items() if k != "seconds"}
                     for row in read_jsonl(reference / "history.jsonl")]
    with np.load(run_dir / "predictions.npz") as got, np.load(reference / "predictions.npz") as want:
        np.testing.assert_array_equal(got["test_probs"], want["test_probs"])
