"""Does a run's confidence mean anything? Expected calibration error (top-label, 15 equal-width
bins, torchmetrics' definition), negative log-likelihood, the bins of a reliability diagram, and
temperature scaling: one scalar T fitted on the validation split by NLL, dividing the logits, so
that predictions keep their argmax and their confidence becomes honest (Guo et al., 2017)."""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from torchmetrics.functional.classification import multiclass_calibration_error

BINS = 15


def log_probs(probs: np.ndarray) -> np.ndarray:
    """Log-probabilities: logits up to a per-row constant, which softmax ignores."""
    return np.log(np.clip(probs.astype(np.float64), 1e-30, 1.0))


def scaled(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / T), from the probabilities softmax(logits)."""
    z = log_probs(probs) / temperature
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


def ece(probs: np.ndarray, targets: np.ndarray, bins: int = BINS) -> float:
    return float(multiclass_calibration_error(torch.as_tensor(probs, dtype=torch.float32),
                                              torch.as_tensor(targets, dtype=torch.long),
                                              num_classes=probs.shape[1], n_bins=bins, norm="l1"))


def nll(probs: np.ndarray, targets: np.ndarray) -> float:
    return float(-log_probs(probs)[np.arange(len(targets)), targets].mean())


def reliability_bins(probs: np.ndarray, targets: np.ndarray, bins: int = BINS) -> list[dict]:
    """Per confidence bin (equal width, top label): count, mean confidence, accuracy. Their weighted
    gaps add up to `ece`."""
    confidence, correct = probs.max(1), probs.argmax(1) == targets
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    return [{"low": float(edges[b]), "high": float(edges[b + 1]), "count": int((index == b).sum()),
             "confidence": float(confidence[index == b].mean()) if (index == b).any() else None,
             "accuracy": float(correct[index == b].mean()) if (index == b).any() else None} for b in range(bins)]


def fit_temperature(probs: np.ndarray, targets: np.ndarray) -> float:
    """The T in [0.05, 20] minimizing the NLL of softmax(logits / T) on these (validation) predictions."""
    logits = torch.as_tensor(log_probs(probs))
    labels = torch.as_tensor(targets, dtype=torch.long)

    def loss(log_t: float) -> float:
        return float(torch.nn.functional.cross_entropy(logits / np.exp(log_t), labels))

    found = minimize_scalar(loss, bounds=(np.log(0.05), np.log(20.0)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(found.x))


def calibration_report(outputs: dict, fit: bool) -> dict:
    """ECE and NLL of val and test; with `fit`, the temperature and both after scaling."""
    report = {part: {"ece": ece(out["probs"], out["targets"]), "nll": nll(out["probs"], out["targets"])}
              for part, out in outputs.items()}
    if fit and "val" in outputs:
        t = fit_temperature(outputs["val"]["probs"], outputs["val"]["targets"])
        report["temperature"] = t
        for part, out in outputs.items():
            after = scaled(out["probs"], t)
            report[part].update(ece_scaled=ece(after, out["targets"]), nll_scaled=nll(after, out["targets"]))
    return report
