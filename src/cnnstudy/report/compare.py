"""Runs side by side: the pairs the study asks about (pairs.py) tested on the same test images, with
intervals that agree with their tests. Everything is read from the run folders.

How a pair is tested:
- both runs repeated (2 or more repeats each): Welch's t-test and interval over the repeats' test
  accuracies;
- otherwise: McNemar's exact test on the paired test predictions, with the interval that inverts it
  (stats.paired_interval); a repeated run is represented by its first repeat, fixed before any
  score was seen.

Two families, each adjusted on its own (Bonferroni, with intervals at the matching level 1 - 0.05/m,
so that an interval excludes zero exactly when the adjusted p is below 0.05): the confirmatory
comparisons the study states, and the exploratory ones (each confirmatory phase step split by class).
"""
from __future__ import annotations

import numpy as np

from .groups import Group
from .pairs import PHASE_KINDS, SWEEP_KIND, stated_pairs
from .stats import (bonferroni, mcnemar_exact, paired_interval, paired_t, paired_t_interval, welch, welch_interval,
                    words)

CONFIRMATORY, EXPLORATORY = "confirmatory", "exploratory"
CLASS_KIND = "by class"


def _paired(a: Group, b: Group) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(targets, A correct, B correct) on the same images, or None if the files differ."""
    ids_a, targets, correct_a = a.test_predictions(a.fixed_repeat)
    ids_b, _, correct_b = b.test_predictions(b.fixed_repeat)
    if len(ids_a) != len(ids_b) or not (ids_a == ids_b).all():
        return None
    return targets, correct_a, correct_b


def _repeat_words(group: Group) -> str:
    return f"{group.run_id} r{group.records[group.fixed_repeat].repeat}" if len(group.records) > 1 else group.run_id


def compare_pair(a: Group, b: Group, by_seed: bool = False) -> dict | None:
    """Test accuracy of `a` minus `b`: difference, raw p, method and what the interval needs. Both
    repeated: over the repeats (paired by seed where `by_seed` and their seeds match one to one);
    where the repeats do not vary at all, or a side has one run: McNemar on their first repeats."""
    if len(a.records) > 1 and len(b.records) > 1:
        result = _over_repeats(a, b, by_seed)
        if result["p"] is not None:
            return {**result, "method": result["method"] + sweep_fold_words(a, b)}
    paired = _paired(a, b)
    if paired is None:
        return None
    _, correct_a, correct_b = paired
    test = mcnemar_exact(correct_a, correct_b)
    return {"diff": float(correct_a.mean() - correct_b.mean()), "p": test["p"],
            "method": f"McNemar's exact test ({test['b']} vs {test['c']} discordant images"
                      f"{', ' + _repeat_words(a) + ' vs ' + _repeat_words(b) if len(a.records) + len(b.records) > 2 else ''})"
                      + fold_words(a, b),
            "test": {"mcnemar": [test["b"], test["c"], test["n"]]}}


def fold_words(a: Group, b: Group) -> str:
    """For two k-fold runs on the same folds (their pooled out-of-fold predictions are what is tested):
    the difference within each fold, so that a difference carried by one fold shows."""
    folds_a = a.metrics[a.fixed_repeat].get("folds")
    folds_b = b.metrics[b.fixed_repeat].get("folds")
    if not folds_a or not folds_b or folds_a["k"] != folds_b["k"]:
        return ""
    # From the counts of correct images (the stored accuracies are float32: 0.8125 reads 0.81249...).
    diffs = [f"{(round(x * n) - round(y * n)) / n * 100:+.1f}" if n else "n/a"
             for x, y, n in zip(folds_a["test_acc"], folds_b["test_acc"], folds_a["test_n"])]
    return f"; pooled out-of-fold predictions of {folds_a['k']} folds, per fold {', '.join(diffs)} points" + \
        sweep_fold_words(a, b)


def sweep_fold_words(a: Group, b: Group) -> str:
    """A folded sweep chose on fold 0's validation images, which are among the pooled test images: said."""
    folded = any(m.get("folds") for m in (a.first, b.first))
    swept = any((g.records[g.fixed_repeat].config or {}).get("sweep") for g in (a, b))
    return ("; the sweep chose on fold 0's validation images, which are among these test images, so this leans "
            "toward the chosen setting") if folded and swept else ""


