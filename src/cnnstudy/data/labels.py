"""Likely mislabels: images whose given label their out-of-sample predicted probabilities contradict,
found and ranked by cleanlab (confident learning: `find_label_issues`, ranked by self-confidence, the
probability given to the label the image has). The probabilities come either from a folded run's
pooled out-of-fold predictions or from a cross-validated logistic probe on pretrained features
(`probe_probabilities`; use/labels.py makes the features), folds grouped by copies so that no image
is predicted by a model that trained on its copy.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ..fileio import atomic_write_text

COLUMNS = ("file", "given_label", "suggested_label", "score")


def checkable(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Which images can be checked: those of classes with two images or more (one image of a class
    has no other image of it to be judged against)."""
    counts = np.bincount(labels, minlength=num_classes)
    return counts[labels] >= 2


def rank_label_issues(pred_probs: np.ndarray, labels: np.ndarray, files: list[str], classes: list[str]) -> list[dict]:
    """cleanlab's label issues among `files`, the most likely mislabel first: each with its given and
    suggested label and its score (the probability of its given label; lower is more suspect)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) < 2 or len(np.unique(labels)) < 2:
        return []
    probs = np.clip(np.asarray(pred_probs, dtype=np.float64), 1e-12, None)
    probs /= probs.sum(axis=1, keepdims=True)
    # n_jobs=1: cleanlab would fork a pool of workers, which a study (its signal handlers) must not have
    ranked = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    scores = get_label_quality_scores(labels, probs, method="self_confidence")
    return [{"file": files[i], "given_label": classes[labels[i]], "suggested_label": classes[int(probs[i].argmax())],
             "score": round(float(scores[i]), 6)} for i in ranked]


def probe_probabilities(features: np.ndarray, labels: np.ndarray, groups: np.ndarray, seed: int = 0,
                        folds: int = 5) -> tuple[np.ndarray, int]:
    """Out-of-sample class probabilities of a logistic-regression probe, cross-validated with folds that
    are stratified and keep each group (of copies) together; returns them and the number of folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = int(max(2, min(folds, len(np.unique(groups)))))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    probs = cross_val_predict(probe, features, labels, groups=groups, cv=splitter, method="predict_proba")
    return probs, folds


def write_label_issues(path: Path, rows: list[dict]) -> None:
    """label_issues.csv: one row an image, the most likely mislabel first."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: row[key] for key in COLUMNS} for row in rows)
    atomic_write_text(path, buffer.getvalue())


def read_label_issues(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [{**row, "score": float(row["score"])} for row in csv.DictReader(handle)]
