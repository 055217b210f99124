import shutil

import pytest

from cnnstudy.config import StudyError
from cnnstudy.fileio import read_json, read_jsonl
from cnnstudy.report.report import build_report
from cnnstudy.runner.study import plan_study, run_study

from helpers import make_image_folder, write_study

PHASES = """
  - name: p1
    title: From scratch
    runs:
      - {name: base, model: cnn_slim}
  - name: p3
    runs:
      - {name: reg, model: cnn_regularized, augment: seed, train: {epochs: 1}}
"""


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    data = make_image_folder(tmp / "colors", per_class=16)
    study = write_study(tmp / "tiny.yaml", data, PHASES)
    logs: list[str] = []
    study_dir = run_study(study, ["train.lr=0.003"], out_dir=tmp / "runs", log=logs.append)
    return study, study_dir, logs


def test_every_artefact_is_written(finished_study):
    _, study_dir, logs = finished_study
    run_dir = study_dir / "p1" / "base"
    for name in ("config.yaml", "history.jsonl", "best.pt", "last.pt", "metrics.json", "predictions.npz",
                 "model.txt", "misclassified.csv", "split.json", "plots/curves.png", "plots/roc.png",
                 "plots/confusion.png", "plots/predictions.png"):
        assert (run_dir / name).stat().st_size > 0, name
    history = read_jsonl(run_dir / "history.jsonl")
    assert [row["epoch"] for row in history] == [1, 2]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "seconds"} <= set(history[0])
    assert "lr: 0.003" in (run_dir / "config.yaml").read_text()
    assert any(line.startswith("Epoch [2/2], Loss: ") and "Validation Accuracy: " in line for line in logs)
    assert (study_dir / "p3" / "reg" / "split.json").read_text() == (run_dir / "split.json").read_text()


def test_summary_has_a_row_per_run(finished_study):
    _, study_dir, _ = finished_study
    lines = (study_dir / "summary.csv").read_text().splitlines()
    assert lines[0].startswith("phase,run,repeat,seed,model,init,dataset,params,trainable,epochs,best_epoch")
    assert [line.split(",")[:5] for line in lines[1:]] == [["p1", "base", "", "0", "cnn_slim"],
                                                          ["p3", "reg", "", "0", "cnn_regularized"]]
    grouped = (study_dir / "summary_grouped.csv").read_text().splitlines()
    assert grouped[0].startswith("phase,run,model,init,dataset,repeats,scored_on,test_acc_mean,test_acc_std")
    assert len(grouped) == 3
    assert (study_dir / "comparisons.csv").read_text().startswith("family,kind,a,b,class,dataset,test_images,diff")
    assert "\r" not in (study_dir / "comparisons.csv").read_text() + (study_dir / "summary.csv").read_text()


def test_rerun_skips_finished_runs(finished_study):
    study, study_dir, _ = finished_study
    before = (study_dir / "p1" / "base" / "metrics.json").stat().st_mtime_ns
    logs: list[str] = []
    run_study(study, ["train.lr=0.003"], out_dir=study_dir.parent, log=logs.append)
    assert sum("skip" in line for line in logs) == 2
    assert (study_dir / "p1" / "base" / "metrics.json").stat().st_mtime_ns == before


def test_report_rebuilds_from_files_alone(finished_study, tmp_path):
    _, study_dir, _ = finished_study
    copy = tmp_path / "tiny"
    shutil.copytree(study_dir, copy, ignore=shutil.ignore_patterns("*.pt", "report.*"))
    md, html = build_report(copy)
    text = md.read_text()
    assert "## p1: From scratch" in text and "Verdict: **" in text and "Epoch [2/2]" in text
    assert "OptimizedCNNModel(" in text and "| p3 | reg | — | 0 | cnn_regularized |" in text
    pngs = [p for p in copy.rglob("plots/*.png") if "trials" not in p.parts]  # each run's, then the study's
    page = html.read_text()
    figures = page.count("data:image/png;base64,") + page.count("data:image/jpeg;base64,")
    assert figures == len(pngs) >= 2 * 6 + 3 and page.count("<figcaption>") == figures
    assert text.count("![") == len(pngs) and "*Confusion matrix on the scored images: rows are" in text


def test_tiny_training_beats_chance_clearly(finished_study):
    _, study_dir, _ = finished_study
    metrics = read_json(study_dir / "p1" / "base" / "metrics.json")
    assert metrics["best_val_acc"] >= 0.75  # 3 classes: chance is 0.33


def test_the_report_splits_a_phase_step_by_class_as_an_exploratory_family(finished_study):
    import csv

    _, study_dir, _ = finished_study
    with open(study_dir / "comparisons.csv") as handle:
        rows = list(csv.DictReader(handle))
    by_class = [r for r in rows if r["kind"] == "by class"]
    assert sorted(r["class"] for r in by_class) == ["blue", "green", "red"]
    assert all(r["a"] == "p3/reg" and r["b"] == "p1/base" and r["family"] == "exploratory" for r in by_class)
    assert all(r["family_size"] == "3" and float(r["p"]) == min(1.0, 3 * float(r["p_raw"])) for r in by_class)
    assert [r["family"] for r in rows if r["kind"] != "by class"] == ["confirmatory"]  # its own family of one
    text = (study_dir / "report.md").read_text()
    assert "## By class (exploratory)" in text and "- p3/reg vs p1/base by class: helped most " in text
    assert text.index("## By class (exploratory)") > text.index("## p3")  # after the phases, not the answer
    assert "confusions that grew most: " in text and "Per-class accuracy (recall, %) on the" in text
    assert "| class | p1/base | p3/reg |" in text


