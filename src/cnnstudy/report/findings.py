"""The sentences the answer is made of (answer.py puts them together): a comparison with its
difference, interval and p, a run's verdict with the rule that fired, the best run of each set of test
images (chosen on validation). Every number comes from the comparisons (compare.py) and the run folders; the words
follow the adjusted p, and the interval printed beside them is the one that agrees with it.
"""
from __future__ import annotations

import re

from .compare import CONFIRMATORY
from .groups import VERDICT_WORDS, Group, best_by_validation, by_test_set, overfits, verdict_share
from .pairs import GAP_KIND, INIT_WORDS, SCRATCH_KIND, SWEEP_KIND
from .stats import format_p
from .sweeps import sweep_setting_words


def points(value: float) -> str:
    """A difference in points, signed; a small non-zero one with two significant digits, so that an
    interval's end above zero never reads "+0.0" (or "+0.00") beside "better"."""
    shown = value * 100
    return f"{shown:+.2g}" if shown != 0 and abs(shown) < 0.05 else f"{shown:+.1f}"


def describe(c: dict) -> str:
    """"+2.3 points (99.2% CI +0.8 to +3.9): better (p = 0.004)", the words following the numbers."""
    if c["p"] is None:
        return f"{points(c['diff'])} points: {c['words']}"
    low, high = c["ci"]
    p_value = "" if c["words"].startswith("no clear") else f" (p = {format_p(c['p'])})"
    return (f"{points(c['diff'])} points ({c['level'] * 100:.3g}% CI {points(low)} to {points(high)}): "
            f"{c['words']}{p_value}")


def _acc(group: Group) -> str:
    text = group.mean_std_text("test_acc")
    return "no test score" if text is None else f"{text}%"


def _gap(group: Group) -> str:
    return f"{group.mean('gap') * 100:.1f}"


def named_in(group: Group, phase: str, other: Group | None = None) -> str:
    """A run as a sentence of its own phase names it; a verdict that changes how to read it, and the
    repeat it stands in with against a single run (its first, r0), added."""
    name = group.name if group.phase == phase else group.run_id
    notes = [group.verdict] if group.verdict in ("did not learn", "diverged") else []
    if other is not None and len(group.records) > 1 and len(other.records) == 1:
        notes.append(f"its repeat r{group.records[group.fixed_repeat].repeat}")
    return name + (f" ({', '.join(notes)})" if notes else "")


RULES = [  # (pattern in a verdict's explanation, its short form): the rule that fired, with its numbers
    (re.compile(r"train accuracy ([\d.]+%) \(.*?\) vs validation ([\d.]+%): gap (-?[\d.]+) points \(limit (\d+)\)"),
     r"train-validation gap \3 points, limit \4"),
    (re.compile(r"validation loss (-?[\d.]+) against its minimum (-?[\d.]+) at epoch (\d+) \(\+(\d+)%.*"),
     r"validation loss \1 against its minimum \2 at epoch \3 (+\4%)"),
    (re.compile(r"train accuracy ([\d.]+%) \(.*?\) is below (\d+%).*"), r"train accuracy \1, below \2"),
    (re.compile(r"train accuracy ([\d.]+%) \(.*?\) is near chance \(([\d.]+%).*"),
     r"train accuracy \1, near chance (\2)"),
]


def top_level(text: str) -> list[str]:
    """`text` split at the "; " outside parentheses (an explanation's reasons)."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and text.startswith("; ", i):
            parts.append(text[start:i])
            start = i + 2
    return parts + [text[start:]]


def rule_words(verdict: dict) -> str:
    """The rule that fired, short, with the numbers of the verdict's own explanation (a pooled k-fold
    verdict's example fold, a scored epoch that is not the last said)."""
    explanation = verdict.get("explanation") or ""
    head, _, explanation = explanation.rpartition("'s numbers: ")
    fold = f"{top_level(head)[-1]}: " if head else ""
    epoch = re.search(r" \(at epoch (\d+), the scored one\)$", explanation)
    explanation = explanation[:epoch.start()] if epoch else explanation
    parts = []
    for part in top_level(explanation):
        pattern, short = next(((p, s) for p, s in RULES if p.fullmatch(part)), (None, None))
        parts.append(pattern.sub(short, part) if pattern else part)
    return fold + "; ".join(parts) + (f" (at epoch {epoch.group(1)}, the scored one)" if epoch else "")


def state(group: Group) -> str:
    """What one run found on its own: its verdict with the rule that fired (of its first repeat with
    that verdict), and its test score as the table shows it."""
    index = next(k for k, m in enumerate(group.metrics) if m["verdict"]["verdict"] == group.verdict)
    which = f"r{group.records[index].repeat}: " if len(group.records) > 1 else ""
    where = f" on {group.test_images} {group.dataset_name} images{folded_words(group)}" if group.test_key \
        else " (no held-out test split)"
    return (f"{group.name} {VERDICT_WORDS.get(group.verdict, group.verdict)}{verdict_share(group)} "
            f"({which}{rule_words(group.metrics[index]['verdict'])}); test accuracy {_acc(group)}{where}")


