"""Your own folders: dataset roles a study names once and the command line replaces, --set scoped to
a phase or a run, --only, and `cnnstudy init`."""
import re
import shlex
from pathlib import Path

import pytest
import yaml

from cnnstudy.cli import main
from cnnstudy.config import StudyError
from cnnstudy.fileio import read_json
from cnnstudy.runner.study import plan_study, run_study

from helpers import REPO, make_image_folder

ROLES = """name: roles
datasets:
  main: {main}
  pick: {{dataset: {other}, classes: [red, green]}}
defaults:
  data: {{dataset: main, image_size: 48}}
  train: {{epochs: 1, batch_size: 8}}
phases:
  - name: p1
    runs:
      - {{name: a, model: cnn_slim}}
  - name: p2
    runs:
      - {{name: b, model: cnn_slim, data: {{dataset: pick}}}}
      - {{name: c, model: {{name: cnn_slim, init_from: p1/a, freeze: head}}, data: {{dataset: pick}}}}
"""


@pytest.fixture
def study(tmp_path):
    main_data = make_image_folder(tmp_path / "main", per_class=6)
    other = make_image_folder(tmp_path / "other", classes=("red", "green", "blue", "grey"), per_class=6)
    path = tmp_path / "roles.yaml"
    path.write_text(ROLES.format(main=main_data, other=other))
    return path


def data_of(runs):
    return {cfg.run_id: (Path(cfg.data.dataset).name, cfg.data.classes) for cfg in runs}


def test_runs_name_a_role_and_the_command_line_replaces_it_whole(study, tmp_path):
    _, runs = plan_study(study)
    assert data_of(runs) == {"p1/a": ("main", None), "p2/b": ("other", ["red", "green"]),
                             "p2/c": ("other", ["red", "green"])}
    mine = make_image_folder(tmp_path / "mine", classes=("cat", "dog"), per_class=6)
    _, runs = plan_study(study, datasets={"pick": str(mine)})
    assert data_of(runs)["p2/b"] == ("mine", None)  # the role's classes went with it


def test_a_role_error_is_one_line_naming_the_roles(study, tmp_path):
    with pytest.raises(StudyError, match=r"--dataset pets=x: the study has no dataset role 'pets'; its roles: main, pick"):
        plan_study(study, datasets={"pets": "x"})
    study.write_text(study.read_text().replace("data: {dataset: pick}}", "data: {dataset: pick, classes: [red, blue]}}", 1))
    with pytest.raises(StudyError, match="'pick' is a dataset role whose classes belong to it"):
        plan_study(study)


def test_a_missing_folder_shared_by_runs_is_said_once(study, tmp_path):
    with pytest.raises(StudyError) as err:  # named by the --dataset pair that gave it, and its fix names the pair
        plan_study(study, datasets={"pick": str(tmp_path / "nothere")})
    assert str(err.value).count("not found") == 1 and f"--dataset pick={tmp_path / 'nothere'}: dataset" in str(err.value)
    assert "give --dataset pick= an existing folder" in str(err.value)
    study.write_text(re.sub(r"pick: \{dataset: [^,]+,", f"pick: {{dataset: {tmp_path / 'gone'},", study.read_text()))
    with pytest.raises(StudyError) as err:  # named in the file: said once for the runs that use it
        plan_study(study)
    assert str(err.value).count("not found") == 1 and "runs p2/b, p2/c: data.dataset: dataset" in str(err.value)
    from cnnstudy.runner.planning.studyfile import merge_by_run
    assert merge_by_run(["run p/a: twice", "run p/a: twice", "run p/b: twice", "no run: x", "no run: x"]) == \
        ["runs p/a, p/b: twice", "no run: x"]


