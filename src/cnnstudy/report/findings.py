"""The answer in words: one item per phase saying what it found against what it builds on, each
claim with its difference, interval and p, then the best run of each set of test images (chosen on
validation). Every number comes from the comparisons (compare.py) and the run folders; the words
follow the adjusted p, and the interval printed beside them is the one that agrees with it.
"""
from __future__ import annotations

import re

from .compare import CONFIRMATORY
from .groups import VERDICT_WORDS, Group, best_by_validation, by_test_set, overfits, verdict_share
from .pairs import BEST_KIND, GAP_KIND, INIT_WORDS, SCRATCH_KIND, SWEEP_KIND
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


def _named(group: Group, phase: str, other: Group | None = None) -> str:
    """A run as a sentence of its own phase names it; a verdict that changes how to read it, and the
    repeat it stands in with against a single run (its first, r0), added."""
    name = group.name if group.phase == phase else group.run_id
    notes = [group.verdict] if group.verdict in ("did not learn", "diverged") else []
    if other is not None and len(group.records) > 1 and len(other.records) == 1:
        notes.append(f"its repeat r{group.records[group.fixed_repeat].repeat}")
    return name + (f" ({', '.join(notes)})" if notes else "")


def state(group: Group) -> str:
    """What one run found on its own: its verdict with the numbers behind it, and its test score."""
    if group.verdict == "did not learn":
        chance = group.first["verdict"].get("chance")
        return (f"{group.name} did not learn (train accuracy {group.mean('train_eval_acc') * 100:.1f}%" +
                (f", chance {chance * 100:.1f}%" if chance is not None else "") + ")")
    train = group.mean("train_eval_acc")
    detail = f"train {train * 100:.1f}% vs validation {(train - group.mean('gap')) * 100:.1f}%, gap {_gap(group)} points" \
        if train is not None else f"gap {_gap(group)} points"
    where = f" on {group.test_images} {group.dataset_name} images{folded_words(group)}" if group.test_key \
        else " (no held-out test split)"
    return (f"{group.name} {VERDICT_WORDS.get(group.verdict, group.verdict)}{verdict_share(group)} ({detail}); "
            f"test accuracy {_acc(group)}{where}")


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
        return (f"{_named(a, phase, b)} ({INIT_WORDS[a.init_kind]}) against {_named(b, phase, a)} (from "
                f"scratch{note}): {describe(c)}")
    which = ", which overfits" if c["kind"] == GAP_KIND else ""
    return f"{_named(a, phase, b)} against {_named(b, phase, a)}{which}: {describe(c)}{gap_words(a, b)}"


def best_claims(found: list[dict], by_id: dict[str, Group], phase: str) -> list[str]:
    """A phase's best run by validation, confirmed on test against each of its other runs."""
    sentences = []
    for best_id in dict.fromkeys(c["a"] for c in found if c["kind"] == BEST_KIND):
        best = by_id[best_id]
        against = "; ".join(f"against {_named(by_id[c['b']], phase, best)}: {describe(c)}" for c in found
                            if c["kind"] == BEST_KIND and c["a"] == best_id)
        sentences.append(f"best by validation on {best.dataset_name}: {best.name} (validation "
                         f"{best.mean('val_acc') * 100:.1f}%, test {_acc(best)}), {against}")
    return sentences


def phase_item(phase: dict, members: list[Group], found: list[dict], by_id: dict[str, Group]) -> str | None:
    names = {g.run_id for g in members}
    mine = [c for c in found if c["family"] == CONFIRMATORY and c["a"] in names]
    claims = [claim(c, by_id, phase["name"]) for c in mine if c["kind"] != BEST_KIND]
    claims += best_claims(mine, by_id, phase["name"])
    told = {c["a"] for c in mine} | {c["b"] for c in mine}
    claims += [state(g) for g in members if g.run_id not in told and not g.is_base]
    if not claims:  # e.g. only a sweep's base setting has finished: nothing to say yet
        return None
    title = f": {phase['title'].rstrip('.')}" if phase.get("title") else ""
    return f"**{phase['name']}{title}.** " + ". ".join(claims) + "."  # run names keep their case


def best_runs(groups: list[Group], found: list[dict]) -> str | None:
    """The best run by validation of each set of test images that no phase item has named already
    (`compare: best`), among the runs that learned something."""
    named = {c["a"] for c in found if c["kind"] == BEST_KIND}
    sets = by_test_set([g for g in groups if not g.is_base and g.verdict not in ("did not learn", "diverged")])
    picks = []
    for members in sets.values():
        best = best_by_validation(members)
        if best is None or best.run_id in named:
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


def answer(groups: list[Group], found: list[dict], phases: list[dict], records: list,
           runs: list[tuple[dict, dict]]) -> list[str]:
    """The answer: divergence first, one item per phase, then the best run of each set of test images."""
    if not groups:
        return diverged(records, runs) + ["No run has finished yet."]
    by_id = {g.run_id: g for g in groups}
    items = [phase_item(phase, [g for g in groups if g.phase == phase["name"]], found, by_id) for phase in phases]
    return diverged(records, runs) + [item for item in items + [best_runs(groups, found)] if item]


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
