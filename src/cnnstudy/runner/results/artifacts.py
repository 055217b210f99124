"""What a finished run writes beside its checkpoints: predictions, plots, the misclassified list and,
last, metrics.json, whose presence marks the run finished."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import torch

from ...report import plots
from ..._version import __version__
from ...config import RunConfig
from ...data.cache import resized_pixels
from ...data.transforms import normalize
from ...models.explain import class_activation_maps
from ...models.registry import cam_layer_name
from ...data.splits import PARTS, Split
from ...fileio import atomic_write_bytes, atomic_write_text, write_json
from ...training.calibration import calibration_report, reliability_bins, softmax
from ...training.engine import diverged_words
from ...training.metrics import chance_level, classification_metrics, epoch_line, judged_at, roc_curves

GRID_SIZE = 16
WRONG_SHOWN = 8  # the most confident mistakes, with their maps


def describe_init(cfg: RunConfig) -> str:
    if cfg.model.init_from:
        return f"from {cfg.model.init_from}"
    if cfg.model.weights:
        return f"weights {Path(cfg.model.weights).name}"
    return "ImageNet" if cfg.model.pretrained else "scratch"


def run_metrics(cfg: RunConfig, history: list[dict], outputs: dict, split: Split, facts: dict,
                best_epoch: int | None = None) -> dict:
    """metrics.json: the scores with everything needed to say what they belong to.

    `facts` holds what the run assembled: parameter counts, device, precision, fingerprint digest;
    `best_epoch`: best.pt's epoch (default: the first with the highest val_acc).
    """
    best = history[best_epoch - 1] if best_epoch else max(history, key=lambda row: row["val_acc"])
    metrics = {"run": cfg.run_id, "model": cfg.model.name, **facts, "classes": split.classes,
               "init": describe_init(cfg), "dataset": split.dataset,
               "split": {"digest": split.digest, "origin": split.origin,
                         "sizes": {part: len(getattr(split, part)) for part in PARTS}},
               "scored_on": "test" if "test" in outputs else "val",
               "epochs": len(history), "best_epoch": best["epoch"],
               "best_train_acc": best["train_acc"], "best_val_acc": best["val_acc"],
               "final_epoch_line": epoch_line(history[-1], cfg.train.epochs),
               "seconds_per_epoch": float(np.mean([row["seconds"] for row in history])),
               "verdict": judged_at(history, judged_epoch(cfg, history, best["epoch"]), **cfg.verdict.model_dump(),
                                    chance=chance_level([label for _, label in split.train], len(split.classes))),
               "skipped_images": split.skipped, "cnnstudy_version": __version__}
    for name, out in outputs.items():
        metrics[name] = classification_metrics(out["probs"], out["targets"], split.classes)
    return metrics


def judged_epoch(cfg: RunConfig, history: list[dict], best_epoch: int) -> int:
    """The epoch the verdict reads up to: the scored one (best.pt) for a run with early stopping or
    EMA, whose scored weights are the point of the recipe; the last otherwise, where the verdict
    judges how training went (phase 1's "did it overfit" needs the epochs after the best one)."""
    if cfg.train.early_stopping is not None or cfg.train.ema is not None:
        return best_epoch
    return len(history)


def add_calibration(metrics: dict, outputs: dict, fit: bool) -> None:
    """ECE and NLL of each scored split into its section; with `fit` (calibrate: true), the
    temperature fitted on validation and both scores after scaling, under "calibration"."""
    report = calibration_report(outputs, fit)
    for part in outputs:
        metrics[part].update(ece=report[part]["ece"], nll=report[part]["nll"])
    if fit and "temperature" in report:
        metrics["calibration"] = {"temperature": report["temperature"], "fitted_on": "val",
                                  "at_bound": report["at_bound"], **{part: report[part] for part in outputs}}
        if "warning" in report:
            metrics["calibration"]["warning"] = report["warning"]


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
        arrays[f"{name}_logits"] = out["logits"]
        arrays[f"{name}_targets"] = out["targets"]
        arrays[f"{name}_ids"] = np.array([items[i][0] for i in out["indices"]])
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def write_plots(run_dir: Path, cfg: RunConfig, history: list[dict], metrics: dict, outputs: dict,
                split: Split, source) -> None:
    plot_dir = run_dir / "plots"
    if history:  # pooled folds have no history of their own: each fold folder has its curves
        plots.plot_curves(history, plot_dir / "curves.png", title=f"{cfg.run_id} ({cfg.model.name})")
    name = metrics["scored_on"]
    out, classes = outputs[name], split.classes
    aucs = [metrics[name]["per_class"][c]["auc"] for c in classes]
    plots.plot_roc(roc_curves(out["probs"], out["targets"], len(classes)), aucs, classes,
                   plot_dir / "roc.png", title=f"One-vs-rest ROC ({name})")
    plots.plot_confusion(metrics[name]["confusion_matrix"], classes, plot_dir / "confusion.png",
                         title=f"Confusion matrix ({name}, {metrics[name]['n']} images)")
    temperature = metrics.get("calibration", {}).get("temperature")
    diagrams = {"as trained": reliability_bins(out["probs"], out["targets"])}
    if "scaled_probs" in out:  # pooled folds: each fold scaled by its own temperature
        diagrams["each fold's temperature"] = reliability_bins(out["scaled_probs"], out["targets"])
    elif temperature:
        diagrams[f"temperature {temperature:.2f}"] = reliability_bins(softmax(out["logits"], temperature),
                                                                      out["targets"])
    plots.plot_reliability(diagrams, plot_dir / "reliability.png", title=f"Reliability ({name}, "
                           f"ECE {metrics[name]['ece'] * 100:.1f}%)")
    items = getattr(split, name)
    preds = out["probs"].argmax(1)
    shown = grid_rows(len(items))
    images = [source.open(items[out["indices"][i]][0]).resize((cfg.data.image_size,) * 2) for i in shown]
    plots.plot_prediction_grid(images, [classes[out["targets"][i]] for i in shown],
                               [classes[preds[i]] for i in shown], plot_dir / "predictions.png")
    write_misclassified(run_dir / "misclassified.csv", name, items, out, classes)


def grid_rows(count: int) -> list[int]:
    """Rows shown in a run's grids: evenly spaced through the (class-sorted) split, so every class is
    there, and the same rows for every run on the same split."""
    return np.unique(np.linspace(0, count - 1, min(GRID_SIZE, count)).astype(int)).tolist()


def write_explanations(run_dir: Path, model, cfg: RunConfig, metrics: dict, outputs: dict, split: Split, source,
                       stats, device, precision: str, resample: str = "bilinear",
                       crop_pct: float | None = None) -> None:
    """Grad-CAM maps (for the predicted class) of a row of the grid's images and of the most confident mistakes:
    explanations.npz (file ids, pixels, maps, targets, predictions) and plots/gradcam.png, why_wrong.png.
    A model that declares no target layer gets none."""
    if cam_layer_name(model, cfg.model.name) is None:
        return
    name = metrics["scored_on"]
    out, items = outputs[name], getattr(split, name)
    preds, confidence = out["probs"].argmax(1), out["probs"].max(1)
    wrong = [int(i) for i in np.argsort(-confidence, kind="stable") if preds[i] != out["targets"][i]][:WRONG_SHOWN]
    rows = grid_rows(len(items))[::2] + wrong  # a row of the grid's images (every other one), then mistakes
    ids = [items[out["indices"][i]][0] for i in rows]
    pixels = np.stack([resized_pixels(source.open(item), cfg.data.image_size, resample, crop_pct) for item in ids])
    try:
        maps = class_activation_maps(model, cfg.model.name, normalize(torch.from_numpy(pixels).permute(0, 3, 1, 2)
                                                                      .float(), stats), preds[rows].tolist(), device,
                                     precision)
    except (ValueError, AttributeError, KeyError, RuntimeError, TypeError) as err:
        # A layer Grad-CAM cannot read (some timm families): the run is scored and kept, without maps.
        metrics["explanations"] = f"none: Grad-CAM is not supported for {cfg.model.name} ({type(err).__name__}: {err})"
        return
    kinds = ["grid"] * (len(rows) - len(wrong)) + ["wrong"] * len(wrong)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, ids=np.array(ids), kind=np.array(kinds), pixels=pixels, maps=maps,
                        targets=out["targets"][rows], preds=preds[rows], confidence=confidence[rows])
    atomic_write_bytes(run_dir / "explanations.npz", buffer.getvalue())
    titles = [f"True: {split.classes[out['targets'][i]]} / Pred: {split.classes[preds[i]]}" for i in rows]
    for kind, path in (("grid", "gradcam.png"), ("wrong", "why_wrong.png")):
        picked = [k for k, shown in enumerate(kinds) if shown == kind]
        if picked:
            plots.plot_cam_grid(pixels[picked], maps[picked], [titles[k] for k in picked],
                                [preds[rows[k]] == out["targets"][rows[k]] for k in picked], run_dir / "plots" / path)


def write_misclassified(path: Path, split_name: str, items, out: dict, classes: list[str]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["split", "file", "true", "predicted", "confidence"])
    for row, index in enumerate(out["indices"]):
        pred = int(out["probs"][row].argmax())
        if pred != out["targets"][row]:
            writer.writerow([split_name, items[index][0], classes[out["targets"][row]], classes[pred],
                             f"{out['probs'][row, pred]:.4f}"])
    atomic_write_text(path, buffer.getvalue())