def test_set_reaches_every_run_a_phase_or_one_run_in_that_order(study):
    _, runs = plan_study(study, ["train.lr=0.1", "p2.train.lr=0.2", "p2/c:train.lr=0.3"])
    assert {cfg.run_id: cfg.train.lr for cfg in runs} == {"p1/a": 0.1, "p2/b": 0.2, "p2/c": 0.3}
    with pytest.raises(StudyError, match=r"--set p9/x:train.lr=1: 'p9/x' is no run or phase of this study "
                                         r"\(phases: p1, p2; runs: p1/a, p2/b, p2/c\)"):
        plan_study(study, ["p9/x:train.lr=1"])
    with pytest.raises(StudyError, match=r"--set phase2.train.lr=1: 'phase2' is neither a run setting nor a phase"):
        plan_study(study, ["phase2.train.lr=1"])
    for typed in ("p2.train.lrr=0.1", "p2/c:train.lrr=0.1"):  # a problem quotes the pair as typed, scope and all
        with pytest.raises(StudyError, match=rf"--set {re.escape(typed)}: unknown key train.lrr \(did you mean train.lr\?\)"):
            plan_study(study, [typed])


def test_only_runs_what_it_names_and_what_that_starts_from(study, tmp_path):
    logs = []
    study_dir = run_study(study, out_dir=tmp_path / "runs", only=["p2/c"], log=logs.append)
    assert "--only: p1/a runs too, since p2/c starts from it" in logs
    assert (study_dir / "p1" / "a" / "metrics.json").exists() and (study_dir / "p2" / "c" / "metrics.json").exists()
    assert not (study_dir / "p2" / "b").exists()
    report = (study_dir / "report.md").read_text()
    assert "No results: not finished yet" in report and "Datasets: **main**: " in report
    assert "**pick**: other (classes red, green; p2/c)" in report
    with pytest.raises(StudyError, match=r"--only p3: no such run or phase"):
        run_study(study, out_dir=tmp_path / "runs", only=["p3"], log=lambda _: None)
    with pytest.raises(StudyError, match=r"--only names no run or phase"):
        run_study(study, out_dir=tmp_path / "runs", only=[","], log=lambda _: None)
    with pytest.raises(StudyError, match=r"--force p2/b: --only leaves it out; add it to --only"):
        run_study(study, out_dir=tmp_path / "runs", only=["p1"], force=["p2/b"], log=lambda _: None)
    mine = make_image_folder(tmp_path / "mine", classes=("cat", "dog"), per_class=6)
    run_study(study, out_dir=tmp_path / "runs", only=["p2/b"], datasets={"pick": str(mine)}, log=lambda _: None)
    run_study(study, out_dir=tmp_path / "runs", only=["p1"], log=lambda _: None)
    datasets = (study_dir / "report.md").read_text().split("Datasets: ", 1)[1].split("\n", 1)[0]
    assert "; mine (p2/b); **pick**: other" in datasets  # p2/b on disk used mine, not what pick is now


