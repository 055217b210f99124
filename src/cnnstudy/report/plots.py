"""Plots of a run and of a study, each written as a PNG (under the run's or the study's plots/).

Every figure is at most FIGURE_WIDTH inches wide and its text at least 12 pt: report.html shows a
figure at 96 px per inch (render.py), so its text is at least 16 px, the size of the page's own text,
at 100 % zoom. Epoch axes have integer ticks."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; works without a display
import matplotlib.ticker  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from ..fileio import atomic_write_bytes  # noqa: E402

FIGURE_WIDTH = 9.5  # inches: with its 0.05 in margins, within the page's content width (render.CONTENT_PX) at 96 px per inch
TEXT_PT = 12
plt.rcParams.update({"font.size": TEXT_PT, "legend.fontsize": TEXT_PT, "axes.titlesize": TEXT_PT + 1,
                     "figure.titlesize": TEXT_PT + 1, "xtick.labelsize": TEXT_PT, "ytick.labelsize": TEXT_PT,
                     "figure.constrained_layout.use": True})  # labels inside the figure's width, not beyond it


def integer_epochs(ax) -> None:
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))


def wrapped(text: str, width: int = 16) -> str:
    """A title broken into lines of about `width` characters (12 pt text in a narrow panel)."""
    import textwrap

    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=False, break_long_words=True)) or text


def save_figure(fig, path: Path) -> Path:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", pad_inches=0.05)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def plot_curves(history: list[dict], path: Path, title: str = "") -> Path:
    """Loss and accuracy by epoch; a third panel with the learning rate where it changed."""
    epochs = [row["epoch"] for row in history]
    rates = [row.get("lr") for row in history]
    varying = None not in rates and len(set(rates)) > 1
    fig, axes = plt.subplots(1, 3 if varying else 2, figsize=(FIGURE_WIDTH, 3.8))
    for ax, key, label in ((axes[0], "loss", "Loss"), (axes[1], "acc", "Accuracy")):
        ax.plot(epochs, [row[f"train_{key}"] for row in history], "o-", label=f"train {key}")
        ax.plot(epochs, [row[f"val_{key}"] for row in history], "s-", label=f"val {key}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
        integer_epochs(ax)
    if varying:
        integer_epochs(axes[2])
        axes[2].plot(epochs, rates, "o-", color="tab:green")
        axes[2].set(xlabel="epoch", ylabel="learning rate", yscale="log" if min(rates) > 0 else "linear")
        axes[2].grid(alpha=0.3)
    fig.suptitle(title or "Training curves")
    return save_figure(fig, path)


def plot_roc(curves: list[tuple[np.ndarray, np.ndarray]], aucs: list[float | None],
             class_names: list[str], path: Path, title: str = "") -> Path:
    fig, ax = plt.subplots(figsize=(5.6, 5.0))
    for (fpr, tpr), auc, name in zip(curves, aucs, class_names):
        label = f"{name} (AUC = {auc:.3f})" if auc is not None else f"{name} (AUC n/a)"
        ax.plot(fpr, tpr, label=label)
    ax.plot([0, 1], [0, 1], "k--", linewidth=0.8)
    ax.set_xlabel("False positive rate")
    ax.set_ylabel("True positive rate")
    ax.set_title(title or "One-vs-rest ROC")
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    return save_figure(fig, path)


def plot_confusion(matrix: list[list[int]], class_names: list[str], path: Path, title: str = "") -> Path:
    cm = np.asarray(matrix)
    size = min(FIGURE_WIDTH * 0.8, max(4.5, 0.45 * len(class_names) + 2.5))
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    threshold = cm.max() / 2 if cm.size else 0
    for (i, j), count in np.ndenumerate(cm if len(class_names) <= 12 else np.zeros((0, 0))):  # 12 pt fits 12
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > threshold else "black")
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    ax.set_title(title or "Confusion matrix")
    return save_figure(fig, path)


def plot_prediction_grid(images: list[Image.Image], true_names: list[str], pred_names: list[str],
                         path: Path, columns: int = 4) -> Path:
    """Images captioned "True: X / Pred: Y"; wrong predictions in red."""
    rows = max(1, int(np.ceil(len(images) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(FIGURE_WIDTH, FIGURE_WIDTH / columns * rows * 1.25),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, true, pred in zip(axes.flat, images, true_names, pred_names):
        ax.imshow(image)
        ax.set_title(f"True: {wrapped(true, 18)}\nPred: {wrapped(pred, 18)}", color="black" if true == pred else "red")
    return save_figure(fig, path)


def plot_comparison_panels(panels: list[dict], path: Path) -> Path:
    """One panel per set of test images (runs are compared only there), one above the other: each
    run's test accuracy with its 95 % interval (over repeats, or Wilson's on the images for a single
    run, marked "W"), its macro F1, and the chance level of that many classes."""
    heights = [0.55 * len(p["runs"]) + 1.2 for p in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(FIGURE_WIDTH, sum(heights) + 0.6), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, panel in zip(axes[:, 0], panels):
        positions = np.arange(len(panel["runs"]))[::-1]
        means = np.array([100 * m for m, _, _ in panel["acc"]])
        # An interval always holds its mean; clipped at 0 so float rounding at 0 % or 100 % draws no negative bar.
        low = np.clip(means - np.array([100 * lo for _, lo, _ in panel["acc"]]), 0, None)
        high = np.clip(np.array([100 * hi for _, _, hi in panel["acc"]]) - means, 0, None)
        ax.barh(positions + 0.2, means, 0.4, xerr=[low, high], capsize=3, label="test accuracy (95% interval)")
        ax.barh(positions - 0.2, [100 * f for f in panel["f1"]], 0.4, label="macro F1")
        ax.axvline(100 * panel["chance"], color="grey", linestyle="--", linewidth=1, label="chance")
        labels = [f"{run}{' (W)' if wilson else ''}" for run, wilson in zip(panel["runs"], panel["wilson"])]
        ax.set_yticks(positions, labels)
        ax.set_xlim(0, 100)
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(panel["title"], loc="left")
    axes[-1][0].set_xlabel("%")
    axes[0][0].legend(loc="lower center", bbox_to_anchor=(0.5, 1.12), ncol=3, frameon=False)
    return save_figure(fig, path)


def plot_val_curves(curves: dict[str, list[list[float]]], path: Path) -> Path:
    """Every run's validation accuracy per epoch in one plot: the mean over its repeats, with the
    range of the repeats shaded."""
    fig, ax = plt.subplots(figsize=(FIGURE_WIDTH, 4.5))
    for name, runs in curves.items():
        length = min(len(run) for run in runs)
        values = 100 * np.array([run[:length] for run in runs])
        epochs = np.arange(1, length + 1)
        line, = ax.plot(epochs, values.mean(0), "o-", markersize=3, label=name)
        if len(runs) > 1:
            ax.fill_between(epochs, values.min(0), values.max(0), color=line.get_color(), alpha=0.15)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, frameon=False)
    ax.set_title("Validation accuracy of every run")
    integer_epochs(ax)
    return save_figure(fig, path)


def plot_sweep(trials: list[dict], params: dict[str, dict], metric: str, path: Path) -> Path:
    """A sweep's metric against each swept parameter, one panel per parameter: complete trials as
    dots, pruned ones as crosses (at the last value they reached), the best as a star. `params`
    maps each name to {"log": bool, "choices": list | None}."""
    columns = min(2, len(params))
    rows = -(-len(params) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(FIGURE_WIDTH, 3.8 * rows), squeeze=False)
    for ax in axes.flat[len(params):]:
        ax.axis("off")
    best = max((t for t in trials if t["state"] == "complete"), default=None,
               key=lambda t: t["value"] if metric == "val_acc" else -t["value"])
    for ax, (name, space) in zip(axes.flat, params.items()):
        choices = space["choices"]
        for state, marker in (("complete", "o"), ("pruned", "x")):
            shown = [t for t in trials if t["state"] == state and t["value"] is not None]
            xs = [choices.index(t["params"][name]) if choices else t["params"][name] for t in shown]
            ax.scatter(xs, [t["value"] for t in shown], marker=marker, label=state, alpha=0.8)
        if best is not None:
            x = choices.index(best["params"][name]) if choices else best["params"][name]
            ax.scatter([x], [best["value"]], marker="*", s=220, color="gold", edgecolor="black", label="best",
                       zorder=3)
        if choices:
            ax.set_xticks(range(len(choices)), [str(c) for c in choices])
        elif space["log"]:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(name)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(metric)
    axes[0][0].legend()
    fig.suptitle(f"Sweep: {metric} of each trial against each parameter")
    return save_figure(fig, path)


def plot_reliability(diagrams: dict[str, list[dict]], path: Path, title: str = "") -> Path:
    """Accuracy against confidence per bin (top label), one line per set of probabilities (as trained,
    after temperature scaling); the diagonal is perfect calibration, marker areas the bins' shares."""
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfectly calibrated")
    for name, bins in diagrams.items():
        shown = [b for b in bins if b["count"]]
        total = sum(b["count"] for b in shown)
        ax.plot([b["confidence"] for b in shown], [b["accuracy"] for b in shown], "-", linewidth=1, label=name)
        ax.scatter([b["confidence"] for b in shown], [b["accuracy"] for b in shown],
                   s=[8 + 300 * b["count"] / total for b in shown])  # marker area: the bin's share of images
    ax.set_ylabel("accuracy")
    ax.set_xlabel("confidence (top class); marker area: share of images")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    return save_figure(fig, path)


