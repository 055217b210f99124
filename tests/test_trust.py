"""A number in a report belongs to the config, split and inputs it claims: finished runs are reused
only when all of them match, --force redoes exactly what depends on a change, and a study folder
has one writer."""
import os
import shutil
import stat
import subprocess
import sys
import time

import pytest

from cnnstudy.config import StudyError
from cnnstudy.fileio import atomic_write_text, read_json, read_jsonl
from cnnstudy.report.report import build_report
from cnnstudy.runner.study import plan_study, run_study
from cnnstudy.report.summary import write_summary

from helpers import make_image_folder, write_study

PHASES = """
  - name: p1
    runs:
      - {name: base, model: cnn_slim}
  - name: p3
    runs:
      - {name: reg, model: cnn_regularized, train: {epochs: 1}}
  - name: p4
    runs:
      - {name: head, model: {name: cnn_regularized, init_from: p3/reg, freeze: head}, train: {epochs: 1}}
"""
QUIET = {"log": lambda _: None}


def mtimes(folder):
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trust")
    data = make_image_folder(tmp / "colors", per_class=10)
    study = write_study(tmp / "s.yaml", data, PHASES)
    old_mask = os.umask(0o022)
    try:
        study_dir = run_study(study, out_dir=tmp / "runs", **QUIET)
    finally:
        os.umask(old_mask)
    return study, study_dir


@pytest.fixture
def copy(finished, tmp_path):
    study, study_dir = finished
    target = tmp_path / "runs" / "tiny"
    shutil.copytree(study_dir, target, symlinks=True)
    own_study = tmp_path / "s.yaml"
    shutil.copy(study, own_study)  # each test may edit its own copy
    return own_study, target


def test_a_changed_key_stops_the_study_before_training_and_names_the_key(copy):
    study, study_dir = copy
    before = mtimes(study_dir)
    with pytest.raises(StudyError) as caught:
        run_study(study, ["train.epochs=3", "train.lr=0.01"], out_dir=study_dir.parent, **QUIET)
    message = str(caught.value)
    assert "3 run(s)" in message and "Nothing was trained" in message
    assert "p1/base:" in message and "train.epochs: 2 -> 3" in message and "train.lr: 0.002 -> 0.01" in message
    assert "--force" in message
    assert mtimes(study_dir) == before  # nothing written, not even study.yaml


def test_a_changed_source_run_makes_its_dependants_stale_and_force_redoes_exactly_those(copy):
    study, study_dir = copy
    text = study.read_text()
    study.write_text(text.replace("cnn_regularized, train: {epochs: 1}", "cnn_regularized, train: {epochs: 2}"))
    with pytest.raises(StudyError) as caught:
        run_study(study, out_dir=study_dir.parent, **QUIET)
    message = str(caught.value)
    assert "p3/reg:\n    train.epochs: 1 -> 2" in message
    assert "p4/head:\n    init_from p3/reg trains again first" in message and "p1/base" not in message
    base = mtimes(study_dir / "p1" / "base")
    logs = []
    run_study(study, out_dir=study_dir.parent, force=["p3/reg"], log=logs.append)
    assert any(line.startswith("skip p1/base") for line in logs)
    assert any(line.startswith("== p3/reg") for line in logs) and any(line.startswith("== p4/head") for line in logs)
    assert mtimes(study_dir / "p1" / "base") == base
    assert len(read_jsonl(study_dir / "p3" / "reg" / "history.jsonl")) == 2
    report = build_report(study_dir)[0].read_text()
    assert "Epoch [2/2]" in report.split("### reg")[1].split("###")[0]
    logs.clear()
    run_study(study, out_dir=study_dir.parent, log=logs.append)  # now everything matches: all reused
    assert sum(line.startswith("skip") for line in logs) == 3


def test_the_report_takes_each_run_settings_from_its_own_folder(copy):
    study, study_dir = copy
    resolved = study_dir / "study.yaml"
    atomic_write_text(resolved, resolved.read_text().replace("lr: 0.002", "lr: 0.5"))
    text = build_report(study_dir)[0].read_text()
    assert "lr 0.002" in text and "lr 0.5" not in text


def test_metrics_that_do_not_match_their_folder_are_left_out(copy):
    _, study_dir = copy
    fingerprint = study_dir / "p1" / "base" / "fingerprint.json"
    atomic_write_text(fingerprint, fingerprint.read_text().replace('"lr": 0.002', '"lr": 0.003'))
    rows = write_summary(study_dir)
    assert [row["run"] for row in rows] == ["reg", "head"]
    assert "p1/base: left out, its metrics.json does not match" in (study_dir / "summary.md").read_text()
    assert "No results: its metrics.json does not match" in build_report(study_dir)[0].read_text()


