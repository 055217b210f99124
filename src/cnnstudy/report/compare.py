"""Runs side by side: each run's repeats gathered into a group, and groups scored on the same test
images compared with their uncertainty (stats.py). Everything is read from the run folders.

Which pairs: every run against the nearest earlier phase that has runs on the same test images
("previous phase"), and every run against the best run on those images ("best"). How:
- both runs repeated (2 or more repeats each): Welch's t-test and interval over the repeats' test
  accuracies;
- otherwise: McNemar's exact test on the paired test predictions, with a bootstrap interval of
  the accuracy difference; a repeated run is represented by its repeat with the best validation
  accuracy (the one init_from uses).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..runner.sweep import base_name
from .stats import bootstrap_diff_ci, holm, mcnemar_exact, mean_std_ci, welch, words
from ..runner.records import RunRecord


@dataclass
class Group:
    run_id: str
    phase: str
    records: list[RunRecord]  # the repeats with results
    _predictions: dict = field(default_factory=dict, repr=False)

    @property
    def metrics(self) -> list[dict]:
        return [r.metrics for r in self.records]

    @property
    def first(self) -> dict:
        return self.metrics[0]

    @property
    def test_key(self) -> tuple[str, str] | None:
        """Which test images the group was scored on; None when it has no held-out test split."""
        if any(m["scored_on"] != "test" for m in self.metrics):
            return None
        return self.first["dataset"], self.first["split"]["digest"]

    def values(self, metric: str) -> list[float]:
        return [value_of(m, metric) for m in self.metrics]

    def summary(self, metric: str) -> dict:
        values = [v for v in self.values(metric) if v is not None]
        return mean_std_ci(values) if values else {"n": 0, "mean": None, "std": None, "ci95": None}

    def mean_std_text(self, metric: str) -> str | None:
        """"81.4 ± 0.8" (in %, the spread only with repeats), or None where the metric is missing."""
        stats = self.summary(metric)
        if stats["mean"] is None:
            return None
        return f"{stats['mean'] * 100:.1f}" + (f" ± {stats['std'] * 100:.1f}" if stats["std"] is not None else "")

    @property
    def representative(self) -> int:
        """Index of the repeat with the best validation accuracy."""
        scores = self.values("val_acc")
        return scores.index(max(scores))

    def test_predictions(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(file ids, correct or not) of one repeat's test predictions."""
        if index not in self._predictions:
            with np.load(self.records[index].run_dir / "predictions.npz") as arrays:
                correct = arrays["test_probs"].argmax(1) == arrays["test_targets"]
                self._predictions[index] = (arrays["test_ids"], correct)
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


def compare(a: Group, b: Group) -> dict | None:
    """Test accuracy of `a` minus `b`, with interval, p-value, method and words; None if not paired."""
    if a.test_key is None or a.test_key != b.test_key:
        return None
    if len(a.records) > 1 and len(b.records) > 1:
        result = welch(a.values("test_acc"), b.values("test_acc"))
        method = f"Welch's t-test over {len(a.records)} and {len(b.records)} repeats"
    else:
        (ids_a, correct_a), (ids_b, correct_b) = (g.test_predictions(g.representative) for g in (a, b))
        if len(ids_a) != len(ids_b) or not (ids_a == ids_b).all():
            return None
        test = mcnemar_exact(correct_a, correct_b)
        result = {"diff": float(correct_a.mean() - correct_b.mean()), "p": test["p"],
                  "ci95": bootstrap_diff_ci(correct_a, correct_b)}
        method = f"McNemar's exact test ({test['b']} vs {test['c']} discordant images), bootstrap interval"
    return {"a": a.run_id, "b": b.run_id, "dataset": Path(a.test_key[0]).name,
            "test_images": a.first["test"]["n"], **result, "method": method,
            "words": words(result["diff"], result["p"])}


def best_groups(groups: list[Group]) -> dict[tuple, Group]:
    """The group with the best mean test accuracy for each set of test images."""
    best: dict[tuple, Group] = {}
    for group in groups:
        key = group.test_key
        if key is not None and (key not in best or group.summary("test_acc")["mean"] >
                                best[key].summary("test_acc")["mean"]):
            best[key] = group
    return best


SWEEP_KIND = "sweep: best vs base setting"
INIT_KINDS = {"scratch": "training from scratch", "ImageNet": "ImageNet pretraining", "transfer": "transfer"}


def overfit_majority(group: Group) -> bool:
    return sum(m["verdict"]["verdict"] == "overfit" for m in group.metrics) * 2 > len(group.records)


def init_kind(group: Group) -> str:
    init = group.first["init"]
    return init if init in ("scratch", "ImageNet") else "transfer"