def test_unknown_key_is_named_with_a_suggestion(tmp_path, image_folder):
    study = write_study(tmp_path / "s.yaml", image_folder, PHASES.replace("augment: seed", "augmnet: seed"))
    where = r"(?s)s.yaml: phase 'p3', run 'reg'"
    with pytest.raises(StudyError, match=where + ".*unknown key augmnet.*did you mean augment"):
        plan_study(study)
    with pytest.raises(StudyError, match="--set train.epoch=3: unknown key train.epoch .*did you mean train.epochs"):
        plan_study(write_study(tmp_path / "t.yaml", image_folder, PHASES), ["train.epoch=3"])


def test_bad_yaml_wrong_type_and_bad_references_are_named(tmp_path, image_folder):
    (tmp_path / "bad.yaml").write_text("name: x\nphases: [\n")
    with pytest.raises(StudyError, match="bad.yaml is not valid YAML"):
        plan_study(tmp_path / "bad.yaml")
    study = write_study(tmp_path / "s.yaml", image_folder, PHASES)
    with pytest.raises(StudyError, match="--set train.epochs=many: .*got 'many'"):
        plan_study(study, ["train.epochs=many"])
    with pytest.raises(StudyError, match="image_size 40 is below cnn_slim's minimum of 46"):
        plan_study(study, ["data.image_size=40"])
    later = PHASES.replace("model: cnn_slim}", "model: {name: cnn_slim, init_from: p3/reg}}")
    with pytest.raises(StudyError, match="init_from 'p3/reg' names no earlier run"):
        plan_study(write_study(tmp_path / "u.yaml", image_folder, later))
    with pytest.raises(StudyError, match="data.dataset.*not found"):
        plan_study(study, [f"data.dataset={tmp_path / 'missing'}"])


def test_batch_larger_than_the_train_set_stops_before_any_training(tmp_path, image_folder):
    study = write_study(tmp_path / "s.yaml", image_folder, PHASES)
    with pytest.raises(StudyError, match="run p1/base: train.batch_size 64 is larger than the 24 training"):
        run_study(study, ["train.batch_size=64"], out_dir=tmp_path / "runs", log=lambda _: None)
    assert not (tmp_path / "runs" / "tiny" / "p1").exists()


def test_a_freeze_policy_the_model_cannot_take_is_named_before_training(tmp_path, image_folder):
    study = write_study(tmp_path / "s.yaml", image_folder, PHASES)
    with pytest.raises(StudyError, match=r"run p1/base: model.freeze: .*conv9"):
        plan_study(study, ["model.freeze=[conv9]"])
    with pytest.raises(StudyError, match=r"model.freeze: 'last:0' is not a policy"):
        plan_study(study, ["model.freeze=last:0"])


@pytest.mark.parametrize("name, count, datasets", [("quick", 7, ("cifar10", "hymenoptera")),
                                                   ("seed", 10, ())])
def test_shipped_studies_are_valid(name, count, datasets):
    from cnnstudy.data.catalogue import CATALOGUE
    from helpers import REPO, shared_dataset

    for dataset in datasets:
        shared_dataset(dataset)
    _, runs = plan_study(REPO / "studies" / f"{name}.yaml")
    assert len(runs) == count
    assert all(run.train.batch_size == 32 for run in runs)
    assert {run.data.dataset for run in runs} <= set(CATALOGUE)  # runs on any machine with internet


def test_the_torchvision_loader_runs_a_study_and_is_repeatable(tmp_path, image_folder):
    study = write_study(tmp_path / "s.yaml", image_folder, PHASES)
    overrides = ["data.loader=torchvision", "train.epochs=1"]
    first = run_study(study, overrides, out_dir=tmp_path / "a", log=lambda _: None)
    second = run_study(study, overrides, out_dir=tmp_path / "b", log=lambda _: None)
    for run in ("p1/base", "p3/reg"):
        a, b = (read_jsonl(d / run / "history.jsonl") for d in (first, second))
        assert [{k: v for k, v in row.items() if k != "seconds"} for row in a] == \
               [{k: v for k, v in row.items() if k != "seconds"} for row in b]
    assert "loader: torchvision" in (first / "p3" / "reg" / "config.yaml").read_text()


def test_config_errors_that_used_to_surface_mid_study_are_found_up_front(tmp_path, image_folder):
    study = write_study(tmp_path / "s.yaml", image_folder, PHASES)
    with pytest.raises(StudyError, match="run p1/base: model.pretrained: cnn_slim has no pretrained weights"):
        plan_study(study, ["model.pretrained=true"])
    with pytest.raises(StudyError, match=r"model.freeze: \['global_avg_pool'\] leaves no parameter"):
        plan_study(study, ["model.freeze=[global_avg_pool]"])
    with pytest.raises(StudyError, match="fp16 needs a CUDA device"):
        plan_study(study, ["train.precision=fp16", "device=cpu"])
    import torch

    torch.save({"model": {"conv1.weight": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(StudyError, match="(?s)model.weights: .*other.pt does not fit.*another architecture"):
        plan_study(study, [f"model.weights={tmp_path / 'other.pt'}"])
