"""The command line as a contract for people and scripts: exit codes (0 done, 1 some inputs failed,
2 bad usage or config before any work, 130/143 interrupted), one line that names what exists and
where the mistake is, and an interrupted command that the same command continues."""
import argparse
import os
import signal
import subprocess
import sys
import time

import pytest

from cnnstudy.cli import main
from cnnstudy.fileio import read_json
from cnnstudy.runner.study import run_study

from helpers import make_image_folder, write_study

TWO_RUNS = """
  - name: p1
    runs:
      - {name: a, model: cnn_slim}
  - name: p2
    runs:
      - {name: b, model: cnn_regularized, train: {epochs: 8}}
"""


def cnnstudy(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnstudy", *map(str, args)], capture_output=True, text=True,
                          **kwargs)


def files_of(folder):
    return {p.relative_to(folder): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_ctrl_c_under_force_is_continued_by_the_same_command(tmp_path):
    data = make_image_folder(tmp_path / "colors", per_class=14)
    study = write_study(tmp_path / "s.yaml", data, TWO_RUNS)
    run_study(study, out_dir=tmp_path / "runs", log=lambda _: None)
    a, b = tmp_path / "runs" / "tiny" / "p1" / "a", tmp_path / "runs" / "tiny" / "p2" / "b"
    before = {path: path.stat().st_mtime_ns for path in (a / "metrics.json", b / "last.pt")}
    command = [sys.executable, "-m", "cnnstudy", "run", str(study), "--out", str(tmp_path / "runs"), "--force"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180

    def redone(path):
        return path.exists() and path.stat().st_mtime_ns > before[path]

    while time.monotonic() < deadline and not (redone(a / "metrics.json") and redone(b / "last.pt")):
        time.sleep(0.02)  # until p1/a is redone and p2/b has saved an epoch of its own redo
    process.send_signal(signal.SIGINT)  # in p2/b, after p1/a was redone under --force
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "Run the same command again to resume" in stderr, stderr[-2000:]
    assert not (b / "metrics.json").exists(), "p2/b finished before it could be interrupted"
    forced_once = files_of(a)
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert files_of(a) == forced_once  # the run the forced start finished is not trained a third time
    assert "skip p1/a: already finished" in again.stdout and "resuming " in again.stdout
    assert not (tmp_path / "runs" / "tiny" / ".force.json").exists()  # done: the next --force starts afresh


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    data = make_image_folder(tmp / "colors", per_class=8)
    phases = "  - name: p1\n    runs:\n      - {name: a, model: cnn_slim, train: {epochs: 1}}\n"
    study_dir = run_study(write_study(tmp / "s.yaml", data, phases), out_dir=tmp / "runs", log=lambda _: None)
    return study_dir, data, tmp


def test_predict_exit_codes_count_successes_and_name_what_is_missing(finished, tmp_path, capsys):
    study_dir, data, _ = finished
    image = next(data.rglob("*.png"))
    assert main(["predict", str(study_dir / "p1" / "a"), str(tmp_path / "nothere.jpg")]) == 2
    assert "none of these exist: " in capsys.readouterr().err
    out = tmp_path / "p.csv"
    code = main(["predict", str(study_dir / "p1" / "a"), str(image), str(tmp_path / "nothere.jpg"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "1 prediction(s) of p1/a written" in err and "1 of 2 file(s) have no prediction" in err
    assert len(out.read_text().splitlines()) == 3 and "\r" not in out.read_text()


def test_a_study_folder_without_its_run_lists_the_study_runs(finished, capsys):
    import cnnstudy
    from cnnstudy.config import StudyError

    study_dir, data, _ = finished
    assert main(["predict", str(study_dir), str(next(data.rglob("*.png")))]) == 2
    assert "name the run too, e.g. --run p1/a; its runs: p1/a" in capsys.readouterr().err
    with pytest.raises(StudyError, match=r"has no run 'phase3/regularized', e\.g\. run=\"p1/a\"; its runs: p1/a"):
        cnnstudy.load_run(study_dir, run="phase3/regularized")


def test_explain_refuses_an_unknown_class_before_loading_the_model(finished, capsys, monkeypatch):
    from cnnstudy.use import inference

    study_dir, data, _ = finished
    monkeypatch.setattr(inference.LoadedRun, "__init__", lambda *a, **k: pytest.fail("the model was loaded"))
    assert main(["explain", str(study_dir / "p1" / "a"), str(data), "--target", "gren"]) == 2
    assert "--target 'gren' is not one of the run's classes (did you mean green?)" in capsys.readouterr().err


def test_every_problem_of_a_study_file_is_named_at_once(tmp_path, image_folder, capsys):
    study = tmp_path / "bad.yaml"
    study.write_text(f"""name: bad
defaults: {{data: {{dataset: {image_folder}, image_size: 48}}}}
phases:
  - name: p1
    run: [{{name: x, model: cnn_slim}}]
  - name: p2
    runs:
      - {{name: a, model: cnn_basline, train: {{lr: fast}}}}
      - {{name: b, model: cnn_slim, data: {{datset: x}}}}
""")
    assert main(["run", str(study), "--out", str(tmp_path / "runs"), "--set", "train.epochs=two"]) == 2
    err = capsys.readouterr().err
    assert "problems; nothing was run:" in err and err.count("\n  ") >= 5
    for expected in ("unknown key phases.0.run (did you mean phases.0.runs?)",
                     "phase 'p2', run 'a': train.lr: Input should be a valid number",
                     "phase 'p2', run 'a': model.name: unknown model 'cnn_basline' (did you mean cnn_baseline?)",
                     "phase 'p2', run 'b': unknown key data.datset (did you mean data.dataset?)",
                     "--set train.epochs=two: Input should be a valid integer"):
        assert expected in err, expected
    assert err.count("--set train.epochs=two") == 1  # said once, not once per run
    assert not (tmp_path / "runs").exists()


def test_a_study_that_fails_its_checks_leaves_nothing_behind(tmp_path, image_folder, capsys):
    phases = "  - name: p1\n    runs:\n      - {name: a, model: cnn_slim, train: {batch_size: 500}}\n"
    code = main(["run", str(write_study(tmp_path / "s.yaml", image_folder, phases)), "--out", str(tmp_path / "runs")])
    assert code == 2 and "train.batch_size 500 is larger than the" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "tiny").exists()  # no empty folder holding a .lock


def test_inspect_names_each_model_minimum_and_fails_on_unreadable_images(tmp_path, capsys):
    data = make_image_folder(tmp_path / "small", per_class=3, size=40)
    (data / "red" / "broken.png").write_bytes(b"not an image")
    assert main(["inspect", str(data)]) == 1
    out = capsys.readouterr()
    assert "smaller than 46 px, the minimum of cnn_baseline, cnn_slim, cnn_regularized (upscaled for them): 9" \
        in out.out and "smaller than 32 px, the minimum of efficientnet_lite0 (upscaled for them): 0" in out.out
    assert "1 unreadable image(s)" in out.err


def test_data_list_keeps_every_column_in_its_place(capsys):
    assert main(["data", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0]
    column = header.index("on disk")
    for line in lines[1:]:
        if line and not line.startswith("fetched"):
            assert len(line) <= column or line[column - 2:column] == "  ", line  # the licence ends before it


def test_version_and_a_help_line_for_every_option(capsys):
    from cnnstudy import __version__
    from cnnstudy.cli import build_parser

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"cnnstudy {__version__}"

    def parsers(parser):
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from parsers(sub)

    for parser in parsers(build_parser()):
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{parser.prog} {action.option_strings[0]} has no help"


def test_ctrl_c_while_starting_is_one_line(tmp_path, image_folder):
    study = write_study(tmp_path / "s.yaml", image_folder, "  - name: p1\n    runs:\n      - {name: a, model: cnn_slim}\n")
    process = subprocess.Popen([sys.executable, "-m", "cnnstudy", "run", str(study), "--out", str(tmp_path / "r")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # torch is still being imported
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1


def test_a_ray_address_that_does_not_answer_stops_in_seconds(tmp_path, image_folder, capsys, monkeypatch):
    pytest.importorskip("ray")
    study = write_study(tmp_path / "s.yaml", image_folder, "  - name: p1\n    runs:\n      - {name: a, model: cnn_slim}\n")
    started = time.monotonic()
    code = main(["run", str(study), "--out", str(tmp_path / "r"), "--executor", "ray", "--ray-address", "127.0.0.1:9"])
    assert code == 2 and time.monotonic() - started < 60
    assert "--ray-address 127.0.0.1:9: nothing answers at 127.0.0.1:9" in capsys.readouterr().err
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "no-ray"))  # no cluster recorded: auto has nothing to join
    assert main(["run", str(study), "--out", str(tmp_path / "r"), "--executor", "ray", "--ray-address", "auto"]) == 2
    assert "--ray-address auto: no Ray cluster is recorded on this machine" in capsys.readouterr().err


def test_a_run_name_ending_in_base_is_reserved_for_sweeps(tmp_path, image_folder, capsys):
    phases = "  - name: p1\n    runs:\n      - {name: lr.base, model: cnn_slim}\n"
    assert main(["run", str(write_study(tmp_path / "s.yaml", image_folder, phases)), "--out", str(tmp_path)]) == 2
    assert "p1/lr.base: a run name ending in .base is reserved" in capsys.readouterr().err


def interrupting(monkeypatch, label: str):
    """Ctrl-C as the unit `label` is about to start (in this process: a serial study)."""
    from cnnstudy.runner.execution import units

    real = units.execute_run

    def execute(plan, *args, **kwargs):
        if plan.label == label:
            raise KeyboardInterrupt
        return real(plan, *args, **kwargs)

    monkeypatch.setattr(units, "execute_run", execute)


def test_a_forced_start_interrupted_twice_still_redoes_nothing_twice(tmp_path, image_folder, monkeypatch):
    phases = "  - name: p1\n    runs:\n      - {name: a, model: cnn_slim}\n      - {name: b, model: cnn_slim}\n"
    study = write_study(tmp_path / "s.yaml", image_folder, phases)
    quiet = {"out_dir": tmp_path / "runs", "log": lambda _: None}
    run_study(study, **quiet)
    a = tmp_path / "runs" / "tiny" / "p1" / "a"
    with monkeypatch.context() as patch:
        interrupting(patch, "p1/a")
        with pytest.raises(KeyboardInterrupt):
            run_study(study, force=True, **quiet)  # a and b cleared, neither trained
    with monkeypatch.context() as patch:
        interrupting(patch, "p1/b")
        with pytest.raises(KeyboardInterrupt):
            run_study(study, force=True, **quiet)  # a trained under the force, b not yet
    finished = (a / "metrics.json").stat().st_mtime_ns
    logs = []
    run_study(study, force=True, out_dir=tmp_path / "runs", log=logs.append)
    assert (a / "metrics.json").stat().st_mtime_ns == finished and "skip p1/a: already finished" in " ".join(logs)
    assert any(line.startswith("continuing the --force started") for line in logs)
    with monkeypatch.context() as patch:  # interrupted again, then asked with another setting: a new force
        interrupting(patch, "p1/b")
        with pytest.raises(KeyboardInterrupt):
            run_study(study, force=True, **quiet)
    run_study(study, ["train.epochs=1"], force=True, **quiet)
    assert read_json(a / "metrics.json")["epochs"] == 1


def test_an_unreachable_ray_cluster_stops_before_force_clears_anything(finished, tmp_path, capsys):
    pytest.importorskip("ray")
    import http.server
    import threading

    study_dir, data, tmp = finished
    metrics = study_dir / "p1" / "a" / "metrics.json"
    code = main(["run", str(tmp / "s.yaml"), "--out", str(study_dir.parent), "--force", "--executor", "ray",
                 "--ray-address", "127.0.0.1:9"])
    assert code == 2 and metrics.exists() and "nothing answers at 127.0.0.1:9" in capsys.readouterr().err
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)  # a port that is no Ray head
    threading.Thread(target=server.serve_forever, daemon=True).start()
    started = time.monotonic()
    code = main(["run", str(tmp / "s.yaml"), "--out", str(tmp_path / "new" / "deeper"), "--executor", "ray",
                 "--ray-address", f"127.0.0.1:{server.server_port}"])
    server.shutdown()
    assert code == 2 and time.monotonic() - started < 60 and "answers, but not as a Ray head" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()  # the folders this start made are gone with it


def test_a_bad_device_and_every_split_problem_are_named_before_work(finished, tmp_path, capsys):
    study_dir, data, tmp = finished
    image = next(data.rglob("*.png"))
    assert main(["predict", str(study_dir / "p1" / "a"), str(image), "--device", "gpu"]) == 2
    assert "--device 'gpu': " in capsys.readouterr().err
    phases = "  - name: p1\n    runs:\n      - {name: a, model: cnn_slim}\n      - {name: b, model: cnn_slim}\n"
    code = main(["run", str(write_study(tmp_path / "two.yaml", data, phases)), "--out", str(tmp_path / "r" / "x"),
                 "--set", "train.batch_size=500"])
    err = capsys.readouterr().err
    assert code == 2 and "run p1/a: train.batch_size 500" in err and "run p1/b: train.batch_size 500" in err
    assert not (tmp_path / "r").exists()


def test_explain_never_writes_outside_its_folder(finished, tmp_path, monkeypatch):
    from cnnstudy.use.explain import inputs_with_outputs

    study_dir, data, _ = finished
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    image = next(data.rglob("*.png"))
    detour = f"{os.path.relpath(image.parent)}/../{image.parent.name}/{image.name}"  # ../../cli/colors/red/../red/x.png
    outputs = [out for _, out in inputs_with_outputs([detour, str(image)])]
    assert all(".." not in out.parts for out in outputs) and len(outputs) == 1  # one file, named once
