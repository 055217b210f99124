"""Classification metrics with torchmetrics, and the overfitting verdict read from a run's history."""
from __future__ import annotations

import warnings

import numpy as np
import torch
from torchmetrics.functional import classification as tmf


def classification_metrics(probs: np.ndarray, targets: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, macro/weighted/per-class precision, recall and F1, confusion matrix, one-vs-rest AUC."""
    n = len(class_names)
    p, t = torch.as_tensor(probs, dtype=torch.float32), torch.as_tensor(targets, dtype=torch.long)
    preds = p.argmax(1)
    result: dict = {"n": int(len(t)), "accuracy": float((preds == t).float().mean()) if len(t) else 0.0}
    scores = {"precision": tmf.multiclass_precision, "recall": tmf.multiclass_recall,
              "f1": tmf.multiclass_f1_score}
    per_class: dict[str, dict] = {name: {} for name in class_names}
    for metric, fn in scores.items():
        for average in ("macro", "weighted"):
            result[f"{metric}_{average}"] = float(fn(preds, t, num_classes=n, average=average))
        for name, value in zip(class_names, fn(preds, t, num_classes=n, average="none").tolist()):
            per_class[name][metric] = value
    auc = per_class_auc(p, t, n)
    for name, value, support in zip(class_names, auc, np.bincount(targets, minlength=n).tolist()):
        per_class[name].update(auc=value, support=support)
    present = [a for a in auc if a is not None]
    result["auc_macro"] = float(np.mean(present)) if present else None
    result["per_class"] = per_class
    result["confusion_matrix"] = tmf.multiclass_confusion_matrix(preds, t, num_classes=n).tolist()
    return result


def per_class_auc(probs: torch.Tensor, targets: torch.Tensor, n: int) -> list[float | None]:
    """One-vs-rest AUC per class; None where a class has no positive or no negative sample."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns for absent classes; we report None instead
        values = tmf.multiclass_auroc(probs, targets, num_classes=n, average="none").tolist()
    counts = torch.bincount(targets, minlength=n)
    return [v if 0 < counts[i] < len(targets) else None for i, v in enumerate(values)]


def roc_curves(probs: np.ndarray, targets: np.ndarray, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    fpr, tpr, _ = tmf.multiclass_roc(torch.as_tensor(probs, dtype=torch.float32),
                                     torch.as_tensor(targets, dtype=torch.long), num_classes=n)
    return [(f.numpy(), r.numpy()) for f, r in zip(fpr, tpr)]


def epoch_line(row: dict, epochs: int) -> str:
    """A history row as the seed printed it."""
    return (f"Epoch [{row['epoch']}/{epochs}], Loss: {row['train_loss']:.4f}, "
            f"Accuracy: {row['train_acc'] * 100:.2f}% | Validation Loss: {row['val_loss']:.4f}, "
            f"Validation Accuracy: {row['val_acc'] * 100:.2f}%")


def overfitting_verdict(history: list[dict], max_gap: float = 0.10, val_loss_rise: float = 0.20,
                        min_train_acc: float = 0.70) -> dict:
    """'overfit', 'underfit' or 'fits well', with the numbers behind it (thresholds in docs/verdict.md)."""
    last = history[-1]
    gap = last["train_acc"] - last["val_acc"]
    val_losses = [row["val_loss"] for row in history]
    best = int(np.argmin(val_losses))
    rise = val_losses[-1] / val_losses[best] - 1 if val_losses[best] > 0 else 0.0
    reasons = []
    if gap > max_gap:
        reasons.append(f"train accuracy is {gap * 100:.1f} points above validation (limit {max_gap * 100:.0f})")
    if rise > val_loss_rise and best < len(history) - 1:
        reasons.append(f"validation loss rose {rise * 100:.0f}% from its minimum at epoch "
                       f"{history[best]['epoch']} (limit {val_loss_rise * 100:.0f}%)")
    if reasons:
        verdict = "overfit"
    elif last["train_acc"] < min_train_acc:
        verdict = "underfit"
        reasons.append(f"final train accuracy {last['train_acc'] * 100:.1f}% is below "
                       f"{min_train_acc * 100:.0f}%: the model has not learned the training set")
    else:
        verdict = "fits well"
        reasons.append(f"train/val gap {gap * 100:.1f} points, validation loss within "
                       f"{val_loss_rise * 100:.0f}% of its minimum")
    return {"verdict": verdict, "gap": gap, "val_loss_min_epoch": history[best]["epoch"],
            "val_loss_rise": rise, "final_train_acc": last["train_acc"], "final_val_acc": last["val_acc"],
            "explanation": "; ".join(reasons)}
