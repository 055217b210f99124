"""What a finished run writes beside its checkpoints: predictions, plots, the misclassified list and,
last, metrics.json, whose presence marks the run finished."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ..report import plots
from .._version import __version__
from ..config import RunConfig
from ..data.splits import PARTS, Split
from ..fileio import atomic_write_bytes, atomic_write_text, write_json
from ..training.engine import diverged_words
from ..training.metrics import classification_metrics, epoch_line, overfitting_verdict, roc_curves

GRID_SIZE = 16


def describe_init(cfg: RunConfig) -> str:
    if cfg.model.init_from:
        return f"from {cfg.model.init_from}"
    if cfg.model.weights:
        return f"weights {Path(cfg.model.weights).name}"
    return "ImageNet" if cfg.model.pretrained else "scratch"


def run_metrics(cfg: RunConfig, history: list[dict], outputs: dict, split: Split, facts: dict) -> dict:
    """metrics.json: the scores with everything needed to say what they belong to.

    `facts` holds what the run assembled: parameter counts, device, precision, fingerprint digest.
    """
    best = max(history, key=lambda row: row["val_acc"])
    metrics = {"run": cfg.run_id, "model": cfg.model.name, **facts, "classes": split.classes,
               "init": describe_init(cfg), "dataset": split.dataset,
               "split": {"digest": split.digest, "origin": split.origin,
                         "sizes": {part: len(getattr(split, part)) for part in PARTS}},
               "scored_on": "test" if "test" in outputs else "val",
               "epochs": len(history), "best_epoch": best["epoch"],
               "best_train_acc": best["train_acc"], "best_val_acc": best["val_acc"],
               "final_epoch_line": epoch_line(history[-1], cfg.train.epochs),
               "seconds_per_epoch": float(np.mean([row["seconds"] for row in history])),
               "verdict": overfitting_verdict(history, **cfg.verdict.model_dump()),
               "skipped_images": split.skipped, "cnnstudy_version": __version__}
    for name, out in outputs.items():
        metrics[name] = classification_metrics(out["probs"], out["targets"], split.classes)
    return metrics


def diverged_metrics(cfg: RunConfig, split: Split, facts: dict, diverged: dict) -> dict:
    """metrics.json of a run that diverged before any epoch finished: no checkpoint, no scores."""
    return {"run": cfg.run_id, "model": cfg.model.name, **facts, "classes": split.classes,
            "init": describe_init(cfg), "dataset": split.dataset,
            "split": {"digest": split.digest, "origin": split.origin,
                      "sizes": {part: len(getattr(split, part)) for part in PARTS}},
            "scored_on": None, "epochs": diverged["epoch"] - 1, "best_val_acc": None, "diverged": diverged,
            "verdict": {"verdict": "diverged", "explanation": f"{diverged_words(diverged)}; no epoch finished, "
                                                              "so there is no checkpoint to score"},
            "skipped_images": split.skipped, "cnnstudy_version": __version__}


def write_run_artifacts(run_dir: Path, cfg: RunConfig, history: list[dict], metrics: dict, outputs: dict,
                        split: Split, source) -> None:
    save_predictions(run_dir / "predictions.npz", outputs, split)
    write_plots(run_dir, cfg, history, metrics, outputs, split, source)
    write_json(run_dir / "metrics.json", metrics)


def save_predictions(path: Path, outputs: dict, split: Split) -> None:
    arrays = {}
    for name, out in outputs.items():
        items = getattr(split, name)
        arrays[f"{name}_probs"] = out["probs"]
        arrays[f"{name}_targets"] = out["targets"]
        arrays[f"{name}_ids"] = np.array([items[i][0] for i in out["indices"]])
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def write_plots(run_dir: Path, cfg: RunConfig, history: list[dict], metrics: dict, outputs: dict,
                split: Split, source) -> None:
    plot_dir = run_dir / "plots"
    plots.plot_curves(history, plot_dir / "curves.png", title=f"{cfg.run_id} ({cfg.model.name})")
    name = metrics["scored_on"]
    out, classes = outputs[name], split.classes
    aucs = [metrics[name]["per_class"][c]["auc"] for c in classes]
    plots.plot_roc(roc_curves(out["probs"], out["targets"], len(classes)), aucs, classes,
                   plot_dir / "roc.png", title=f"One-vs-rest ROC ({name})")
    plots.plot_confusion(metrics[name]["confusion_matrix"], classes, plot_dir / "confusion.png",
                         title=f"Confusion matrix ({name}, {metrics[name]['n']} images)")
    items = getattr(split, name)
    preds = out["probs"].argmax(1)
    # Evenly spaced through the (class-sorted) split, so the grid shows every class.
    shown = np.unique(np.linspace(0, len(items) - 1, min(GRID_SIZE, len(items))).astype(int)).tolist()
    images = [source.open(items[out["indices"][i]][0]).resize((cfg.data.image_size,) * 2) for i in shown]
    plots.plot_prediction_grid(images, [classes[out["targets"][i]] for i in shown],
                               [classes[preds[i]] for i in shown], plot_dir / "predictions.png")
    write_misclassified(run_dir / "misclassified.csv", name, items, out, classes)


def write_misclassified(path: Path, split_name: str, items, out: dict, classes: list[str]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["split", "file", "true", "predicted", "confidence"])
    for row, index in enumerate(out["indices"]):
        pred = int(out["probs"][row].argmax())
        if pred != out["targets"][row]:
            writer.writerow([split_name, items[index][0], classes[out["targets"][row]], classes[pred],
                             f"{out['probs'][row, pred]:.4f}"])
    atomic_write_text(path, buffer.getvalue())