def test_a_changed_split_is_refused_for_a_run_that_would_resume(tmp_path):
    data = make_image_folder(tmp_path / "colors", per_class=10)
    phases = "\n  - name: p1\n    runs:\n      - {name: base, model: cnn_slim, train: {epochs: 1}}\n"
    study = write_study(tmp_path / "s.yaml", data, phases)
    study_dir = run_study(study, out_dir=tmp_path / "runs", **QUIET)
    (study_dir / "p1" / "base" / "metrics.json").unlink()  # as if killed before the end: it would resume
    logs = []
    make_image_folder(tmp_path / "more", per_class=12, seed=5)
    for path in (tmp_path / "more").rglob("*_01[01].png"):
        shutil.copy(path, data / path.parent.name / path.name)  # two new images per class
    run_study(study, out_dir=tmp_path / "runs", log=logs.append)  # the saved split is kept, and says so
    assert any("6 image(s)" in line and "newer than the study's split" in line for line in logs)
    assert any(line.startswith("resuming") for line in logs)
    (study_dir / "p1" / "base" / "metrics.json").unlink()
    shutil.rmtree(study_dir / "splits")  # the study's split file is gone: a new split is made
    with pytest.raises(StudyError, match="(?s)p1/base:\n    split: other images in train/val/test"):
        run_study(study, out_dir=tmp_path / "runs", **QUIET)
    assert not (study_dir / "p1" / "base" / "metrics.json").exists()


def test_resume_checks_the_split_digest_in_the_checkpoint(finished, tmp_path):
    import torch

    from cnnstudy.models.checkpoint import CheckpointError, load_checkpoint_file
    from cnnstudy.training.engine import resume_state
    from cnnstudy.models.registry import create_model

    _, study_dir = finished
    run_dir = tmp_path / "run"
    shutil.copytree(study_dir / "p1" / "base", run_dir)
    meta = {k: v for k, v in load_checkpoint_file(run_dir / "last.pt").items() if k in (
        "fingerprint", "split_digest", "model_name", "class_names", "trainable_names")}
    model = create_model("cnn_slim", 3)
    optimizer = torch.optim.Adam(model.parameters())
    assert resume_state(run_dir, model, optimizer, torch.amp.GradScaler("cpu", enabled=False), meta).epoch == 2
    with pytest.raises(CheckpointError, match="another split_digest.*--force"):
        resume_state(run_dir, model, optimizer, torch.amp.GradScaler("cpu", enabled=False),
                     {**meta, "split_digest": "0" * 64})


def test_init_from_a_run_on_another_split_of_the_same_dataset_is_refused_up_front(tmp_path):
    data = make_image_folder(tmp_path / "colors", per_class=10)
    phases = PHASES.replace("freeze: head}", "freeze: head}, data: {split: {seed: 1}}")
    with pytest.raises(StudyError, match="init_from p3/reg trained on another split of the same dataset"):
        run_study(write_study(tmp_path / "s.yaml", data, phases), out_dir=tmp_path / "runs", **QUIET)
    assert not (tmp_path / "runs" / "tiny" / "p1").exists()


@pytest.mark.parametrize("field, bad", [("run", ".."), ("run", "/abs"), ("run", ".hidden"),
                                        ("phase", ".."), ("study", "../x")])
def test_unsafe_names_are_refused(tmp_path, field, bad):
    data = make_image_folder(tmp_path / "colors", per_class=4)
    study = write_study(tmp_path / "s.yaml", data, PHASES)
    text = study.read_text()
    text = {"run": lambda t: t.replace("name: base", f"name: '{bad}'"),
            "phase": lambda t: t.replace("name: p1", f"name: '{bad}'"),
            "study": lambda t: t.replace("name: tiny", f"name: '{bad}'")}[field](text)
    study.write_text(text)
    with pytest.raises(StudyError, match="use letters, digits"):
        plan_study(study)
    (tmp_path / "sentinel.txt").write_text("keep me")
    with pytest.raises(StudyError, match="use letters, digits"):
        run_study(study, out_dir=tmp_path / "runs" / "deep", force=True, **QUIET)
    assert (tmp_path / "sentinel.txt").read_text() == "keep me" and (tmp_path / "colors").is_dir()


def test_force_on_the_command_line_takes_all_or_named_runs():
    from cnnstudy.cli import build_parser

    parse = build_parser().parse_args
    assert parse(["run", "s.yaml", "--force"]).force == ["*"]
    assert parse(["run", "s.yaml", "--force", "p1/a", "--force", "p2/b"]).force == ["p1/a", "p2/b"]
    assert parse(["run", "s.yaml"]).force is None


def test_force_never_deletes_outside_the_study_folder(copy, tmp_path):
    study, study_dir = copy
    outside = tmp_path / "outside"
    shutil.copytree(study_dir / "p1" / "base", outside)
    (outside / "sentinel.txt").write_text("keep me")
    shutil.rmtree(study_dir / "p1" / "base")
    (study_dir / "p1" / "base").symlink_to(outside, target_is_directory=True)
    with pytest.raises(StudyError, match="refusing to delete .*p1/base"):
        run_study(study, out_dir=study_dir.parent, force=True, **QUIET)
    assert (outside / "sentinel.txt").read_text() == "keep me"
    assert (outside / "metrics.json").exists()


