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


def _train_side(last: dict) -> tuple[float, str]:
    """The train accuracy the verdict compares with validation, and how it was measured."""
    if "train_eval_acc" in last:
        return last["train_eval_acc"], (f"train accuracy {last['train_eval_acc'] * 100:.1f}% (eval mode, "
                                        f"{last.get('train_eval_n', '?')} un-augmented training images)")
    return last["train_acc"], (f"train accuracy {last['train_acc'] * 100:.1f}% (measured while training, "
                               "with augmentation and Dropout on)")


def chance_level(train_targets, num_classes: int) -> float:
    """The accuracy of always answering the commonest training class (1 / classes when balanced)."""
    counts = np.bincount(np.asarray(train_targets, dtype=int), minlength=num_classes)
    return float(max(1 / num_classes, counts.max() / max(counts.sum(), 1)))


def overfitting_verdict(history: list[dict], max_gap: float = 0.10, val_loss_rise: float = 0.20,
                        val_loss_rise_abs: float = 0.05, min_train_acc: float = 0.70, min_learned: float = 0.10,
                        chance: float | None = None) -> dict:
    """'did not learn', 'overfit', 'underfit' or 'fits well', with the numbers behind it (thresholds in
    docs/verdict.md).

    Train and validation accuracy are compared like with like: the train side is measured in eval
    mode on un-augmented training images where the history has it. The loss-rise rule needs both a
    relative and an absolute rise, so that tiny losses moving by noise do not count. A model whose
    train accuracy stays near `chance` learned nothing, so a rising validation loss says nothing
    about overfitting: it "did not learn"."""
    last = history[-1]
    train_acc, train_words = _train_side(last)
    if chance is not None and train_acc < chance + min_learned * (1 - chance):
        return _not_learned(history, train_acc, train_words, chance, min_learned)
    gap = train_acc - last["val_acc"]
    val_losses = [row["val_loss"] for row in history]
    best = int(np.argmin(val_losses))
    rise_abs = val_losses[-1] - val_losses[best]
    rise = rise_abs / val_losses[best] if val_losses[best] > 0 else 0.0
    loss_rose = best < len(history) - 1 and rise > val_loss_rise and rise_abs > val_loss_rise_abs
    loss_words = (f"validation loss {val_losses[-1]:.3f} against its minimum {val_losses[best]:.3f} at epoch "
                  f"{history[best]['epoch']} (+{rise * 100:.0f}%, +{rise_abs:.3f}; overfit above "
                  f"+{val_loss_rise * 100:.0f}% and +{val_loss_rise_abs})")
    compared = (f"{train_words} vs validation {last['val_acc'] * 100:.1f}%: gap {gap * 100:.1f} points "
                f"(limit {max_gap * 100:.0f})")
    if gap > max_gap or loss_rose:
        verdict = "overfit"
        reasons = [compared] if gap > max_gap else []
        reasons += [loss_words] if loss_rose else []
    elif train_acc < min_train_acc:
        verdict = "underfit"
        reasons = [f"{train_words} is below {min_train_acc * 100:.0f}%: the model has not learned the training set"]
    else:
        verdict, reasons = "fits well", [compared, loss_words]
    return {"verdict": verdict, "epoch": last["epoch"], "gap": gap, "train_acc_used": train_acc,
            "train_measured": "eval" if "train_eval_acc" in last else "training",
            "val_loss_min_epoch": history[best]["epoch"], "val_loss_rise": rise, "val_loss_rise_abs": rise_abs,
            "final_train_acc": last["train_acc"], "final_val_acc": last["val_acc"],
            "explanation": "; ".join(reasons)}


def judged_at(history: list[dict], epoch: int, **settings) -> dict:
    """overfitting_verdict of the epochs up to `epoch` (`settings`: its thresholds and chance); the
    explanation says so where that epoch is not the last."""
    verdict = overfitting_verdict(history[:epoch], **settings)
    if epoch < len(history):
        verdict["explanation"] += f" (at epoch {epoch}, the scored one)"
    return verdict


def _not_learned(history: list[dict], train_acc: float, train_words: str, chance: float, min_learned: float) -> dict:
    last = history[-1]
    limit = chance + min_learned * (1 - chance)
    return {"verdict": "did not learn", "epoch": last["epoch"], "gap": train_acc - last["val_acc"],
            "train_acc_used": train_acc,
            "train_measured": "eval" if "train_eval_acc" in last else "training", "chance": chance,
            "final_train_acc": last["train_acc"], "final_val_acc": last["val_acc"],
            "explanation": f"{train_words} is near chance ({chance * 100:.1f}%, the commonest class; below "
                           f"{limit * 100:.1f}%, {min_learned * 100:.0f}% of the way to 100%): the model learned "
                           "nothing of the training set"}
