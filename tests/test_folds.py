"""k-fold cross-validation: stratified, disjoint folds in the split file; one unit per fold, each
resumable; pooled out-of-fold predictions in which every image appears exactly once; comparisons
on all N images; init_from fold by fold; predict/export of a folded run use its best fold."""
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import cnnstudy
from cnnstudy.config import StudyError
from cnnstudy.data.errors import DataError
from cnnstudy.data.sources import open_source
from cnnstudy.data.splits import Split, deal_folds, make_split
from cnnstudy.fileio import read_json, read_jsonl
from cnnstudy.runner.study import run_study

from helpers import make_image_folder, write_study

FOLDED = """
  - name: p
    runs:
      - {name: slim, model: cnn_slim}
      - {name: reg, model: cnn_regularized}
      - {name: head, model: {name: cnn_regularized, init_from: p/reg, freeze: head}}
"""


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=80), st.integers(2, 20), st.integers(0, 2**16))
def test_folds_hold_every_image_once_stratified(labels, k, seed):
    items = [(f"img{i:03d}.png", label) for i, label in enumerate(labels)]
    folds = deal_folds(items, k, np.random.default_rng(seed))
    assert len(folds) == k and sorted(item for fold in folds for item in fold) == sorted(items)
    for label in set(labels):  # each class spread as evenly as it can be
        per_fold = [sum(1 for _, y in fold if y == label) for fold in folds]
        assert max(per_fold) - min(per_fold) <= 1
    assert max(map(len, folds)) - min(map(len, folds)) <= 1  # and the folds' sizes too


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 8), st.integers(0, 1000))
def test_each_folds_split_tests_its_fold_and_trains_on_the_rest(k, seed):
    items = [(f"{c}/{i}.png", c) for c in range(3) for i in range(k + 7)]
    base = Split("d", ["a", "b", "c"], sorted(items), [], [], folds=deal_folds(items, k, np.random.default_rng(seed)),
                 fold_val=0.2, fold_seed=seed)
    tested = []
    for j in range(k):
        split = base.fold(j)
        parts = [set(split.train), set(split.val), set(split.test)]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert set().union(*parts) == set(items) and split.test == base.folds[j]
        assert all(n > 0 for n in split.counts()["train"]) and all(n > 0 for n in split.counts()["val"])
        tested += split.test
    assert Counter(tested) == Counter(items)  # every image tested exactly once


def test_folds_are_part_of_the_split_file_and_its_digest(image_folder, tmp_path):
    source = open_source(str(image_folder))
    folded = make_split(source, (0.7, 0.15, 0.15), 0, None, folds=4)
    assert sorted(folded.train) == sorted(item for fold in folded.folds for item in fold)
    folded.save(tmp_path / "split.json")
    again = Split.load(tmp_path / "split.json")
    assert again.folds == folded.folds and again.digest == folded.digest
    assert folded.digest != make_split(source, (0.7, 0.15, 0.15), 0, None, folds=3).digest
    assert folded.fold(1).digest == again.fold(1).digest  # a fold's split is made the same way each time


def test_folds_refuse_a_test_folder_and_too_small_classes(tmp_path):
    for part in ("train", "val", "test"):
        make_image_folder(tmp_path / "split" / part, per_class=6, seed=len(part))
    with pytest.raises(DataError, match="has its own test/ folder.*move test/'s images into train/"):
        make_split(open_source(str(tmp_path / "split")), (0.7, 0.15, 0.15), 0, None, folds=5)
    small = make_image_folder(tmp_path / "small", per_class=3)
    with pytest.raises(DataError, match=r"blue \(3\).*fewer images than folds"):
        make_split(open_source(str(small)), (0.7, 0.15, 0.15), 0, None, folds=4)


@pytest.fixture(scope="module")
def folded_study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("folds")
    data = make_image_folder(tmp / "colors", per_class=10, size=40)
    other = make_image_folder(tmp / "two", classes=("a", "b"), per_class=8, size=40, seed=5)
    phases = FOLDED + f"      - {{name: other, model: {{name: cnn_regularized, init_from: p/reg, freeze: head}}, " \
                      f"data: {{dataset: {other}, split: {{folds: null}}}}}}\n"
    study = write_study(tmp / "s.yaml", data, phases, extra_defaults="  seed: 0")
    study.write_text(study.read_text().replace("image_size: 48}", "image_size: 48, split: {folds: 3}}")
                     .replace("epochs: 2", "epochs: 1, precision: fp32"))
    return study, run_study(study, out_dir=tmp / "runs", log=lambda _: None), data