def gap_words(a: Group, b: Group) -> str:
    """Did `a` close the overfitting gap of `b`?"""
    if not overfits(b):
        return ""
    if overfits(a):
        return f"; it still overfits (gap {_gap(a)} vs {_gap(b)} points)"
    now = "" if a.verdict == "fits well" else f", but it {VERDICT_WORDS.get(a.verdict, a.verdict)}"
    return f"; the overfitting is gone (gap {_gap(a)} vs {_gap(b)} points){now}"


def claim(c: dict, by_id: dict[str, Group], phase: str) -> str:
    """One stated comparison as a sentence of its phase's item."""
    a, b = by_id[c["a"]], by_id[c["b"]]
    if c["kind"] == SWEEP_KIND:
        return sweep_setting_words(a, b, c, phase) + f": {describe(c)}"
    if c["kind"] == SCRATCH_KIND:
        note = f"; {c['note']}" if c["note"] else f", the same {a.first['model']}"
        return (f"{named_in(a, phase, b)} ({INIT_WORDS[a.init_kind]}) against {named_in(b, phase, a)} (from "
                f"scratch{note}): {describe(c)}")
    which = ", which overfits" if c["kind"] == GAP_KIND else ""
    return f"{named_in(a, phase, b)} against {named_in(b, phase, a)}{which}: {describe(c)}{gap_words(a, b)}"


def best_runs(groups: list[Group], named: set[str]) -> str | None:
    """The best run by validation of each set of test images shared by two or more runs that learned
    something, unless a phase item has named it already (`named`)."""
    sets = by_test_set([g for g in groups if not g.is_base and g.verdict not in ("did not learn", "diverged")])
    picks = []
    for members in sets.values():
        best = best_by_validation(members)
        if best is None or best.run_id in named or len(members) < 2:
            continue
        picks.append(f"{best.run_id} on the {best.test_images} {best.dataset_name} test images{folded_words(best, ' of')} (validation "
                     f"{best.mean('val_acc') * 100:.1f}%, test {_acc(best)})")
    return "Best by validation accuracy: " + "; ".join(picks) + "." if picks else None


def diverged(records: list, runs: list[tuple[dict, dict]]) -> list[str]:
    """One sentence: which runs diverged, and which were not run because they start from one."""
    gone, words = set(), []
    for record in records:
        verdict = (record.metrics or {}).get("verdict", {})
        if verdict.get("verdict") == "diverged" or (record.problem or "").startswith("training diverged"):
            found = re.search(r"diverged at epoch (\d+)", verdict.get("explanation") or record.problem or "")
            epoch = found.group(1) if found else None
            words.append(f"{record.label}" + (f" (epoch {epoch})" if epoch else ""))
            gone.add(record.run_id)
    skipped = []
    for phase, run in runs:  # study order: a source is seen before the runs that start from it
        source, run_id = (run.get("model") or {}).get("init_from"), f"{phase['name']}/{run['name']}"
        if source in gone and not any(r.run_id == run_id and r.metrics for r in records):
            skipped.append(f"{run_id} (it starts from {source})")
            gone.add(run_id)
    if not words:
        return []
    not_run = f"; not run: {', '.join(skipped)}" if skipped else ""
    return [f"Diverged: {', '.join(words)}{not_run}. A diverged run is scored from its last good checkpoint, "
            "where it has one (its section says which)."]


def calibration_notes(groups: list[Group], found: list[dict]) -> list[str]:
    """A run clearly more accurate than another on the same images, but worse calibrated: say so."""
    by_id, sentences = {g.run_id: g for g in groups}, []
    for c in (c for c in found if c["family"] == CONFIRMATORY and c["words"] in ("better", "worse")):
        better, worse = (by_id[c["a"]], by_id[c["b"]]) if c["words"] == "better" else (by_id[c["b"]], by_id[c["a"]])
        ece_better, ece_worse = better.mean("ece"), worse.mean("ece")
        if ece_better is not None and ece_worse is not None and ece_better > ece_worse + 0.01:
            sentences.append(f"{better.run_id} is more accurate than {worse.run_id} but worse calibrated: expected "
                             f"calibration error {ece_better * 100:.1f}% against {ece_worse * 100:.1f}% (its confidence "
                             "overstates or understates how often it is right; calibrate: true fits a temperature).")
    return sentences


def folded_words(group: Group, joined: str = "") -> str:
    """" (5-fold cross-validation: every image tested once)" for a k-fold run (with `joined`, e.g. " of",
    " of 5-fold cross-validation"), else nothing."""
    folds = group.first.get("folds")
    if not folds:
        return ""
    return f"{joined} {folds['k']}-fold cross-validation" if joined else \
        f" ({folds['k']}-fold cross-validation: every image tested once)"