def test_a_second_writer_stops_at_once_naming_the_holder(copy):
    study, study_dir = copy
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pathlib import Path\nfrom cnnstudy.runner.planning.lock import study_lock\n"
         f"with study_lock(Path({str(study_dir)!r})):\n    print('held', flush=True)\n    time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(StudyError, match=f"in use by another cnnstudy run \\(pid {holder.pid} on "):
            run_study(study, out_dir=study_dir.parent, **QUIET)
        assert time.monotonic() - started < 10
    finally:
        holder.kill()
        holder.wait()
    logs = []
    run_study(study, out_dir=study_dir.parent, log=logs.append)  # a killed holder leaves no lock behind
    assert sum(line.startswith("skip") for line in logs) == 3


def test_written_files_honour_the_umask(finished):
    _, study_dir = finished
    modes = {p.relative_to(study_dir).as_posix(): stat.S_IMODE(p.stat().st_mode)
             for p in study_dir.rglob("*") if p.is_file() and p.name != ".lock"}
    assert modes["p1/base/best.pt"] == 0o644 and modes["summary.csv"] == 0o644
    assert all(mode == 0o644 for mode in modes.values()), {k: oct(v) for k, v in modes.items() if v != 0o644}


def test_every_run_records_what_it_was_made_from(finished):
    _, study_dir = finished
    fingerprint = read_json(study_dir / "p4" / "head" / "fingerprint.json")
    metrics = read_json(study_dir / "p4" / "head" / "metrics.json")
    from cnnstudy.fileio import file_digest
    assert fingerprint["inputs"]["init_from"] == {"run": "p3/reg", "file": "p3/reg/best.pt",
                                                  "sha256": file_digest(study_dir / "p3" / "reg" / "best.pt")}
    assert fingerprint["config"]["train"]["lr"] == 0.002
    assert fingerprint["split"]["digest"] == metrics["split"]["digest"]
    assert metrics["scored_on"] == "test" and metrics["split"]["sizes"]["test"] > 0


def test_images_replaced_in_place_stop_the_study_naming_how_many(tmp_path):
    from PIL import Image

    data = make_image_folder(tmp_path / "colors", per_class=6)
    phases = "  - name: p1\n    runs:\n      - {name: base, model: cnn_slim}\n"
    study = write_study(tmp_path / "s.yaml", data, phases)
    run_study(study, ["train.epochs=1"], out_dir=tmp_path / "runs", log=lambda _: None)
    for path in sorted((data / "red").glob("*.png"))[:4]:  # same names, new pixels
        Image.new("RGB", (50, 50), (0, 0, 0)).save(path)
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    with pytest.raises(StudyError, match=r"(?s)p1/base:\n    data: 4 of the 18 images of .*colors changed since "
                                         r"this run used them \(their bytes\), 0 added, 0 missing"):
        run_study(study, ["train.epochs=1"], out_dir=tmp_path / "runs", log=lambda _: None)
    logs = []
    run_study(study, ["train.epochs=1"], out_dir=tmp_path / "runs", force=True, log=logs.append)
    assert any(line.startswith("== p1/base") for line in logs)
    out = subprocess.run([sys.executable, "-m", "cnnstudy", "inspect", str(data)], capture_output=True, text=True)
    assert "files digest (names, sizes, modification times): " in out.stdout


def test_a_copied_dataset_with_new_times_and_the_same_bytes_keeps_every_run(tmp_path):
    data = make_image_folder(tmp_path / "colors", per_class=6)
    phases = "  - name: p1\n    runs:\n      - {name: base, model: cnn_slim}\n"
    study = write_study(tmp_path / "s.yaml", data, phases)
    run_study(study, ["train.epochs=1"], out_dir=tmp_path / "runs", log=lambda _: None)
    shutil.copytree(data, tmp_path / "copy")  # what cp -r or a git clone gives: new times, same bytes
    shutil.rmtree(data)
    (tmp_path / "copy").rename(data)
    for path in data.rglob("*.png"):
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    logs = []
    run_study(study, ["train.epochs=1"], out_dir=tmp_path / "runs", log=logs.append)
    assert any(line.startswith("skip p1/base") for line in logs) and not any(l.startswith("==") for l in logs)
    path = sorted((data / "red").glob("*.png"))[0]  # one file's bytes change, its size and time kept
    size, times = path.stat().st_size, (path.stat().st_atime_ns, path.stat().st_mtime_ns)
    path.write_bytes(path.read_bytes()[:-1] + bytes([path.read_bytes()[-1] ^ 1]))
    os.utime(path, ns=(times[0], times[1] + 10**9))
    assert path.stat().st_size == size
    with pytest.raises(StudyError, match=r"data: 1 of the 18 images of .*colors changed .*\(their bytes\)"):
        run_study(study, ["train.epochs=1"], out_dir=tmp_path / "runs", log=lambda _: None)
