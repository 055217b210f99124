import pytest
import torch

from cnnstudy.config import StudyError
from cnnstudy.fileio import read_json
from cnnstudy.runner.study import run_study

from helpers import make_image_folder, write_study


def test_init_from_carries_the_model_to_a_new_dataset_with_a_new_head(tmp_path):
    colors = make_image_folder(tmp_path / "colors", per_class=10)
    two = make_image_folder(tmp_path / "two", classes=("green", "blue"), per_class=10, seed=1)
    phases = f"""
  - name: p3
    runs:
      - {{name: reg, model: cnn_regularized}}
  - name: p4
    defaults: {{data: {{dataset: {two}}}}}
    runs:
      - {{name: head, model: {{name: cnn_regularized, init_from: p3/reg, freeze: head}}}}
"""
    study_dir = run_study(write_study(tmp_path / "s.yaml", colors, phases), out_dir=tmp_path / "runs",
                          log=lambda _: None)
    metrics = read_json(study_dir / "p4" / "head" / "metrics.json")
    assert metrics["classes"] == ["blue", "green"] and metrics["init"] == "from p3/reg"
    assert set(metrics["trainable_names"]) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    assert metrics["trainable_params"] == 256 * 512 + 512 + 512 * 2 + 2
    source = torch.load(study_dir / "p3" / "reg" / "best.pt", weights_only=True)["model"]
    tuned = torch.load(study_dir / "p4" / "head" / "last.pt", weights_only=True)["model"]
    for key, value in source.items():
        if not key.startswith(("fc1.", "fc2.")):
            assert torch.equal(tuned[key], value), f"{key} is frozen (BatchNorm statistics too) but moved"
    assert tuned["fc2.weight"].shape == (2, 512)
    summary = (study_dir / "summary.md").read_text()
    assert "| p4 | head | — | 0 | cnn_regularized | from p3/reg | two | 521,986 | 132,610 |" in summary


def test_init_from_a_run_of_another_model_is_refused(tmp_path):
    colors = make_image_folder(tmp_path / "colors", per_class=8)
    phases = """
  - name: p1
    runs:
      - {name: slim, model: cnn_slim, train: {epochs: 1}}
  - name: p4
    runs:
      - {name: bad, model: {name: cnn_regularized, init_from: p1/slim}}
"""
    with pytest.raises(StudyError, match="init_from p1/slim trains a cnn_slim, but this run builds a cnn_reg"):
        run_study(write_study(tmp_path / "s.yaml", colors, phases), out_dir=tmp_path / "runs", log=lambda _: None)
    assert not (tmp_path / "runs" / "tiny" / "p1").exists()  # refused before the first run trained


def test_a_model_carried_from_a_pretrained_run_keeps_its_input_normalization(tmp_path):
    from cnnstudy.models.registry import EFFICIENTNET_LITE_MEAN

    colors = make_image_folder(tmp_path / "colors", per_class=8)
    two = make_image_folder(tmp_path / "two", classes=("green", "blue"), per_class=8, seed=1)
    phases = f"""
  - name: p1
    runs:
      - {{name: lite, model: {{name: efficientnet_lite0, pretrained: true, freeze: head}}, train: {{epochs: 1}}}}
  - name: p4
    defaults: {{data: {{dataset: {two}}}}}
    runs:
      - {{name: tuned, model: {{name: efficientnet_lite0, init_from: p1/lite, freeze: "last:3"}}, train: {{epochs: 1}}}}
"""
    study_dir = run_study(write_study(tmp_path / "s.yaml", colors, phases), out_dir=tmp_path / "runs",
                          log=lambda _: None)
    tuned = torch.load(study_dir / "p4" / "tuned" / "best.pt", weights_only=True)
    assert tuned["normalization"][0] == pytest.approx(list(EFFICIENTNET_LITE_MEAN))
    assert tuned["model"]["_fc.weight"].shape == (2, 1280)
