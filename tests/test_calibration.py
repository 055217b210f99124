"""Calibration: ECE as torchmetrics defines it, temperature scaling that helps and keeps every argmax,
and a calibrated run whose predict and export use its temperature."""
import json

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassCalibrationError

import cnnstudy
from cnnstudy.fileio import read_json
from cnnstudy.training.calibration import ece, fit_temperature, nll, reliability_bins, scaled

from helpers import make_image_folder, write_study


def overconfident(n: int = 600, classes: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, classes)) * 5  # sharp softmax
    probs = torch.softmax(torch.as_tensor(logits), 1).numpy().astype(np.float32)
    targets = rng.integers(0, classes, n)
    right = rng.random(n) < 0.6  # right 60 % of the time while ~95 % sure
    targets[right] = probs[right].argmax(1)
    return probs, targets


def test_ece_is_torchmetrics_and_the_reliability_bins_add_up_to_it():
    probs, targets = overconfident()
    metric = MulticlassCalibrationError(num_classes=5, n_bins=15, norm="l1")
    expected = float(metric(torch.as_tensor(probs), torch.as_tensor(targets)))
    assert ece(probs, targets) == pytest.approx(expected, abs=1e-6)
    bins = reliability_bins(probs, targets)
    assert sum(b["count"] for b in bins) == len(targets) and len(bins) == 15
    weighted = sum(b["count"] * abs(b["confidence"] - b["accuracy"]) for b in bins if b["count"]) / len(targets)
    assert weighted == pytest.approx(expected, abs=1e-6)


def test_temperature_scaling_lowers_the_nll_and_keeps_every_argmax():
    probs, targets = overconfident()
    t = fit_temperature(probs, targets)
    after = scaled(probs, t)
    assert t > 1.5  # overconfident: the temperature softens
    assert nll(after, targets) < nll(probs, targets) - 0.1 and ece(after, targets) < ece(probs, targets)
    assert (after.argmax(1) == probs.argmax(1)).all()
    np.testing.assert_allclose(scaled(probs, 1.0), probs, atol=1e-6)


def test_a_calibrated_run_records_its_temperature_and_predict_and_export_use_it(tmp_path):
    data = make_image_folder(tmp_path / "colors", per_class=12)
    phases = "  - name: p1\n    runs:\n      - {name: cal, model: cnn_slim, calibrate: true}\n"
    study_dir = cnnstudy.run_study(write_study(tmp_path / "s.yaml", data, phases), out_dir=tmp_path / "runs",
                                   log=lambda _: None)
    run_dir = study_dir / "p1" / "cal"
    metrics = read_json(run_dir / "metrics.json")
    t = metrics["calibration"]["temperature"]
    assert 0.05 <= t <= 20 and {"ece", "nll"} <= set(metrics["test"])
    assert metrics["calibration"]["val"]["nll_scaled"] <= metrics["calibration"]["val"]["nll"] + 1e-9
    assert (run_dir / "plots" / "reliability.png").stat().st_size > 0
    stored = np.load(run_dir / "predictions.npz")
    rows = cnnstudy.load_run(run_dir).predict([data / item for item in stored["test_ids"]])
    np.testing.assert_allclose([r["probabilities"] for r in rows], scaled(stored["test_probs"], t), atol=1e-5)
    from cnnstudy.use.export import export_run

    path = export_run(cnnstudy.load_run(run_dir), "torchscript", tmp_path / "model.pt")
    assert json.loads((tmp_path / "model.pt.json").read_text())["temperature"] == pytest.approx(t)
    assert path.exists()
    assert "Calibration on test: expected calibration error" in (study_dir / "report.md").read_text()