def _over_repeats(a: Group, b: Group, by_seed: bool) -> dict:
    values_a, values_b = a.values("test_acc"), b.values("test_acc")
    if by_seed and [m["seed"] for m in a.metrics] == [m["seed"] for m in b.metrics]:
        return {**paired_t(values_a, values_b), "test": {"paired_t": [values_a, values_b]},
                "method": f"paired t-test over {len(values_a)} repeats with the same seeds"}
    return {**welch(values_a, values_b), "test": {"welch": [values_a, values_b]},
            "method": f"Welch's t-test over {len(values_a)} and {len(values_b)} repeats"}


def interval(test: dict, level: float) -> list[float] | None:
    if "welch" in test:
        return welch_interval(*test["welch"], level)
    if "paired_t" in test:
        return paired_t_interval(*test["paired_t"], level)
    return paired_interval(*test["mcnemar"], level)


def adjust(found: list[dict], family: str) -> list[dict]:
    """Bonferroni within the family: p adjusted, the interval at the matching level, words from both."""
    adjusted, level = bonferroni([c["p"] for c in found])
    for c, p in zip(found, adjusted):
        ci = None if p is None else interval(c["test"], level)
        c.update(family=family, p_raw=c["p"], p=p, level=level, ci=ci, family_size=len(found),
                 words=words(c["diff"], p))
    return found


def class_comparisons(a: Group, b: Group) -> list[dict]:
    """`a` against `b` on each class's test images (their fixed repeats), raw p."""
    paired = _paired(a, b) if a.first.get("classes") else None
    if paired is None:
        return []
    targets, correct_a, correct_b = paired
    found = []
    for k, name in enumerate(a.first["classes"]):
        mine = targets == k
        if mine.any():
            test = mcnemar_exact(correct_a[mine], correct_b[mine])
            found.append({"kind": CLASS_KIND, "class": name, "a": a.run_id, "b": b.run_id,
                          "dataset": a.dataset_name, "test_images": int(mine.sum()), "note": "",
                          "diff": float(correct_a[mine].mean() - correct_b[mine].mean()), "p": test["p"],
                          "method": f"McNemar's exact test on the class's {int(mine.sum())} images",
                          "test": {"mcnemar": [test["b"], test["c"], test["n"]]}})
    return found


def comparisons(groups: list[Group], compare: dict[str, list[str]]) -> list[dict]:
    """The confirmatory comparisons (in the order pairs.py states them), then the exploratory ones;
    `compare` maps each phase, in study order, to what it says it compares with."""
    confirmatory = []
    for pair in stated_pairs(groups, compare):
        result = compare_pair(pair.a, pair.b, by_seed=pair.kind == SWEEP_KIND)  # a sweep's two share seeds
        if result is not None:
            confirmatory.append({"kind": pair.kind, "a": pair.a.run_id, "b": pair.b.run_id,
                                 "dataset": pair.a.dataset_name, "test_images": pair.a.test_images,
                                 "note": pair.note, **result})
    by_id = {g.run_id: g for g in groups}
    exploratory = [x for c in confirmatory if c["kind"].startswith(PHASE_KINDS)
                   for x in class_comparisons(by_id[c["a"]], by_id[c["b"]])]
    return adjust(confirmatory, CONFIRMATORY) + adjust(exploratory, EXPLORATORY)


def phase_compare(phases: list[dict]) -> dict[str, list[str]]:
    """Each phase of a resolved study.yaml, in order, mapped to its `compare:` entries."""
    found = {}
    for phase in phases:
        targets = phase.get("compare", "previous")
        found[phase["name"]] = [targets] if isinstance(targets, str) else list(targets)
    return found
