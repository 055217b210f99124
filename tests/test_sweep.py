"""Sweeps: trials are runs of their own, chosen on validation only, resumable, confirmed against the base."""
import csv
import os
import signal
import subprocess
import sys
import time
from contextlib import nullcontext

import numpy as np
import pytest

from cnnstudy.config import RunConfig, StudyError
from cnnstudy.fileio import read_json
from cnnstudy.report.report import build_report
from cnnstudy.runner.search.trials import PruneWatch, Sweep
from cnnstudy.runner.study import run_study
from cnnstudy.runner.search.sweep import TrialPruned
from cnnstudy.seeds import confirm_seed

from helpers import make_image_folder, run_quiet_study, write_study

SWEPT = """
  - name: p1
    runs:
      - {name: base, model: cnn_slim}
  - name: p2
    runs:
      - name: head
        model: {name: cnn_slim, init_from: p1/base, freeze: head}
        sweep:
          trials: 6
          prune: median
          params:
            train.lr: {low: 1.0e-4, high: 0.05, log: true}
            augment: [none, seed]
      - {name: after, model: {name: cnn_slim, init_from: p2/head}}
"""
QUIET = {"log": lambda _: None}


def sweep_rows(group):
    with open(group / "sweep.csv") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    return run_quiet_study(tmp_path_factory.mktemp("sweep"), SWEPT, ["train.epochs=3"], seed=1)


def test_six_trials_with_states_and_params_and_a_best_setting(swept):
    _, study_dir = swept
    group = study_dir / "p2" / "head"
    rows = sweep_rows(group)
    assert [row["trial"] for row in rows] == ["0", "1", "2", "3", "4", "5"]
    assert {row["state"] for row in rows} <= {"complete", "pruned"} and "complete" in {r["state"] for r in rows}
    assert all(1e-4 <= float(row["train.lr"]) <= 0.05 and row["augment"] in ("none", "seed") for row in rows)
    assert all(1 <= int(row["epochs"]) <= 3 for row in rows)
    state = read_json(group / "sweep.json")
    best = max((r for r in rows if r["state"] == "complete"), key=lambda r: float(r["value"]))
    assert state["finished"] and state["trials"] == 6 and float(best["value"]) == pytest.approx(state["best"]["value"])
    confirmed = read_json(group / "fingerprint.json")["config"]
    assert confirmed["train"]["lr"] == pytest.approx(state["best"]["params"]["train.lr"])
    assert confirmed["augment"] == state["best"]["params"]["augment"]


def test_trials_never_see_the_test_split(swept):
    _, study_dir = swept
    for trial in sorted((study_dir / "p2" / "head" / "trials").iterdir()):
        if (trial / "metrics.json").exists():
            metrics = read_json(trial / "metrics.json")
            assert metrics["scored_on"] == "val" and "test" not in metrics
            with np.load(trial / "predictions.npz") as arrays:
                assert not any(name.startswith("test_") for name in arrays.files)
    assert "test" in read_json(study_dir / "p2" / "head" / "metrics.json")  # the confirmed best is scored


def test_the_best_is_compared_with_the_base_and_started_from(swept):
    _, study_dir = swept
    base = read_json(study_dir / "p2" / "head.base" / "fingerprint.json")["config"]
    assert base["train"]["lr"] == 0.002 and base["sweep"] is None
    trial = read_json(study_dir / "p2" / "head" / "trials" / "t000" / "fingerprint.json")["config"]
    confirmed = read_json(study_dir / "p2" / "head" / "fingerprint.json")["config"]
    # The confirmation and its base share a seed no trial used: no retrain of the winner's luck.
    assert trial["seed"] == 1 and base["seed"] == confirmed["seed"] == confirm_seed(1) != 1
    with open(study_dir / "comparisons.csv") as handle:
        kinds = {(r["a"], r["b"], r["kind"]) for r in csv.DictReader(handle)}
    assert ("p2/head", "p2/head.base", "sweep: best vs base setting") in kinds
    inputs = read_json(study_dir / "p2" / "after" / "fingerprint.json")["inputs"]["init_from"]
    assert inputs["file"] == "p2/head/best.pt"
    text = build_report(study_dir)[0].read_text()
    assert "### Sweep of p2/head" in text and "Best setting: **train.lr " in text
    assert "head's sweep: " in text and "seeds no trial used" in text and "plots/sweep-p2-head.png" in text


