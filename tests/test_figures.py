"""Every figure the report shows fits the page's content width at 96 px per inch, with text of at least
12 pt (16 px there, the page's own size), and epoch axes count whole epochs."""
import numpy as np
import pytest
from PIL import Image

from cnnstudy.report import plots
from cnnstudy.report.forest import plot_forest

CLASSES = [f"class_{k}" for k in range(10)]


@pytest.fixture
def drawn(monkeypatch):
    """Each saved figure's smallest text size (pt) and its epoch-axis ticks, by file name."""
    seen, save = {}, plots.save_figure

    def inspect(fig, path):
        fig.canvas.draw()
        sizes = [t.get_fontsize() for t in fig.findobj(lambda a: hasattr(a, "get_text") and hasattr(a, "get_fontsize"))
                 if t.get_visible() and t.get_text().strip()]
        epochs = [ax.get_xticks() for ax in fig.axes if ax.get_xlabel() == "epoch"]
        seen[path.name] = {"smallest": min(sizes), "epochs": epochs}
        return save(fig, path)
    monkeypatch.setattr(plots, "save_figure", inspect)
    return seen


def every_figure(folder):
    rng = np.random.default_rng(0)
    history = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e, "train_acc": 0.5 + e / 20, "val_acc": 0.5,
                "lr": 0.01 / e} for e in range(1, 5)]
    plots.plot_curves(history, folder / "curves.png")
    plots.plot_roc([(np.linspace(0, 1, 5), np.linspace(0, 1, 5)) for _ in CLASSES], [0.9] * 10, CLASSES,
                   folder / "roc.png")
    plots.plot_confusion(rng.integers(0, 20, (10, 10)).tolist(), CLASSES, folder / "confusion.png")
    pictures = [Image.new("RGB", (32, 32), (k * 20, 80, 80)) for k in range(8)]
    plots.plot_prediction_grid(pictures, CLASSES[:8], ["grilled_salmon_and_more"] * 8, folder / "predictions.png")
    plots.plot_comparison_panels([{"title": "food10: 150 test images, 10 classes", "runs": ["phase1/baseline",
                                                                                          "phase4/lite0_pretrained"],
                                   "acc": [(0.3, 0.2, 0.4), (0.6, 0.5, 0.7)], "f1": [0.3, 0.6],
                                   "wilson": [True, True], "chance": 0.1}], folder / "comparison.png")
    plots.plot_val_curves({f"phase{k}/run_{k}": [[0.3, 0.4, 0.5]] for k in range(10)}, folder / "val_curves.png")
    trials = [{"state": "complete", "value": 0.5 + k / 100, "params": {"train.lr": 10 ** -k, "train.wd": 0.1, "augment": k}}
              for k in range(1, 5)]
    plots.plot_sweep(trials, {"train.lr": {"log": True, "choices": None}, "train.wd": {"log": False, "choices": None},
                              "augment": {"log": False, "choices": None}}, "val_acc", folder / "sweep-x.png")
    plots.plot_reliability({"as trained": [{"count": 5, "confidence": 0.5, "accuracy": 0.4}]}, folder / "reliability.png")
    pixels, maps = rng.random((8, 32, 32, 3)), rng.random((8, 32, 32))
    plots.plot_cam_grid(pixels, maps, ["True: chicken_curry / Pred: grilled_salmon"] * 8, [True] * 8,
                        folder / "gradcam.png")
    plots.plot_cam_side_by_side(pixels[:3], {"phase4/lite0_pretrained": maps[:3], "phase1/baseline": maps[:3]},
                                CLASSES[:3], folder / "cam-a-vs-b.png")
    plots.plot_thumbnail_rows([("a / b\nLABEL CONFLICT", [(folder / "none.png", "cats/cat_0001.jpg (train)")] * 5)],
                              folder / "data-copies-x.png")
    rows = [{"phase": "phase2"}, {"label": "slim vs phase1/baseline", "diff": -1.3, "ci": [-15.7, 12.3],
                                  "words": "no clear difference (p = 1.00)", "n": "150 food10"},
            {"label": "cnn_last_conv vs cnn_head", "diff": 16.9, "ci": [0.3, 38.9], "words": "better", "n": "77 ants"}]
    plot_forest(rows, 0.994, folder / "forest.png")


def test_every_figure_fits_the_page_with_12_pt_text_and_whole_epochs(drawn, tmp_path):
    every_figure(tmp_path)
    assert len(drawn) == 12
    for name, seen in drawn.items():
        assert seen["smallest"] >= 12, (name, seen["smallest"])
        with Image.open(tmp_path / name) as image:
            assert image.width / image.info["dpi"][0] <= plots.FIGURE_WIDTH + 0.11, name
    # epoch axes count whole epochs
    ticks = np.concatenate(drawn["curves.png"]["epochs"] + drawn["val_curves.png"]["epochs"])
    assert len(ticks) > 3 and np.all(ticks == np.round(ticks))
