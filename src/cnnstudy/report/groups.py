"""A study's runs as the report sees them: each run's finished repeats gathered into a `Group`, read
from the run folders alone (runner/results/records.py), with the headline numbers of each and the choices
that must not look at test scores (the best run is chosen on validation accuracy)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..runner.results.records import RunRecord
from ..runner.search.sweep import BASE_SUFFIX
from .stats import mean_std_ci

VERDICT_WORDS = {"overfit": "overfits", "fits well": "fits well", "underfit": "underfits",
                 "did not learn": "did not learn", "diverged": "diverged"}


@dataclass
class Group:
    run_id: str
    phase: str
    records: list[RunRecord]  # the repeats with results, in repeat order
    _predictions: dict = field(default_factory=dict, repr=False)

    @property
    def metrics(self) -> list[dict]:
        return [r.metrics for r in self.records]

    @property
    def first(self) -> dict:
        return self.metrics[0]

    @property
    def name(self) -> str:
        return self.run_id.split("/", 1)[1]

    @property
    def is_base(self) -> bool:
        """A swept run's control (`<run>.base`): the sweep compares with it, nothing else does."""
        return self.run_id.endswith(BASE_SUFFIX)

    @property
    def test_key(self) -> tuple[str, str] | None:
        """Which test images the group was scored on; None when it has no held-out test split."""
        if any(m["scored_on"] != "test" for m in self.metrics):
            return None
        return self.first["dataset"], self.first["split"]["digest"]

    @property
    def dataset_name(self) -> str:
        return Path(self.first["dataset"]).name

    @property
    def test_images(self) -> int:
        return self.first["test"]["n"] if self.first.get("test") else 0

    def values(self, metric: str) -> list[float]:
        return [value_of(m, metric) for m in self.metrics]

    def summary(self, metric: str) -> dict:
        values = [v for v in self.values(metric) if v is not None]
        return mean_std_ci(values) if values else {"n": 0, "mean": None, "std": None, "ci95": None}

    def mean(self, metric: str) -> float | None:
        return self.summary(metric)["mean"]

    def mean_std_text(self, metric: str) -> str | None:
        """"81.4 ± 0.8" (in %, the spread only with repeats), or None where the metric is missing."""
        stats = self.summary(metric)
        if stats["mean"] is None:
            return None
        return f"{stats['mean'] * 100:.1f}" + (f" ± {stats['std'] * 100:.1f}" if stats["std"] is not None else "")

    @property
    def representative(self) -> int:
        """Index of the repeat with the best validation accuracy (what init_from and predict use)."""
        scores = self.values("val_acc")
        return scores.index(max(scores))

    @property
    def fixed_repeat(self) -> int:
        """Index of the repeat that stands for the run in a paired test: its first (r0), fixed before
        any score was seen, so that no choice by score favours it."""
        return 0

    @property
    def verdict(self) -> str:
        """The verdict most of its repeats got (the first such, on a tie)."""
        verdicts = [m["verdict"]["verdict"] for m in self.metrics]
        return max(dict.fromkeys(verdicts), key=verdicts.count)

    @property
    def init_kind(self) -> str:
        init = self.first["init"]
        return init if init in ("scratch", "ImageNet") else "transfer"

    def test_predictions(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(file ids, targets, correct or not) of one repeat's test predictions."""
        if index not in self._predictions:
            with np.load(self.records[index].run_dir / "predictions.npz") as arrays:
                correct = arrays["test_probs"].argmax(1) == arrays["test_targets"]
                self._predictions[index] = (arrays["test_ids"], arrays["test_targets"], correct)
        return self._predictions[index]


def value_of(metrics: dict, metric: str) -> float | None:
    """A headline number of one run's metrics.json (accuracies and scores as fractions)."""
    scored = metrics[metrics["scored_on"]]
    table = {"test_acc": lambda: metrics["test"]["accuracy"] if metrics.get("test") else None,
             "val_acc": lambda: metrics["best_val_acc"], "train_acc": lambda: metrics["best_train_acc"],
             "f1": lambda: scored["f1_macro"], "precision": lambda: scored["precision_macro"],
             "recall": lambda: scored["recall_macro"], "auc": lambda: scored["auc_macro"],
             "gap": lambda: metrics["verdict"]["gap"], "sec_per_epoch": lambda: metrics["seconds_per_epoch"],
             "ece": lambda: scored.get("ece"), "train_eval_acc": lambda: metrics["verdict"].get("train_acc_used")}
    return table[metric]()


def group_records(records: list[RunRecord]) -> list[Group]:
    """The runs (of a study's records, in study order) with at least one finished, trusted repeat."""
    groups: dict[str, Group] = {}
    for record in records:
        if record.metrics is not None:
            phase = record.run_id.split("/")[0]
            groups.setdefault(record.run_id, Group(record.run_id, phase, [])).records.append(record)
    return list(groups.values())


def best_by_validation(groups: list[Group]) -> Group | None:
    """The group with the best mean validation accuracy (the first in study order on a tie): the
    choice never looks at a test score, so the test split can still confirm it."""
    scored = [g for g in groups if g.mean("val_acc") is not None]
    return max(scored, key=lambda g: g.mean("val_acc")) if scored else None


def by_test_set(groups: list[Group]) -> dict[tuple, list[Group]]:
    """The groups scored on each set of held-out test images, in study order."""
    found: dict[tuple, list[Group]] = {}
    for group in groups:
        if group.test_key is not None:
            found.setdefault(group.test_key, []).append(group)
    return found


def overfits(group: Group) -> bool:
    """The run's verdict (its repeats' majority, the first on a tie) is "overfit": the one rule the
    answer's words and the gap comparisons both read."""
    return group.verdict == "overfit"


def verdict_counts(group: Group) -> str:
    """"overfit ×1, underfit ×2": each verdict its repeats got, in order of first appearance."""
    verdicts = [m["verdict"]["verdict"] for m in group.metrics]
    return ", ".join(f"{v} ×{verdicts.count(v)}" for v in dict.fromkeys(verdicts))


def verdict_share(group: Group) -> str:
    """" in 1 of 2 repeats" where the repeats do not all share the run's verdict, else ""."""
    verdicts = [m["verdict"]["verdict"] for m in group.metrics]
    agreeing = verdicts.count(group.verdict)
    return "" if agreeing == len(verdicts) else f" in {agreeing} of {len(verdicts)} repeats"
