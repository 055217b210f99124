"""Using a trained run: predict, export, the Python API, experiment tracking."""
import csv
import sys

import numpy as np
import pytest
from PIL import Image

import cnnstudy
from cnnstudy.cli import main
from cnnstudy.config import StudyError
from cnnstudy.use.export import ExportError, export_run, verify_export

from helpers import make_image_folder

STUDY = """
name: use
tracking: {{tensorboard: true, mlflow: true}}
defaults:
  data: {{dataset: {data}, image_size: 48}}
  train: {{epochs: 2, batch_size: 8, lr: 0.002, precision: fp32}}
phases:
  - name: p1
    runs:
      - {{name: reg, model: cnn_regularized}}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("use")
    data = make_image_folder(tmp / "colors", per_class=12)
    study = tmp / "use.yaml"
    study.write_text(STUDY.format(data=data))
    logs = []
    study_dir = cnnstudy.run_study(study, overrides={"train.epochs": 3}, out_dir=tmp / "runs", log=logs.append)
    return study_dir, data, logs


def test_the_api_runs_a_study_and_loads_a_run(trained):
    study_dir, _, logs = trained
    run = cnnstudy.load_run(study_dir, run="p1/reg")
    assert run.config["train"]["epochs"] == 3 and len(run.history) == 3
    assert run.metrics["run"] == "p1/reg" and run.classes == ["blue", "green", "red"]
    assert not any(line.startswith("warning") for line in logs), logs


def test_predicting_the_test_images_reproduces_the_stored_predictions(trained):
    study_dir, data, _ = trained
    run = cnnstudy.load_run(study_dir / "p1" / "reg")
    stored = np.load(study_dir / "p1" / "reg" / "predictions.npz")
    rows = run.predict([data / item for item in stored["test_ids"]], top_k=2)
    assert [r["class"] for r in rows] == [run.classes[k] for k in stored["test_probs"].argmax(1)]
    np.testing.assert_allclose([r["probabilities"] for r in rows], stored["test_probs"], atol=1e-5)
    assert rows[0]["top_k"][0]["class"] == rows[0]["class"] and len(rows[0]["top_k"]) == 2


def test_the_cli_predicts_folders_lists_bad_files_and_equals_the_api(trained, tmp_path, capsys):
    study_dir, data, _ = trained
    images = tmp_path / "new"
    (images / "deeper").mkdir(parents=True)
    for i, name in enumerate(["blue/blue_000.png", "red/red_001.png", "green/green_002.png"]):
        Image.open(data / name).save(images / ("deeper" if i else "") / f"{i}.png")
    (images / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "preds.csv"
    assert main(["predict", str(study_dir), str(images), "--run", "p1/reg", "--out", str(out), "--top-k", "2"]) == 1
    with open(out) as handle:
        rows = list(csv.DictReader(handle))
    assert [Path_name(r["file"]) for r in rows] == ["0.png", "broken.jpg", "1.png", "2.png"]
    assert rows[1]["class"] == "" and "UnidentifiedImageError" in rows[1]["error"]
    err = capsys.readouterr().err  # one unreadable file: exit 1, the others still predicted and written
    assert "3 prediction(s) of p1/reg written" in err and "1 of 4 file(s) have no prediction" in err
    api = cnnstudy.load_run(study_dir, run="p1/reg").predict([images])
    assert [r["class"] or "" for r in api] == [r["class"] for r in rows]
    assert [f"{r['confidence']:.6f}" for r in api if r["class"]] == [r["confidence"] for r in rows if r["class"]]
    assert set(rows[0]) >= {"top1", "p1", "top2", "p2"}


def Path_name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_an_export_matches_torch_on_real_images_and_a_corrupted_one_is_caught(trained, tmp_path, fmt):
    study_dir, _, _ = trained
    run = cnnstudy.load_run(study_dir, run="p1/reg")
    path = export_run(run, fmt, tmp_path / f"model.{fmt}")
    sidecar = cnnstudy.fileio.read_json(path.with_name(path.name + ".json"))
    assert sidecar["classes"] == run.classes and sidecar["image_size"] == 48 and len(sidecar["mean"]) == 3
    assert sidecar["verified"]["max_abs_logit_difference"] <= 1e-4
    data = bytearray(path.read_bytes())
    start, length = len(data) // 3, len(data) // 10
    data[start:start + length] = b"\x7f" * length  # a tenth of the file overwritten: weights or structure
    path.write_bytes(bytes(data))
    with pytest.raises(ExportError, match="differs from the PyTorch model|does not load"):
        verify_export(path, fmt, run)


def test_tensorboard_events_hold_every_epoch(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    study_dir, _, _ = trained
    events = EventAccumulator(str(study_dir / "p1" / "reg" / "tensorboard")).Reload()
    history = cnnstudy.load_run(study_dir, run="p1/reg").history
    val = events.Scalars("val_acc")
    assert [e.step for e in val] == [1, 2, 3]
    assert [e.value for e in val] == pytest.approx([row["val_acc"] for row in history])
    assert "plots/curves" in events.Tags()["images"]


def test_mlflow_finds_the_run_with_its_params_and_final_metrics(trained):
    from mlflow import MlflowClient

    study_dir, _, _ = trained
    client = MlflowClient(tracking_uri=f"sqlite:///{study_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("use")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"p1/reg", "use report"}
    run = runs["p1/reg"]
    metrics = cnnstudy.load_run(study_dir, run="p1/reg").metrics
    assert run.data.params["train.lr"] == "0.002" and run.data.params["model.name"] == "cnn_regularized"
    assert run.data.metrics["test_acc"] == pytest.approx(metrics["test"]["accuracy"])
    assert len(client.get_metric_history(run.info.run_id, "val_acc")) == 3
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"plots", "metrics.json"}
    assert run.info.artifact_uri.startswith((study_dir / "mlflow-artifacts").resolve().as_uri())


def test_tracking_errors_are_warnings_and_missing_packages_are_named_up_front(tmp_path, monkeypatch):
    data = make_image_folder(tmp_path / "colors", per_class=8)
    study = tmp_path / "s.yaml"
    study.write_text(STUDY.format(data=data).replace("tracking: {tensorboard: true, mlflow: true}",
                                                     "tracking: {mlflow: 'http://127.0.0.1:9/nowhere'}"))
    logs = []
    study_dir = cnnstudy.run_study(study, overrides={"train.epochs": 1}, out_dir=tmp_path / "runs", log=logs.append)
    assert (study_dir / "p1" / "reg" / "metrics.json").exists()
    assert any(line.startswith("warning: mlflow tracking failed") for line in logs)
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    with pytest.raises(StudyError, match=r"tracking.mlflow needs the mlflow package: pip install 'cnnstudy\[track"):
        cnnstudy.run_study(study, out_dir=tmp_path / "other", log=lambda _: None)
