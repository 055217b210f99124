"""repeats: N trains a run N times on one split, reports mean ± std, and init_from takes the best."""
import csv
import shutil

import numpy as np
import pytest

from cnnstudy.config import StudyError
from cnnstudy.fileio import read_json, file_digest
from cnnstudy.report.report import build_report
from cnnstudy.runner.study import run_study

from helpers import run_quiet_study

PHASES = """
  - name: p1
    runs:
      - {name: base, model: cnn_slim, repeats: 3}
  - name: p2
    runs:
      - {name: head, model: {name: cnn_slim, init_from: p1/base, freeze: head}}
"""
QUIET = {"log": lambda _: None}


@pytest.fixture(scope="module")
def repeated(tmp_path_factory):
    return run_quiet_study(tmp_path_factory.mktemp("repeats"), PHASES, ["train.epochs=1"], seed=4)


def test_three_repeats_three_seeds_one_split_and_numpys_mean_and_std(repeated):
    _, study_dir = repeated
    folders = [study_dir / "p1" / "base" / f"r{k}" for k in range(3)]
    metrics = [read_json(folder / "metrics.json") for folder in folders]
    seeds = [m["seed"] for m in metrics]
    assert seeds[0] == 4 and len(set(seeds)) == 3 and [m["repeat"] for m in metrics] == [0, 1, 2]
    assert len({(folder / "split.json").read_text() for folder in folders}) == 1
    with open(study_dir / "summary_grouped.csv") as handle:
        row = next(r for r in csv.DictReader(handle) if r["run"] == "base")
    accuracies = [m["test"]["accuracy"] for m in metrics]
    assert row["repeats"] == "3"
    assert float(row["test_acc_mean"]) == pytest.approx(np.mean(accuracies))
    assert float(row["test_acc_std"]) == pytest.approx(np.std(accuracies, ddof=1))
    with open(study_dir / "summary.csv") as handle:
        assert [(r["run"], r["repeat"]) for r in csv.DictReader(handle)] == [
            ("base", "0"), ("base", "1"), ("base", "2"), ("head", "")]


def test_init_from_starts_from_the_repeat_with_the_best_validation_accuracy(repeated):
    _, study_dir = repeated
    scores = [read_json(study_dir / "p1" / "base" / f"r{k}" / "metrics.json")["best_val_acc"] for k in range(3)]
    best = scores.index(max(scores))
    inputs = read_json(study_dir / "p2" / "head" / "fingerprint.json")["inputs"]["init_from"]
    assert inputs["file"] == f"p1/base/r{best}/best.pt"
    assert inputs["sha256"] == file_digest(study_dir / "p1" / "base" / f"r{best}" / "best.pt")


def test_the_report_leads_with_every_run(repeated):
    _, study_dir = repeated
    text = build_report(study_dir)[0].read_text()
    top = text.split("## p1")[0]
    assert "## The answer" in top and "| p1/base | scratch | colors | 3 |" in top and "| p2/head |" in top
    assert " ± " in top and "plots/comparison.png" in top and "plots/val_curves.png" in top
    assert "Over 3 of 3 repeats (seeds 4, " in text


def test_more_repeats_keep_the_ones_already_trained(repeated, tmp_path):
    study, study_dir = repeated
    copy = tmp_path / "runs" / "tiny"
    shutil.copytree(study_dir, copy)
    more = tmp_path / "more.yaml"
    more.write_text(study.read_text().replace("repeats: 3", "repeats: 4"))
    with pytest.raises(StudyError, match="(?s)1 run.*p2/head:\n    init_from p1/base trains again first"):
        run_study(more, ["train.epochs=1"], out_dir=copy.parent, **QUIET)  # its best repeat may change
    logs = []
    run_study(more, ["train.epochs=1"], out_dir=copy.parent, force=["p2/head"], log=logs.append)
    assert [line.split(":")[0] for line in logs if line.startswith(("skip", "=="))] == [
        "skip p1/base/r0", "skip p1/base/r1", "skip p1/base/r2", "== p1/base/r3", "== p2/head"]
    fewer = tmp_path / "fewer.yaml"
    fewer.write_text(study.read_text().replace("repeats: 3", "repeats: 1"))
    with pytest.raises(StudyError, match="holds repeats .* asks for a single run"):
        run_study(fewer, ["train.epochs=1"], out_dir=copy.parent, **QUIET)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not found:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium); .ci/run installs it")
    return found


def test_the_html_report_renders_in_a_headless_browser(repeated, tmp_path):
    import subprocess

    from PIL import Image

    _, study_dir = repeated
    html = build_report(study_dir)[1]
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([chromium(), *flags, "--dump-dom", html.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    assert "<h2>The answer</h2>" in dom and dom.count("data:image/png;base64,") >= 4
    shot = tmp_path / "report.png"
    subprocess.run([chromium(), *flags, f"--screenshot={shot}", "--window-size=1200,2400", html.as_uri()],
                   capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (2400, 1200)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200  # text, tables and coloured plots, not a blank page
