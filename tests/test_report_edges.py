"""A study at the edges, end to end: a run at 100 %, a run that cannot learn (every image the same grey,
so it stays at chance), a sweep with a value that diverges. It must finish, and its report must say
what its numbers say: short, each pair once, "did not learn" for the run at chance."""
import csv
import re

import numpy as np
import pytest
from PIL import Image

from cnnstudy.fileio import read_json
from cnnstudy.runner.study import run_study

from helpers import make_image_folder, write_study

EDGES = """
  - name: p1
    title: Sharp
    runs:
      - {name: sharp, model: cnn_slim, train: {epochs: 6}}
  - name: p2
    compare: p1
    runs:
      - name: lr
        model: cnn_slim
        sweep: {method: grid, params: {train.lr: [0.002, 1.0e+30]}}
  - name: p3
    runs:
      - {name: flat, model: cnn_slim, train: {epochs: 1}, data: {dataset: GREY}}
"""


def grey_folder(root, classes=("a", "b", "c"), per_class=8):
    """Three classes of one grey with independent noise: nothing to learn, the best is a
    constant answer. (The noise keeps them from being copies of one photo, which the data check would
    leave out as label conflicts.)"""
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = 128 + rng.integers(-20, 21, size=(50, 50, 3))
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{name}_{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def edges(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("edges")
    colors = make_image_folder(tmp / "colors", per_class=20)
    phases = EDGES.replace("GREY", str(grey_folder(tmp / "grey")))
    study = write_study(tmp / "s.yaml", colors, phases)
    # What is judged here is what the runs learned: pinned to fp32 (bf16 CPUs would train otherwise).
    return run_study(study, ["train.precision=fp32"], out_dir=tmp / "runs", log=lambda _: None)


def test_a_run_at_100_percent_finishes_with_its_report(edges):
    metrics = read_json(edges / "p1" / "sharp" / "metrics.json")
    assert metrics["test"]["accuracy"] == 1.0  # the edge this study exists for
    assert (edges / "report.md").exists() and (edges / "plots" / "comparison.png").stat().st_size > 0


def test_the_run_at_chance_did_not_learn_and_is_never_called_overfit(edges):
    verdict = read_json(edges / "p3" / "flat" / "metrics.json")["verdict"]
    assert verdict["verdict"] == "did not learn" and "near chance (33.3%" in verdict["explanation"]
    answer = report_answer(edges)
    assert "flat did not learn" in answer and "overfit" not in answer.split("**p3")[1]


def test_a_diverging_trial_leaves_the_sweep_and_the_study_going(edges):
    with open(edges / "p2" / "lr" / "sweep.csv") as handle:
        states = {row["train.lr"]: row["state"] for row in csv.DictReader(handle)}
    assert states == {"0.002": "complete", "1e+30": "diverged"}


def test_every_comparison_says_what_its_interval_says_and_each_pair_once(edges):
    with open(edges / "comparisons.csv") as handle:
        rows = list(csv.DictReader(handle))
    pairs = [frozenset((r["a"], r["b"])) for r in rows if r["family"] == "confirmatory"]
    assert len(pairs) == len(set(pairs)) and pairs
    for row in rows:
        if row["p"] == "":
            assert row["words"].startswith("cannot be tested")
            continue
        low, high = float(row["ci_low"]), float(row["ci_high"])
        assert {"better": low > 0, "worse": high < 0}.get(row["words"], low <= 0 <= high), row
    answer = report_answer(edges)
    for claim in re.findall(r"CI ([+-][\d.]+) to ([+-][\d.]+)\): (better|worse|no clear difference)", answer):
        low, high, said = float(claim[0]), float(claim[1]), claim[2]
        assert {"better": low > 0, "worse": high < 0}.get(said, low <= 0 <= high), claim


def test_the_answer_is_short(edges):
    answer = report_answer(edges)
    items = [line for line in answer.splitlines() if line.startswith("- ")]
    assert len(items) <= 4  # one per phase, then the best runs
    assert answer.lstrip().startswith("**In short.** ")
    assert "Best by validation accuracy" not in answer or "grey" not in answer.split("Best by validation")[1]
    assert len(answer.split()) < 200


def test_the_page_fits_a_desktop_and_a_phone_without_scrolling_sideways(edges, tmp_path):
    from helpers import page_overflow

    html = edges / "report.html"
    for width in (1400, 390):
        scroll_width, viewport = page_overflow(html, width, tmp_path / "profile")
        assert scroll_width <= viewport, (width, scroll_width, viewport)
    page = html.read_text()
    assert "prefers-color-scheme:dark" in page and "<meta name='viewport'" in page
    assert page.count("<details><summary>") >= 4  # each run's section folded (and the per-class tables)
    assert '<span class="tag good">better</span>' in page or '<span class="tag grey">no clear difference' in page


def test_every_figure_fits_the_page_at_96_px_per_inch(edges):
    from PIL import Image

    from cnnstudy.report.plots import FIGURE_WIDTH

    figures = list(edges.rglob("plots/*.png"))
    assert len(figures) > 10 and (edges / "plots" / "forest.png") in figures
    for figure in figures:
        with Image.open(figure) as image:
            inches = image.width / image.info["dpi"][0]
        assert inches <= FIGURE_WIDTH + 0.11, (figure, inches)  # its margins included: within 960 px


def report_answer(study_dir) -> str:
    """The answer's words: its takeaway and items, up to the forest plot."""
    text = (study_dir / "report.md").read_text().split("## The answer", 1)[1]
    return min((text.split(end, 1)[0] for end in ("![forest]", "### What would settle it", "### Every run")), key=len)