def gap_pairs(groups: list[Group]) -> list[tuple[Group, Group]]:
    """(later run, the first earlier overfit run of another phase on the same test images)."""
    pairs = []
    for i, group in enumerate(groups):
        earlier = [g for g in groups[:i] if g.phase != group.phase and g.test_key is not None
                   and g.test_key == group.test_key and overfit_majority(g)]
        pairs += [(group, earlier[0])] if earlier else []
    return pairs


def scratch_pairs(groups: list[Group]) -> list[tuple[Group, Group | None, str]]:
    """Per set of test images: (the best pretrained or transferred run, the best run from scratch or
    None, its kind)."""
    pairs = []
    for key in dict.fromkeys(g.test_key for g in groups if g.test_key is not None):
        by_kind = {kind: best_groups([g for g in groups if g.test_key == key and init_kind(g) == kind]).get(key)
                   for kind in INIT_KINDS}
        scratch = by_kind.pop("scratch")
        pairs += [(group, scratch, kind) for kind, group in by_kind.items() if group is not None]
    return pairs


def stated(found: list[dict], a: Group, b: Group) -> dict | None:
    """The comparison of `a` against `b` as the report states it (its p adjusted), if it makes one."""
    return next((c for c in found if c["a"] == a.run_id and c["b"] == b.run_id and "class" not in c), None)


def holm_adjusted(found: list[dict]) -> list[dict]:
    """Every stated comparison with its raw p kept as p_raw, p adjusted by Holm over all of them, and
    the words following the adjusted p."""
    for c, adjusted in zip(found, holm([c["p"] for c in found])):
        c.update(p_raw=c["p"], p=adjusted, words=words(c["diff"], adjusted))
    return found


CLASS_KIND = "by class"


def class_comparisons(a: Group, b: Group) -> list[dict]:
    """`a` against `b` on each class's test images (their representative repeats), raw p."""
    if not a.first.get("classes"):
        return []
    (ids_a, correct_a), (ids_b, correct_b) = (g.test_predictions(g.representative) for g in (a, b))
    if len(ids_a) != len(ids_b) or not (ids_a == ids_b).all():
        return []
    with np.load(a.records[a.representative].run_dir / "predictions.npz") as arrays:
        targets = arrays["test_targets"]
    found = []
    for k, name in enumerate(a.first["classes"]):
        mine = targets == k
        if mine.any():
            test = mcnemar_exact(correct_a[mine], correct_b[mine])
            found.append({"kind": CLASS_KIND, "class": name, "a": a.run_id, "b": b.run_id,
                          "dataset": Path(a.test_key[0]).name, "test_images": int(mine.sum()),
                          "diff": float(correct_a[mine].mean() - correct_b[mine].mean()), "p": test["p"],
                          "ci95": bootstrap_diff_ci(correct_a[mine], correct_b[mine]),
                          "method": f"McNemar's exact test on the class's {int(mine.sum())} images"})
    return found


def comparisons(groups: list[Group]) -> list[dict]:
    """Each run against the nearest earlier phase on the same test images, against the best run,
    a swept run's confirmed best setting against its base setting (`<run>.base`), and the pairs
    the findings state (closing a gap, against training from scratch); p adjusted by Holm."""
    phases = list(dict.fromkeys(g.phase for g in groups))
    found, best = [], best_groups(groups)
    for group in groups:
        earlier = [g for g in groups if phases.index(g.phase) < phases.index(group.phase)
                   and g.test_key is not None and g.test_key == group.test_key]
        nearest = max((phases.index(g.phase) for g in earlier), default=None)
        top = best.get(group.test_key)
        pairs = [("previous phase" + (", best run" if g is top else ""), g)
                 for g in earlier if phases.index(g.phase) == nearest]
        if top is not None and top is not group and all(g is not top for _, g in pairs):
            pairs.append(("best run", top))
        base = next((g for g in groups if g.run_id == base_name(group.run_id)), None)
        if base is not None:
            pairs = [(kind, g) for kind, g in pairs if g is not base] + [(SWEEP_KIND, base)]
        for kind, other in pairs:
            result = compare(group, other)
            found += [{"kind": kind, **result}] if result else []
    extra = [("closing the gap", a, b) for a, b in gap_pairs(groups)] + \
        [("against scratch", a, b) for a, b, _ in scratch_pairs(groups) if b is not None]
    for kind, a, b in extra:  # the pairs the findings state, once each
        if stated(found, a, b) is None and (result := compare(a, b)) is not None:
            found.append({"kind": kind, **result})
    by_id = {g.run_id: g for g in groups}
    found += [x for c in list(found) if c["kind"].startswith("previous phase")
              for x in class_comparisons(by_id[c["a"]], by_id[c["b"]])]
    return holm_adjusted(found)
