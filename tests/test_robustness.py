"""Real folders are messy: every odd file is either loaded correctly or left out with its reason."""
import io
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from cnnstudy.models.checkpoint import CheckpointError, load_checkpoint_file
from cnnstudy.data.sources import open_image_file, scan_folder
from cnnstudy.training.engine import NonFiniteLossError, train_one_epoch
from cnnstudy.fileio import read_json, read_jsonl
from cnnstudy.data.inspection import format_report, inspect_dataset
from cnnstudy.runner.study import run_study

from helpers import make_image_folder, write_study

UNREADABLE = {"red/truncated.jpg", "red/zero.jpg", "red/text.jpg"}


def jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **kwargs)
    return buffer.getvalue()


@pytest.fixture
def fuzz_folder(tmp_path):
    root = make_image_folder(tmp_path / "fuzz", classes=("red", "green", "blue"), per_class=10)
    red = root / "red"
    solid = Image.new("RGB", (64, 48), (220, 30, 30))
    (red / "truncated.jpg").write_bytes(jpeg_bytes(solid)[:300])
    (red / "zero.jpg").write_bytes(b"")
    (red / "text.jpg").write_text("this is not an image")
    Image.new("RGBA", (50, 50), (220, 30, 30, 128)).save(red / "alpha.png")
    solid.convert("P").save(red / "palette.jpg", format="GIF")
    Image.new("CMYK", (50, 50), (0, 200, 200, 0)).save(red / "cmyk.jpg")
    Image.fromarray(np.full((50, 50), 40000, np.uint16)).save(red / "deep.png")
    Image.new("RGB", (1, 1), (220, 30, 30)).save(red / "tiny.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    (red / "exif.jpg").write_bytes(jpeg_bytes(solid, exif=exif.tobytes()))
    (red / "notes.txt").write_text("not an image")
    (red / ".DS_Store").write_bytes(b"\0\0")
    for hidden in (root / ".ipynb_checkpoints", red / ".hidden"):
        hidden.mkdir()
        solid.save(hidden / "copy.png")
    return root


def test_inspect_reports_every_odd_file(fuzz_folder):
    source = scan_folder(fuzz_folder)
    assert source.classes == ["blue", "green", "red"]  # hidden folders are never classes
    report = inspect_dataset(source, min_size=46)
    assert {u["file"] for u in report["unreadable"]} == UNREADABLE
    reasons = {u["file"]: u["reason"] for u in report["unreadable"]}
    assert "zero bytes" in reasons["red/zero.jpg"] and "not an image" in reasons["red/text.jpg"]
    assert "truncated" in reasons["red/truncated.jpg"]
    assert set(report["ignored"]) == {"red/notes.txt", "red/.DS_Store", "red/.hidden", ".ipynb_checkpoints"}
    assert report["counts"] == {"all": [10, 10, 16]}  # 10 + 6 odd but readable
    assert [s["file"] for s in report["smaller_than_min"]] == ["red/tiny.png"]
    assert "unreadable (left out): 3" in format_report(report)


def test_odd_modes_load_as_correct_rgb(fuzz_folder):
    red = fuzz_folder / "red"
    assert open_image_file(red / "exif.jpg").size == (48, 64)  # EXIF rotation applied
    for name in ("alpha.png", "palette.jpg", "cmyk.jpg", "exif.jpg"):
        r, g, b = np.asarray(open_image_file(red / name), dtype=int).reshape(-1, 3).mean(0)
        assert r > g + 40 and r > b + 40, name  # still red, whatever the mode
    assert np.asarray(open_image_file(red / "deep.png")).mean() == pytest.approx(40000 / 65535 * 255, abs=1)


def test_a_study_on_the_fuzz_folder_trains_and_records_what_it_left_out(fuzz_folder, tmp_path):
    phases = "\n  - name: p1\n    runs:\n      - {name: base, model: cnn_slim, train: {epochs: 1}}\n"
    logs: list[str] = []
    study_dir = run_study(write_study(tmp_path / "s.yaml", fuzz_folder, phases), out_dir=tmp_path / "runs",
                          log=logs.append)
    metrics = read_json(study_dir / "p1" / "base" / "metrics.json")
    assert {s["file"] for s in metrics["skipped_images"]} == UNREADABLE
    assert any("left out 3 unreadable" in line for line in logs)
    assert list((study_dir / "splits").glob("*.inspect.json"))


def test_on_bad_image_fail_stops_before_training(fuzz_folder, tmp_path):
    phases = "\n  - name: p1\n    runs:\n      - {name: base, model: cnn_slim}\n"
    study = write_study(tmp_path / "s.yaml", fuzz_folder, phases)
    with pytest.raises(ValueError, match="(?s)3 unreadable.*zero.jpg.*on_bad_image: skip"):
        run_study(study, ["data.on_bad_image=fail"], out_dir=tmp_path / "runs", log=lambda _: None)
    assert not (tmp_path / "runs" / "tiny" / "p1").exists()


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_crafted_pickle_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"model": RunsCode()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refusing to load .*evil.pt"):
        load_checkpoint_file(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()
    (tmp_path / "torn.pt").write_bytes((tmp_path / "evil.pt").read_bytes()[:50])
    with pytest.raises(CheckpointError, match="torn.pt"):
        load_checkpoint_file(tmp_path / "torn.pt")
    assert pickle  # the module under attack, imported so the intent is plain


def test_non_finite_loss_stops_with_a_clear_message():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    with torch.no_grad():
        model[1].weight.fill_(float("inf"))
    batch = [(torch.ones(4, 3, 2, 2), torch.tensor([0, 1, 0, 1]), torch.arange(4))]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(NonFiniteLossError, match="lower train.lr"):
        train_one_epoch(model, batch, optimizer, torch.nn.CrossEntropyLoss(), torch.device("cpu"))


def test_the_same_image_in_two_splits_is_reported(tmp_path):
    for part in ("train", "val"):
        make_image_folder(tmp_path / "d" / part, classes=("a", "b"), per_class=4, seed=0 if part == "train" else 9)
    copy = (tmp_path / "d" / "train" / "a" / "a_000.png").read_bytes()
    (tmp_path / "d" / "val" / "a" / "leak.png").write_bytes(copy)
    report = inspect_dataset(scan_folder(tmp_path / "d"))
    assert report["duplicates_across_splits"] == [
        {"files": ["train/a/a_000.png", "val/a/leak.png"], "splits": ["train", "val"]}]
    assert "train/a/a_000.png, val/a/leak.png (exact; a; in train and val)" in format_report(report)


DIVERGING = """
  - name: p1
    runs:
      - {name: boom, model: cnn_slim, train: {lr: 1.0e+30}}
      - {name: ok, model: cnn_slim}
  - name: p2
    runs:
      - {name: after, model: {name: cnn_slim, init_from: p1/boom, freeze: head}}
      - {name: other, model: {name: cnn_slim, init_from: p1/ok, freeze: head}}
"""


def test_a_diverging_run_is_a_result_and_the_runs_not_starting_from_it_go_on(tmp_path, image_folder):
    from cnnstudy.report.report import build_report

    study = write_study(tmp_path / "s.yaml", image_folder, DIVERGING)
    logs = []
    study_dir = run_study(study, out_dir=tmp_path / "runs", log=logs.append)
    metrics = read_json(study_dir / "p1" / "boom" / "metrics.json")
    assert metrics["verdict"]["verdict"] == "diverged" and metrics["diverged"]["epoch"] == 1
    assert metrics["diverged"]["reason"] == "not finite" and "lower train.lr" in metrics["verdict"]["explanation"]
    assert not (study_dir / "p2" / "after").exists() and (study_dir / "p2" / "other" / "metrics.json").exists()
    assert "not run: p2/after: it starts from p1/boom, which diverged" in logs
    text = build_report(study_dir)[0].read_text()
    assert "- Diverged: p1/boom (epoch 1); not run: p2/after (it starts from p1/boom)." in text
    assert "training diverged at epoch 1: loss nan, not a finite number" in text
    again = []
    run_study(study, out_dir=tmp_path / "runs", log=again.append)
    assert not [line for line in again if line.startswith("==")]
    assert "not run: p2/after: it starts from p1/boom, which diverged" in again


def test_a_loss_above_the_limit_diverges_only_when_it_stays_there_and_does_not_fall():
    from cnnstudy.training.engine import divergence

    # A head-only fine-tune at lr 0.1 on ants/bees (2 classes, limit 6.93): 46.4, 8.8, 1.3 ... recovers.
    assert divergence(46.4, 2, 1) is None and divergence(8.8, 2, 2, 46.4) is None and divergence(1.3, 2, 3, 8.8) is None
    assert divergence(52.0, 2, 2, 46.4)["reason"] == "above the limit and rising"
    assert divergence(float("inf"), 2, 1)["reason"] == "not finite" and divergence(float("nan"), 10, 4, 0.5)
    assert divergence(1e26, 2, 1)["reason"] == "exploded" and divergence(1e25, 2, 2, 1e26)["reason"] == "exploded"


def test_a_run_diverging_after_its_best_epoch_is_scored_from_that_checkpoint(tmp_path, image_folder, monkeypatch):
    from cnnstudy.training import engine

    real = engine.divergence
    monkeypatch.setattr(engine, "divergence", lambda loss, classes, epoch, previous: real(
        float("nan") if epoch == 3 else loss, classes, epoch, previous))
    phases = "  - name: p1\n    runs:\n      - {name: late, model: cnn_slim, train: {epochs: 4}}\n"
    study_dir = run_study(write_study(tmp_path / "s.yaml", image_folder, phases), out_dir=tmp_path / "runs",
                          log=lambda _: None)
    run_dir = study_dir / "p1" / "late"
    metrics = read_json(run_dir / "metrics.json")
    assert metrics["verdict"]["verdict"] == "diverged" and metrics["diverged"]["epoch"] == 3
    assert len(read_jsonl(run_dir / "history.jsonl")) == 2 and metrics["best_epoch"] in (1, 2)
    assert "test" in metrics and "the scores are best.pt's" in metrics["verdict"]["explanation"]
    with open(study_dir / "summary.csv") as handle:
        assert ",diverged," in handle.read()
