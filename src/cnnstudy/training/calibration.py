"""Does a run's confidence mean anything? Expected calibration error (top-label, 15 equal-width
bins, torchmetrics' definition), negative log-likelihood, the bins of a reliability diagram, and
temperature scaling: one scalar T fitted on the validation split by NLL, dividing the logits, so
that predictions keep their argmax and their confidence becomes honest (Guo et al., 2017).

Everything that needs log-probabilities takes the logits, never probabilities read back (a float32
softmax rounds to exactly 1.0 and 0.0 at a logit gap of about 17 and 104, which a clip would then
have to invent), and there is one NLL: the history's val_loss and metrics.json's nll are the same.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from torchmetrics.functional.classification import multiclass_calibration_error

BINS = 15
T_BOUNDS = (0.05, 20.0)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    return torch.log_softmax(torch.as_tensor(logits, dtype=torch.float64), 1).numpy()


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Probabilities as evaluation stores them (float32), optionally of logits / T."""
    return torch.softmax(torch.as_tensor(logits, dtype=torch.float32) / temperature, 1).numpy()


def nll(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean negative log-likelihood of the targets: the cross-entropy training minimizes."""
    if len(targets) == 0:
        return float("nan")
    return float(-log_softmax(logits)[np.arange(len(targets)), targets].mean())


def ece(probs: np.ndarray, targets: np.ndarray, bins: int = BINS) -> float:
    return float(multiclass_calibration_error(torch.as_tensor(probs, dtype=torch.float32),
                                              torch.as_tensor(targets, dtype=torch.long),
                                              num_classes=probs.shape[1], n_bins=bins, norm="l1"))


def reliability_bins(probs: np.ndarray, targets: np.ndarray, bins: int = BINS) -> list[dict]:
    """Per confidence bin (top label): count, mean confidence, accuracy, binned exactly as torchmetrics
    bins for `ece` (float32 edges, a confidence on an edge in the bin above, and exactly 1.0 in a bin
    of its own, the last), so that the bins' weighted gaps add up to it."""
    probs_t = torch.as_tensor(probs, dtype=torch.float32)
    confidence, predicted = probs_t.max(1)
    correct = (predicted == torch.as_tensor(targets, dtype=torch.long)).float()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float32)
    index = torch.bucketize(confidence, edges, right=True) - 1
    found = []
    for b in range(bins + 1):
        mine = index == b
        high = float(edges[b + 1]) if b < bins else 1.0
        found.append({"low": float(edges[b]), "high": high, "count": int(mine.sum()),
                      "confidence": float(confidence[mine].mean()) if mine.any() else None,
                      "accuracy": float(correct[mine].mean()) if mine.any() else None})
    return found


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> tuple[float, bool]:
    """The T in T_BOUNDS minimizing the NLL of softmax(logits / T) on these (validation) predictions,
    and whether it ended at a bound (then the best T lies outside, and it is only the nearest one)."""
    logits_t = torch.as_tensor(logits, dtype=torch.float64)
    labels = torch.as_tensor(targets, dtype=torch.long)

    def loss(log_t: float) -> float:
        return float(torch.nn.functional.cross_entropy(logits_t / np.exp(log_t), labels))

    low, high = np.log(T_BOUNDS[0]), np.log(T_BOUNDS[1])
    found = minimize_scalar(loss, bounds=(low, high), method="bounded", options={"xatol": 1e-4})
    # At a bound, or no worse there (a flat NLL: validation separated perfectly, any small T will do).
    at_bound = min(found.x - low, high - found.x) < 1e-2 or min(loss(low), loss(high)) <= found.fun + 1e-12
    if at_bound:
        warnings.warn(f"calibration: the temperature reached its bound T = {np.exp(found.x):.3g} (it is searched "
                      f"in {T_BOUNDS[0]}-{T_BOUNDS[1]}); the validation split may be too small or the model "
                      "separates it perfectly", stacklevel=2)
    return float(np.exp(found.x)), bool(at_bound)


def calibration_report(outputs: dict, fit: bool) -> dict:
    """ECE and NLL of val and test; with `fit`, the temperature and both after scaling."""
    report = {part: {"ece": ece(out["probs"], out["targets"]), "nll": nll(out["logits"], out["targets"])}
              for part, out in outputs.items()}
    if fit and "val" in outputs:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t, at_bound = fit_temperature(outputs["val"]["logits"], outputs["val"]["targets"])
        report.update(temperature=t, at_bound=at_bound)
        if caught:
            report["warning"] = str(caught[0].message)
        for part, out in outputs.items():
            report[part].update(ece_scaled=ece(softmax(out["logits"], t), out["targets"]),
                                nll_scaled=nll(out["logits"] / t, out["targets"]))
    return report
