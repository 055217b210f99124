"""Calibration: ECE as torchmetrics defines it, temperature scaling that helps and keeps every argmax,
and a calibrated run whose predict and export use its temperature."""
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as hs
from torchmetrics.classification import MulticlassCalibrationError

import cnnstudy
from cnnstudy.fileio import read_json
from cnnstudy.training.calibration import ece, fit_temperature, nll, reliability_bins, softmax

from helpers import make_image_folder, write_study


def overconfident(n: int = 600, classes: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(n, classes)) * 5).astype(np.float32)  # sharp softmax
    probs = softmax(logits)
    targets = rng.integers(0, classes, n)
    right = rng.random(n) < 0.6  # right 60 % of the time while ~95 % sure
    targets[right] = probs[right].argmax(1)
    return logits, probs, targets


def weighted_gap(bins, n):
    return sum(b["count"] * abs(b["confidence"] - b["accuracy"]) for b in bins if b["count"]) / n


def test_ece_is_torchmetrics_and_the_reliability_bins_add_up_to_it():
    _, probs, targets = overconfident()
    metric = MulticlassCalibrationError(num_classes=5, n_bins=15, norm="l1")
    expected = float(metric(torch.as_tensor(probs), torch.as_tensor(targets)))
    assert ece(probs, targets) == pytest.approx(expected, abs=1e-6)
    bins = reliability_bins(probs, targets)
    assert sum(b["count"] for b in bins) == len(targets) and len(bins) == 16  # 15 bins and exactly 1.0
    assert weighted_gap(bins, len(targets)) == pytest.approx(expected, abs=1e-6)


EDGES = [k / 15 for k in range(16)]


@hs.composite
def predictions(draw):
    """Probabilities as float32 softmax gives them: some with a confidence of exactly 1.0 (a logit gap
    over ~17), some exactly on a bin's edge, one class or several, right or wrong."""
    classes, n = draw(hs.integers(2, 4)), draw(hs.integers(1, 40))  # a dataset has 2 classes or more
    rows = []
    for _ in range(n):
        top = draw(hs.one_of(hs.sampled_from(EDGES[1:]), hs.floats(0.0, 1.0)))
        row = np.full(classes, (1 - top) / max(classes - 1, 1), dtype=np.float32)
        row[draw(hs.integers(0, classes - 1))] = top if classes > 1 else 1.0
        rows.append(row)
    return np.stack(rows).astype(np.float32), np.array([draw(hs.integers(0, classes - 1)) for _ in range(n)])


@given(predictions())
@settings(max_examples=150, deadline=None)
def test_the_reliability_bins_add_up_to_the_ece_at_every_edge(prediction):
    probs, targets = prediction
    bins = reliability_bins(probs, targets)
    assert sum(b["count"] for b in bins) == len(targets)
    assert weighted_gap(bins, len(targets)) == pytest.approx(ece(probs, targets), abs=1e-5)


def test_a_confidence_of_exactly_one_has_its_own_bin_as_torchmetrics_gives_it():
    probs = softmax(np.array([[30.0, 0.0], [0.0, 30.0], [1.0, 0.0]], dtype=np.float32))
    assert probs[0, 0] == 1.0  # float32 softmax saturates at a gap of ~17
    bins = reliability_bins(probs, np.array([0, 0, 0]))
    assert bins[-1]["count"] == 2 and bins[-1]["low"] == bins[-1]["high"] == 1.0
    assert weighted_gap(bins, 3) == pytest.approx(ece(probs, np.array([0, 0, 0])), abs=1e-6)


def test_temperature_scaling_lowers_the_nll_and_keeps_every_argmax():
    logits, probs, targets = overconfident()
    t, at_bound = fit_temperature(logits, targets)
    after = softmax(logits, t)
    assert t > 1.5 and not at_bound  # overconfident: the temperature softens
    assert nll(logits / t, targets) < nll(logits, targets) - 0.1 and ece(after, targets) < ece(probs, targets)
    assert (after.argmax(1) == probs.argmax(1)).all()
    np.testing.assert_allclose(softmax(logits, 1.0), probs, atol=1e-6)


def test_the_nll_comes_from_logits_even_where_a_probability_rounds_to_zero():
    logits = np.array([[200.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    assert softmax(logits)[0, 1] == 0.0  # a clip of the probability would invent the loss
    assert nll(logits, np.array([1, 1])) == pytest.approx((200.0 + np.log1p(np.exp(-1.0))) / 2, rel=1e-6)


def test_a_temperature_at_its_bound_is_said():
    logits = np.array([[5.0, 0.0]] * 20, dtype=np.float32)  # always right and sure: wants T -> 0
    with pytest.warns(UserWarning, match="reached its bound"):
        t, at_bound = fit_temperature(logits, np.zeros(20, int))
    assert at_bound and t < 1


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
    np.testing.assert_allclose([r["probabilities"] for r in rows], softmax(stored["test_logits"], t), atol=1e-5)
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    best = max(history, key=lambda row: row["val_acc"])  # one NLL: the history's val_loss is metrics' nll
    assert metrics["val"]["nll"] == pytest.approx(best["val_loss"], rel=1e-6)
    from cnnstudy.use.export import export_run

    path = export_run(cnnstudy.load_run(run_dir), "torchscript", tmp_path / "model.pt")
    assert json.loads((tmp_path / "model.pt.json").read_text())["temperature"] == pytest.approx(t)
    assert path.exists()
    assert "Calibration on test: expected calibration error" in (study_dir / "report.md").read_text()