def test_a_rerun_trains_nothing_and_a_changed_sweep_is_a_changed_config(swept, tmp_path):
    study, study_dir = swept
    logs = []
    run_study(study, ["train.epochs=3"], out_dir=study_dir.parent, log=logs.append)
    assert not [line for line in logs if line.startswith("==")]
    more = tmp_path / "more.yaml"
    more.write_text(study.read_text().replace("trials: 6", "trials: 7"))
    with pytest.raises(StudyError, match="(?s)p2/head \\(its sweep\\).*sweep.trials: 6 -> 7"):
        run_study(more, ["train.epochs=3"], out_dir=study_dir.parent, **QUIET)


KILLER = """
import sys
from cnnstudy.runner.study import run_study
run_study(sys.argv[1], ["train.epochs=3"], out_dir=sys.argv[2], log=lambda _: None)
"""


def test_a_killed_sweep_continues_to_exactly_its_budget(tmp_path):
    data = make_image_folder(tmp_path / "colors", per_class=10)
    study = write_study(tmp_path / "s.yaml", data, SWEPT)
    (tmp_path / "go.py").write_text(KILLER)
    group = tmp_path / "runs" / "tiny" / "p2" / "head"
    process = subprocess.Popen([sys.executable, str(tmp_path / "go.py"), str(study), str(tmp_path / "runs")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if (group / "sweep.csv").exists() and sum(r["state"] != "running" for r in sweep_rows(group)) >= 2:
            break
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done_before = sum(r["state"] != "running" for r in sweep_rows(group))
    assert 2 <= done_before < 6, "the sweep finished before it could be killed"
    logs = []
    run_study(study, ["train.epochs=3"], out_dir=tmp_path / "runs", log=logs.append)
    rows = sweep_rows(group)
    assert [r["trial"] for r in rows] == [str(k) for k in range(6)]
    assert all(r["state"] in ("complete", "pruned") for r in rows)
    counters = [line.split("]")[0] for line in logs if line.startswith("[")]  # trials counted as they finish
    assert counters == [f"[{k}/6" for k in range(done_before + 1, 7)]
    trained = [line.split(":")[0] for line in logs if line.startswith(("== p2/head/t", "skip p2/head/t"))]
    assert len(trained) == 6 - done_before  # only what the kill left undone
    assert read_json(group / "sweep.json")["finished"] and (group / "metrics.json").exists()


def test_a_diverging_trial_is_recorded_and_the_search_goes_on(tmp_path):
    data = make_image_folder(tmp_path / "colors", per_class=10)
    phases = """
  - name: p1
    runs:
      - name: lr
        model: cnn_slim
        sweep:
          method: grid
          params: {train.lr: [0.002, 1.0e+30]}
"""
    study_dir = run_study(write_study(tmp_path / "s.yaml", data, phases), ["train.epochs=2"],
                          out_dir=tmp_path / "runs", **QUIET)
    rows = {r["train.lr"]: r for r in sweep_rows(study_dir / "p1" / "lr")}
    assert len(rows) == 2  # grid: each point once, although trials defaults to 16
    assert rows["1e+30"]["state"] == "diverged" and "training diverged at epoch 1" in rows["1e+30"]["error"]
    import optuna  # the sampler is told: a pruned trial, which TPE ranks below every finished one

    stored = optuna.load_study(study_name="p1/lr", storage=f"sqlite:///{study_dir / 'p1' / 'lr' / 'sweep.db'}")
    assert {t.params["train.lr"]: t.state.name for t in stored.trials}[1e30] == "PRUNED"
    assert rows["0.002"]["state"] == "complete"
    assert read_json(study_dir / "p1" / "lr" / "fingerprint.json")["config"]["train"]["lr"] == 0.002


@pytest.mark.parametrize("sweep, message", [
    ("{params: {data.dataset: [a, b]}}", "sweep.params.data.dataset cannot be swept"),
    ("{params: {train.lrr: [0.1]}}", "sweep.params.train.lrr is not a setting"),
    ("{params: {augment: [none, mixup]}}", "sweep.params.augment value 'mixup'"),
    ("{params: {model.freeze: [head, 'last:0']}}", "(a value its sweep would try)"),
    ("{method: grid, params: {train.lr: {low: 0.001, high: 0.1}}}", "grid needs a list of values"),
    ("{params: {train.lr: {low: 0.1, high: 0.01}}}", "must be below high"),
    ("{params: {model.init_from: [p1/a]}}", "sweep.params.model.init_from cannot be swept: every trial starts"),
])
def test_a_sweep_that_cannot_run_stops_before_training(tmp_path, sweep, message):
    data = make_image_folder(tmp_path / "colors", per_class=4)
    phases = f"""
  - name: p1
    runs:
      - {{name: a, model: cnn_slim, sweep: {sweep}}}
"""
    with pytest.raises(StudyError, match=message.replace("(", "\\(").replace(")", "\\)")):
        run_study(write_study(tmp_path / "s.yaml", data, phases), out_dir=tmp_path / "runs", **QUIET)
    assert not (tmp_path / "runs" / "tiny" / "p1").exists()


def test_repeats_on_a_swept_run_point_to_confirm(tmp_path):
    data = make_image_folder(tmp_path / "colors", per_class=4)
    phases = """
  - name: p1
    runs:
      - {name: a, model: cnn_slim, repeats: 3, sweep: {params: {train.lr: [0.1, 0.01]}}}
"""
    with pytest.raises(StudyError, match="set sweep.confirm: 3 instead"):
        run_study(write_study(tmp_path / "s.yaml", data, phases), out_dir=tmp_path / "runs", **QUIET)


def simulated_sweep(tmp_path, prune: str) -> Sweep:
    cfg = RunConfig.model_validate({
        "name": "head", "phase": "p1", "model": "cnn_slim", "data": {"dataset": str(tmp_path)}, "train": {"epochs": 9},
        "sweep": {"trials": 40, "method": "random", "prune": prune,
                  "params": {"train.lr": {"low": 1.0e-4, "high": 0.1, "log": True}}}})
    return Sweep(cfg, tmp_path / prune, {})


def train_trial(sweep: Sweep, value: float) -> str:
    """One trial as a worker trains it (its PruneWatch after every epoch) and the driver records it."""
    spec = sweep.next_trial()
    watch, rows, state = PruneWatch(spec), [], "complete"
    try:
        for epoch in range(1, 10):
            rows.append({"epoch": epoch, "val_acc": value})
            watch(rows[-1])
    except TrialPruned:
        state = "pruned"
    sweep.record(spec.number, {"state": state, "history": rows, "rung_values": watch.rung_values()})
    return state


@pytest.mark.parametrize("prune", ["median", "hyperband"])
def test_a_trial_far_below_the_finished_ones_is_pruned(tmp_path, prune):
    sweep = simulated_sweep(tmp_path, prune)
    assert [train_trial(sweep, 0.9) for _ in range(12)] == ["complete"] * 12
    # Hyperband puts a trial in a bracket by its number; in some brackets it judges only at the end.
    assert "pruned" in [train_trial(sweep, 0.1) for _ in range(6)]


def test_the_last_epoch_is_never_pruned(tmp_path):
    """A trial that ran all its epochs is complete, not "pruned after epoch 9" of 9."""
    sweep = simulated_sweep(tmp_path, "median")
    for _ in range(3):
        train_trial(sweep, 0.9)
    for last, pruned in ((8, True), (9, False)):
        watch = PruneWatch(sweep.next_trial())
        for epoch in range(1, last):
            watch.trial.report(0.1, epoch)
        with pytest.raises(TrialPruned) if pruned else nullcontext():
            watch({"epoch": last, "val_acc": 0.1})
