"""Plots of a run, each written as a PNG under the run's plots/ folder."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; works without a display
import matplotlib.ticker  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from ..fileio import atomic_write_bytes  # noqa: E402


def _save(fig, path: Path) -> Path:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def plot_curves(history: list[dict], path: Path, title: str = "") -> Path:
    """Loss and accuracy by epoch; a third panel with the learning rate where it changed."""
    epochs = [row["epoch"] for row in history]
    rates = [row.get("lr") for row in history]
    varying = None not in rates and len(set(rates)) > 1
    fig, axes = plt.subplots(1, 3 if varying else 2, figsize=(15 if varying else 10, 4))
    for ax, key, label in ((axes[0], "loss", "Loss"), (axes[1], "acc", "Accuracy")):
        ax.plot(epochs, [row[f"train_{key}"] for row in history], "o-", label=f"train {key}")
        ax.plot(epochs, [row[f"val_{key}"] for row in history], "s-", label=f"val {key}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    if varying:
        axes[2].plot(epochs, rates, "o-", color="tab:green")
        axes[2].set(xlabel="epoch", ylabel="learning rate", yscale="log" if min(rates) > 0 else "linear")
        axes[2].grid(alpha=0.3)
    fig.suptitle(title or "Training curves")
    return _save(fig, path)


def plot_roc(curves: list[tuple[np.ndarray, np.ndarray]], aucs: list[float | None],
             class_names: list[str], path: Path, title: str = "") -> Path:
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    for (fpr, tpr), auc, name in zip(curves, aucs, class_names):
        label = f"{name} (AUC = {auc:.3f})" if auc is not None else f"{name} (AUC n/a)"
        ax.plot(fpr, tpr, label=label)
    ax.plot([0, 1], [0, 1], "k--", linewidth=0.8)
    ax.set_xlabel("False positive rate")
    ax.set_ylabel("True positive rate")
    ax.set_title(title or "One-vs-rest ROC")
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def plot_confusion(matrix: list[list[int]], class_names: list[str], path: Path, title: str = "") -> Path:
    cm = np.asarray(matrix)
    size = max(4.5, 0.55 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(ticks, class_names, fontsize=8)
    threshold = cm.max() / 2 if cm.size else 0
    for (i, j), count in np.ndenumerate(cm):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                color="white" if count > threshold else "black")
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    ax.set_title(title or "Confusion matrix")
    return _save(fig, path)


def plot_prediction_grid(images: list[Image.Image], true_names: list[str], pred_names: list[str],
                         path: Path, columns: int = 4) -> Path:
    """Images captioned "True: X / Pred: Y"; wrong predictions in red."""
    rows = max(1, int(np.ceil(len(images) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(2.8 * columns, 3.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, true, pred in zip(axes.flat, images, true_names, pred_names):
        ax.imshow(image)
        ax.set_title(f"True: {true} / Pred: {pred}", fontsize=8,
                     color="black" if true == pred else "red")
    return _save(fig, path)


def plot_comparison_panels(panels: list[dict], path: Path) -> Path:
    """One panel per set of test images (runs are compared only there): each run's test accuracy with
    its 95 % interval (over repeats, or Wilson's on the images for a single run, marked "W"), its
    macro F1, and the chance level of that many classes."""
    fig, axes = plt.subplots(1, len(panels), figsize=(max(5.0, sum(1.0 * len(p["runs"]) + 2 for p in panels)), 4.4),
                             squeeze=False)
    for ax, panel in zip(axes[0], panels):
        positions = np.arange(len(panel["runs"]))
        means = np.array([100 * m for m, _, _ in panel["acc"]])
        # An interval always holds its mean; clipped at 0 so float rounding at 0 % or 100 % draws no negative bar.
        low = np.clip(means - np.array([100 * lo for _, lo, _ in panel["acc"]]), 0, None)
        high = np.clip(np.array([100 * hi for _, _, hi in panel["acc"]]) - means, 0, None)
        ax.bar(positions - 0.2, means, 0.4, yerr=[low, high], capsize=3, label="test accuracy (95% interval)")
        ax.bar(positions + 0.2, [100 * f for f in panel["f1"]], 0.4, label="macro F1")
        ax.axhline(100 * panel["chance"], color="grey", linestyle="--", linewidth=1, label="chance")
        labels = [f"{run}{' (W)' if wilson else ''}" for run, wilson in zip(panel["runs"], panel["wilson"])]
        ax.set_xticks(positions, labels, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_ylabel("%")
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(panel["title"], fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Test scores per set of test images; (W): Wilson interval of a single run on those images",
                 fontsize=9)
    return _save(fig, path)


def plot_val_curves(curves: dict[str, list[list[float]]], path: Path) -> Path:
    """Every run's validation accuracy per epoch in one plot: the mean over its repeats, with the
    range of the repeats shaded."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
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
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("Validation accuracy of every run")
    return _save(fig, path)


def plot_sweep(trials: list[dict], params: dict[str, dict], metric: str, path: Path) -> Path:
    """A sweep's metric against each swept parameter, one panel per parameter: complete trials as
    dots, pruned ones as crosses (at the last value they reached), the best as a star. `params`
    maps each name to {"log": bool, "choices": list | None}."""
    fig, axes = plt.subplots(1, len(params), figsize=(4.2 * len(params), 3.6), squeeze=False)
    best = max((t for t in trials if t["state"] == "complete"), default=None,
               key=lambda t: t["value"] if metric == "val_acc" else -t["value"])
    for ax, (name, space) in zip(axes[0], params.items()):
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
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Sweep: {metric} of each trial against each parameter", fontsize=10)
    return _save(fig, path)


def plot_reliability(diagrams: dict[str, list[dict]], path: Path, title: str = "") -> Path:
    """Accuracy against confidence per bin (top label), one line per set of probabilities (as trained,
    after temperature scaling); the diagonal is perfect calibration, marker areas the bins' shares."""
    fig, ax = plt.subplots(figsize=(5, 4.5))
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
    ax.legend(fontsize=8)
    ax.set_title(title)
    return _save(fig, path)


def plot_explanation(image: np.ndarray, cam_map: np.ndarray, title: str, path: Path) -> Path:
    """An image with its class activation map laid over it (jet, half transparent), at the image's size."""
    height, width = cam_map.shape
    fig, ax = plt.subplots(figsize=(4.0, 4.0 * height / max(width, 1) + 0.4))
    ax.imshow(image)
    ax.imshow(cam_map, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    return _save(fig, path)


def plot_cam_grid(pixels: np.ndarray, maps: np.ndarray, titles: list[str], right: list[bool], path: Path) -> Path:
    """Images with their class activation maps laid over them, titled True/Pred (red where wrong)."""
    columns = min(8, len(pixels))  # a row, under the prediction grid it explains
    rows = int(np.ceil(len(pixels) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.0 * columns, 2.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, cam_map, title, ok in zip(axes.flat, pixels, maps, titles, right):
        ax.imshow(image)
        ax.imshow(cam_map, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
        ax.set_title(title, fontsize=8, color="black" if ok else "red")
    return _save(fig, path)


def plot_cam_side_by_side(pixels: np.ndarray, maps: dict[str, np.ndarray], truths: list[str], path: Path) -> Path:
    """The same test images (rows), each run's map on them (columns), for runs scored on the same images."""
    runs = list(maps)
    fig, axes = plt.subplots(len(pixels), len(runs) + 1, figsize=(2.3 * (len(runs) + 1), 2.3 * len(pixels)),
                             squeeze=False)
    for r, (image, truth) in enumerate(zip(pixels, truths)):
        axes[r][0].imshow(image)
        axes[r][0].set_title(f"True: {truth}", fontsize=8)
        for c, run in enumerate(runs, start=1):
            axes[r][c].imshow(image)
            axes[r][c].imshow(maps[run][r], cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
            if r == 0:
                axes[r][c].set_title(run, fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    return _save(fig, path)


def plot_thumbnail_rows(rows: list[tuple[str, list[tuple[Path, str]]]], path: Path) -> Path:
    """One row a group: its title at the left, then its images, each captioned."""
    columns = max(len(images) for _, images in rows)
    fig, axes = plt.subplots(len(rows), columns + 1, figsize=(2.0 * (columns + 1), 2.2 * len(rows)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for line, (title, images) in zip(axes, rows):
        line[0].text(0.0, 0.5, title, fontsize=9, va="center", ha="left", wrap=True)
        for ax, (file, label) in zip(line[1:], images):
            try:
                with Image.open(file) as image:
                    ax.imshow(image.convert("RGB"))
            except OSError:
                ax.text(0.5, 0.5, "(not on disk)", fontsize=8, ha="center")
            ax.set_title(label, fontsize=8)
    return _save(fig, path)
