"""The first half hour: mistakes answered before torch loads, init's budget said on the terminal,
inspect refusing what run refuses, and the offline messages that name the way round."""
import json
import subprocess
import sys

import pytest

from cnnstudy.config import StudyError
from cnnstudy.use.budget import duration, leave_out, outcome_lines
from cnnstudy.runner.planning.only import only_without
from cnnstudy.runner.planning.studyfile import load_study

from helpers import make_image_folder, write_study

PHASES = """
  - name: p1
    runs:
      - {name: base, model: cnn_slim}
  - name: p2
    runs:
      - {name: head, model: {name: cnn_slim, init_from: p1/base, freeze: head}}
      - {name: res, model: {name: resnet18, pretrained: true}}
"""


def run_without_torch(args: list[str], cwd) -> tuple[int, str, bool]:
    """`cnnstudy ARGS` in a fresh interpreter: exit code, stderr, and whether torch was imported."""
    code = ("import sys; from cnnstudy.cli import main; rc = main(sys.argv[1:]); "
            "print('TORCH' if 'torch' in sys.modules else 'NO TORCH'); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, timeout=120)
    return done.returncode, done.stderr, done.stdout.strip().endswith("NO TORCH")


def test_the_model_names_known_without_torch_are_the_registrys_and_torchvisions():
    import torchvision

    from cnnstudy.models.names import OWN_MODELS, TORCHVISION_CLASSIFIERS, unknown_model_problem
    from cnnstudy.models.registry import list_models, model_problem

    assert list(OWN_MODELS) == list_models()
    assert list(TORCHVISION_CLASSIFIERS) == torchvision.models.list_models(module=torchvision.models)
    assert model_problem("resnet5") == unknown_model_problem("resnet5")  # one message, with torch or without


def test_a_typo_a_bad_set_pair_and_a_missing_folder_are_answered_before_torch(tmp_path):
    study = write_study(tmp_path / "s.yaml", make_image_folder(tmp_path / "colors", per_class=2), PHASES)
    study.write_text(study.read_text().replace("model: cnn_slim}", "model: cnn_slimm, epohcs: 2}", 1))
    code, err, light = run_without_torch(["run", str(study), "--set", "train.lr=fast", "--dataset", "x=/nowhere"],
                                         tmp_path)
    assert code == 2 and light, err
    assert "unknown model 'cnn_slimm' (did you mean cnn_slim?)" in err and "unknown key epohcs" in err
    assert "--set train.lr=fast" in err and "--dataset x=/nowhere: the study has no dataset role 'x'" in err
    assert "Traceback" not in err
    code, err, light = run_without_torch(["init", "mine.yaml", "--dataset", "main=/no/such/folder"], tmp_path)
    assert code == 2 and light and "give --dataset main= an existing folder" in err, err
    assert "set data.dataset" not in err and not (tmp_path / "mine.yaml").exists()


def test_a_study_that_reads_cleanly_is_checked_deeply_as_before(tmp_path):
    """What needs the models (a size below a model's minimum) still stops the study, after the quick check."""
    study = write_study(tmp_path / "s.yaml", make_image_folder(tmp_path / "colors", per_class=2), PHASES)
    code, err, light = run_without_torch(["run", str(study), "--set", "data.image_size=20"], tmp_path)
    assert code == 2 and not light and "image_size" in err and "46" in err, err


def test_a_timm_name_is_left_to_the_deep_check():
    """timm's zoo is only known with timm (and torch): the quick read accepts the name, the deep one judges it."""
    from cnnstudy.models.names import unknown_model_problem

    assert unknown_model_problem("timm/no_such_net") is None
    assert unknown_model_problem("resnet50") is None and "did you mean resnet50" in unknown_model_problem("resnet_50")


def test_load_study_without_depth_imports_no_torch(tmp_path):
    study = write_study(tmp_path / "s.yaml", make_image_folder(tmp_path / "colors", per_class=2), PHASES)
    code = ("import sys; from cnnstudy.runner.planning.precheck import check_study; check_study(sys.argv[1]); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code, str(study)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    _, runs, problems, _ = load_study(study, deep=False)
    assert not problems and [cfg.run_id for cfg in runs] == ["p1/base", "p2/head", "p2/res"]


def test_inspect_refuses_an_empty_class_folder_as_run_does(tmp_path, capsys):
    from cnnstudy.cli import main

    data = make_image_folder(tmp_path / "colors", per_class=3)
    (data / "empty").mkdir()
    assert main(["inspect", str(data), "--json"]) == 2
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["empty_classes"] == ["empty"] and report["imbalance_ratio"] is None
    message = captured.err.strip()
    assert message.startswith("error: class folder(s) empty in") and len(message.splitlines()) == 1
    study = write_study(tmp_path / "s.yaml", data, PHASES.split("  - name: p2")[0])
    assert main(["run", str(study), "--out", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err.strip() == message  # the very same words


def test_inspect_says_each_size_line_once(tmp_path, capsys):
    from cnnstudy.cli import main

    data = make_image_folder(tmp_path / "colors", per_class=2, size=40)
    assert main(["inspect", str(data)]) == 0
    out = capsys.readouterr().out
    assert out.count("smaller than 46 px") == 1 and "red/red_000.png: 40x40" in out, out


def test_only_without_names_whole_phases_and_drops_the_runs_that_start_from_a_left_out_one(tmp_path):
    study = write_study(tmp_path / "s.yaml", make_image_folder(tmp_path / "colors", per_class=2), PHASES)
    _, runs, _, _ = load_study(study, deep=False)
    assert only_without(runs, {"p2/res"}) == "p1,p2/head"
    assert only_without(runs, {"p1/base"}) == "p2/res"  # p2/head starts from p1/base
    assert only_without(runs, set()) == "p1,p2"
    assert only_without(runs, {"p1/base", "p2/res"}) is None


def test_the_budget_outcome_says_what_cannot_fit_and_what_to_leave_out():
    per_run = {"phase1/a": 100, "phase2/b": 100, "phase3/c": 100, "phase4/h": 6000, "phase4/l": 300, "phase4/r": 240}
    assert leave_out(per_run, 10) == [] and leave_out(per_run, 0.1) == ["phase4/h", "phase4/l", "phase4/r"]
    lines = outcome_lines(per_run, 0.1, 20, 48, leave_out(per_run, 0.1))
    assert lines[0] == "cannot fit 0.1 h: the smallest study here is about 1.9 h (phases 1-3 on 20 images a class at 48 px)"
    assert "too few to tell the models apart" in lines[1]
    assert lines[2] == "to come near 0.1 h, leave out phase4/h 1.7 h, phase4/l 5 min, phase4/r 4 min: about 5 min"
    assert outcome_lines(per_run, 10, None, 224, []) == ["estimated 1.9 h on this machine (every image at 224 px)"]
    assert "more than asked for" in outcome_lines(per_run, 0.01, 20, 48, leave_out(per_run, 0.01))[-1]
    assert [duration(s) for s in (30, 600, 7200)] == ["under a minute", "10 min", "2.0 h"]


def test_offline_with_a_missing_catalogue_dataset_names_cnnstudy_data(tmp_path, monkeypatch):
    from cnnstudy.runner.study import run_study

    monkeypatch.setenv("CNNSTUDY_DATA", str(tmp_path / "empty"))
    study = write_study(tmp_path / "s.yaml", make_image_folder(tmp_path / "colors", per_class=2), PHASES)
    study.write_text(study.read_text().replace(str(tmp_path / "colors"), "hymenoptera"))
    with pytest.raises(StudyError) as err:
        run_study(study, out_dir=tmp_path / "runs", offline=True, log=lambda _: None)
    assert "Point CNNSTUDY_DATA at the folder that holds hymenoptera/" in str(err.value)


def test_offline_without_weights_gives_the_only_line_that_runs_the_rest(tmp_path, monkeypatch):
    from cnnstudy.runner.study import plan_study, run_study

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no cached ImageNet weights
    study = write_study(tmp_path / "s.yaml", make_image_folder(tmp_path / "colors", per_class=2), PHASES)
    with pytest.raises(StudyError) as err:
        run_study(study, out_dir=tmp_path / "runs", offline=True, log=lambda _: None)
    assert "the same command with --only p1,p2/head" in str(err.value), str(err.value)
    with pytest.raises(StudyError) as err:  # asked for part of the study: the value keeps to that part
        run_study(study, out_dir=tmp_path / "runs", offline=True, only=["p2"], log=lambda _: None)
    assert "the same command with --only p1,p2/head" in str(err.value), str(err.value)
    with pytest.raises(StudyError) as err:
        run_study(study, out_dir=tmp_path / "runs", offline=True, only=["p2/res"], log=lambda _: None)
    assert "--only" not in str(err.value).split("nothing was trained")[1]  # nothing would be left to run
    from cnnstudy.runner.planning.inputs import ensure_inputs
    _, runs = plan_study(study)
    with pytest.raises(StudyError) as err:  # `data fetch --study` has no --only: it names `cnnstudy run`
        ensure_inputs(runs, tmp_path, offline=True, log=lambda _: None, rerun="cnnstudy run s.yaml --only {}")
    assert "cnnstudy run s.yaml --only p1,p2/head" in str(err.value)


def test_the_version_comes_from_one_place():
    from importlib.metadata import version
    from pathlib import Path

    import cnnstudy

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "cnnstudy._version.__version__"}
    assert version("cnnstudy") == cnnstudy.__version__