def test_pooled_predictions_hold_every_image_exactly_once(folded_study):
    _, study_dir, data = folded_study
    run = study_dir / "p" / "slim"
    with np.load(run / "predictions.npz") as pooled:
        ids, targets, probs = pooled["test_ids"], pooled["test_targets"], pooled["test_probs"]
    on_disk = sorted(str(p.relative_to(data)) for p in data.rglob("*.png"))
    assert sorted(ids.tolist()) == on_disk and len(set(ids.tolist())) == 30
    classes = sorted(p.name for p in data.iterdir())
    assert [classes[t] for t in targets] == [i.split("/")[0] for i in ids]
    metrics = read_json(run / "metrics.json")
    fold_ids = [np.load(run / f"f{j}" / "predictions.npz")["test_ids"].tolist() for j in range(3)]
    assert sorted(sum(fold_ids, [])) == on_disk  # folds disjoint, together all images
    assert metrics["test"]["n"] == 30 and metrics["folds"]["k"] == 3
    assert metrics["test"]["accuracy"] == pytest.approx(float((probs.argmax(1) == targets).mean()))
    report = (study_dir / "report.md").read_text()
    assert "3-fold cross-validation, every one of the 30 images tested once" in report


def test_init_from_a_folded_run_starts_each_fold_from_its_own_and_other_data_from_the_best(folded_study):
    _, study_dir, _ = folded_study
    for j in range(3):
        inputs = read_json(study_dir / "p" / "head" / f"f{j}" / "fingerprint.json")["inputs"]
        assert inputs["init_from"]["file"] == f"p/reg/f{j}/best.pt"
    vals = read_json(study_dir / "p" / "reg" / "metrics.json")["folds"]["val_acc"]
    best = vals.index(max(vals))
    assert read_json(study_dir / "p" / "other" / "fingerprint.json")["inputs"]["init_from"]["file"] == f"p/reg/f{best}/best.pt"


def test_two_folded_runs_are_compared_on_all_images_with_per_fold_differences(folded_study):
    _, study_dir, _ = folded_study
    report = (study_dir / "report.md").read_text()
    line = next(line for line in report.splitlines() if line.startswith("| p/head | p/reg"))
    assert "| 30 colors |" in line and "pooled out-of-fold predictions of 3 folds, per fold" in line


def test_predict_of_a_folded_run_uses_its_best_fold_and_says_so(folded_study, capsys):
    _, study_dir, data = folded_study
    run = cnnstudy.load_run(study_dir / "p" / "reg")
    vals = read_json(study_dir / "p" / "reg" / "metrics.json")["folds"]["val_acc"]
    assert run.run_dir == study_dir / "p" / "reg" / f"f{vals.index(max(vals))}"
    from cnnstudy.cli import main
    assert main(["predict", str(study_dir / "p" / "reg"), str(data / "red")]) == 0
    assert "p/reg is a 3-fold run (3 models); using its fold" in capsys.readouterr().err
    assert main(["predict", str(study_dir / "p" / "reg" / "f1"), str(data / "red")]) == 0
    assert "fold" not in capsys.readouterr().err  # a fold named by its folder is not "chosen"


def test_switching_folds_on_or_off_is_refused_until_forced(folded_study):
    study, study_dir, _ = folded_study
    with pytest.raises(StudyError, match="holds k-fold results"):
        run_study(study, ["data.split.folds=null"], out_dir=study_dir.parent, log=lambda _: None)


def test_a_killed_folded_run_resumes_to_identical_numbers(tmp_path):
    data = make_image_folder(tmp_path / "colors", per_class=14, size=48)
    study = write_study(tmp_path / "s.yaml", data, """
  - name: p3
    runs:
      - {name: reg, model: cnn_regularized, augment: seed, train: {epochs: 3}}
""", extra_defaults="  seed: 0")
    study.write_text(study.read_text().replace("image_size: 48}", "image_size: 48, split: {folds: 2}}"))
    reference = run_study(study, out_dir=tmp_path / "ref", log=lambda _: None) / "p3" / "reg"
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "cnnstudy", "run", str(study), "--out", str(out)]
    history = out / "tiny" / "p3" / "reg" / "f1" / "history.jsonl"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not (history.exists() and len(read_jsonl(history)) >= 1) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)  # fold 0 finished, fold 1 in its second epoch
    process.wait()
    assert not (history.parent / "metrics.json").exists(), "the fold finished before it could be killed"
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    resumed = out / "tiny" / "p3" / "reg"
    for folder in ("f0", "f1", "."):
        with np.load(reference / folder / "predictions.npz") as a, np.load(resumed / folder / "predictions.npz") as b:
            for key in a:
                np.testing.assert_array_equal(a[key], b[key])
    assert read_json(reference / "metrics.json")["test"] == read_json(resumed / "metrics.json")["test"]