def plot_explanation(image: np.ndarray, cam_map: np.ndarray, title: str, path: Path) -> Path:
    """An image with its class activation map laid over it (jet, half transparent), at the image's size."""
    height, width = cam_map.shape
    fig, ax = plt.subplots(figsize=(4.0, 4.0 * height / max(width, 1) + 0.4))
    ax.imshow(image)
    ax.imshow(cam_map, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
    ax.set_title(title)
    ax.axis("off")
    return save_figure(fig, path)


def plot_cam_grid(pixels: np.ndarray, maps: np.ndarray, titles: list[str], right: list[bool], path: Path) -> Path:
    """Images with their class activation maps laid over them, titled True/Pred (red where wrong)."""
    columns = min(4, len(pixels))  # as the prediction grid it explains
    rows = int(np.ceil(len(pixels) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(FIGURE_WIDTH, FIGURE_WIDTH / columns * rows * 1.25),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, cam_map, title, ok in zip(axes.flat, pixels, maps, titles, right):
        ax.imshow(image)
        ax.imshow(cam_map, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
        ax.set_title("\n".join(wrapped(part, 18) for part in title.split(" / ")), color="black" if ok else "red")
    return save_figure(fig, path)


def plot_cam_side_by_side(pixels: np.ndarray, maps: dict[str, np.ndarray], truths: list[str], path: Path) -> Path:
    """The same test images (rows), each run's map on them (columns), for runs scored on the same images."""
    runs = list(maps)
    side = min(2.4, FIGURE_WIDTH / (len(runs) + 1))
    fig, axes = plt.subplots(len(pixels), len(runs) + 1, figsize=(side * (len(runs) + 1), side * 1.15 * len(pixels)),
                             squeeze=False)
    for r, (image, truth) in enumerate(zip(pixels, truths)):
        axes[r][0].imshow(image)
        axes[r][0].set_title(f"True: {wrapped(truth, 14)}")
        for c, run in enumerate(runs, start=1):
            axes[r][c].imshow(image)
            axes[r][c].imshow(maps[run][r], cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
            if r == 0:
                axes[r][c].set_title(wrapped(run, 14))
    for ax in axes.flat:
        ax.axis("off")
    return save_figure(fig, path)


def plot_thumbnail_rows(rows: list[tuple[str, list[tuple[Path, str]]]], path: Path) -> Path:
    """One row a group: its title at the left, then its images, each captioned."""
    columns = max(len(images) for _, images in rows)
    side = FIGURE_WIDTH / (columns + 1)
    fig, axes = plt.subplots(len(rows), columns + 1, figsize=(FIGURE_WIDTH, side * 1.45 * len(rows)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for line, (title, images) in zip(axes, rows):
        line[0].text(0.0, 0.5, "\n".join(wrapped(part, 12) for part in title.split("\n")), va="center", ha="left")
        for ax, (file, label) in zip(line[1:], images):
            try:
                with Image.open(file) as image:
                    ax.imshow(image.convert("RGB"))
            except OSError:
                ax.text(0.5, 0.5, "(not on disk)", ha="center")
            ax.set_title(wrapped(label, 12))
    return save_figure(fig, path)