def test_a_folder_with_too_few_classes_for_a_role_is_one_line(study, tmp_path, capsys):
    lonely = make_image_folder(tmp_path / "lonely", classes=("red",), per_class=6)
    code = main(["run", str(study), "--out", str(tmp_path / "runs"), "--dataset", f"main={lonely}"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "lonely" in err and "class" in err, err


def test_init_writes_the_seed_study_for_a_folder_and_it_runs(tmp_path, capsys):
    food = make_image_folder(tmp_path / "food", classes=("a", "b", "c", "d"), per_class=8, size=64)
    bees = make_image_folder(tmp_path / "bees", classes=("ants", "bees"), per_class=8, size=64)
    study = tmp_path / "mine.yaml"
    assert main(["init", str(study), "--dataset", f"main={food}", "--dataset", f"transfer={bees}"]) == 0
    text = study.read_text()
    assert "image_size: 64    # your images' median shorter side is 64 px" in text
    assert "4 classes, 32 images (8-8 per class)" in text and "cnn_last_conv" in text and "resnet50" not in text
    assert re.search(r"Estimated wall-clock on this machine: about [\d.]+ h", text)
    assert f"cnnstudy run {study}" in capsys.readouterr().out
    assert main(["init", str(study), "--dataset", f"main={food}"]) == 2  # never overwritten
    assert f'main: "{food}"' in text  # absolute: the study runs from any folder
    (food / "e").mkdir()
    assert main(["init", str(tmp_path / "e.yaml"), "--dataset", f"main={food}"]) == 2
    assert "class folder(s) e in" in capsys.readouterr().err
    (food / "e").rmdir()
    assert main(["init", str(tmp_path / "s.yaml"), "--dataset", f"main={food}", "--dataset", f"transfer={food}"]) == 2
    assert "same folder as main" in capsys.readouterr().err and not (tmp_path / "s.yaml").exists()
    quick = ["train.epochs=1", "phase4/cnn_head:sweep.trials=2", "phase4/cnn_head:sweep.confirm=1"]
    study_dir = run_study(study, quick, out_dir=tmp_path / "runs", log=lambda _: None)
    assert read_json(study_dir / "phase4" / "cnn_last_conv" / "metrics.json")["dataset"] == str(bees)


def readme_own_data_commands() -> list[str]:
    """The commands of the README's section on your own photos."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Your own photos", 1)[1].split("\n## ", 1)[0]
    block = "\n".join(re.findall(r"```bash\n(.*?)```", section, re.S)).replace("\\\n", " ")
    return [line.split("#")[0].strip() for line in block.splitlines() if line.startswith("cnnstudy ")]


def test_the_readme_commands_for_your_own_photos_run(tmp_path, monkeypatch):
    folders = {"food": ("a", "b", "c", "d"), "bees": ("ants", "bees"), "pets": ("cat", "dog", "panda")}
    for name, classes in folders.items():
        make_image_folder(tmp_path / "photos" / name, classes=classes, per_class=8, size=64)
    monkeypatch.chdir(tmp_path)
    shrink = ["--set", "train.epochs=1", "--set", "data.image_size=48", "--set", "train.batch_size=8", "--set", "phase4/cnn_head:sweep.trials=2",
              "--set", "phase4/cnn_head:sweep.confirm=1"]  # the README's commands, shrunk for a test
    commands = readme_own_data_commands()
    assert [c.split()[1] for c in commands] == ["init", "run", "run"]
    for command in commands:
        args = [str(REPO / a) if a.startswith("studies/") else a for a in shlex.split(command.replace("/photos", str(tmp_path / "photos")))][1:]
        assert main(args + (shrink if args[0] == "run" else [])) == 0, command
    assert yaml.safe_load((tmp_path / "runs" / "seed" / "study.yaml").read_text())["datasets"]["transfer3"] == \
        {"dataset": str(tmp_path / "photos" / "pets"), "classes": None, "replaced": True}


def test_the_readme_quickstart_runs_as_written(tmp_path, monkeypatch):
    """Its cnnstudy lines, on small folders, with the run shrunk; the report lands where the last line opens it."""
    text = (REPO / "README.md").read_text()
    block = re.findall(r"```bash\n(.*?)```", text.split("## Quickstart", 1)[1], re.S)[0]
    lines = [line.split("#")[0].strip() for line in block.splitlines()]
    assert lines[0] == "make setup" and lines[1] == "source .venv/bin/activate" and len(block.splitlines()) <= 10
    for name, classes in {"food": ("a", "b", "c"), "bees": ("ants", "bees")}.items():
        make_image_folder(tmp_path / "photos" / name, classes=classes, per_class=8, size=64)
    monkeypatch.chdir(tmp_path)
    shrink = ["--set", "train.epochs=1", "--set", "data.image_size=48", "--set", "train.batch_size=8",
              "--set", "phase4/cnn_head:sweep.trials=2", "--set", "phase4/cnn_head:sweep.confirm=1"]
    for command in [line for line in lines if line.startswith("cnnstudy ")]:
        args = shlex.split(command.replace("/photos", str(tmp_path / "photos")))[1:]
        assert main(args + (shrink if args[0] == "run" else [])) == 0, command
    opened = next(line for line in lines if "report.html" in line).split()[-1]
    assert (tmp_path / opened).is_file()
