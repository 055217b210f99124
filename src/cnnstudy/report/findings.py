"""The answer in words: a few sentences in the seed study's spirit, each carrying its numbers.

Which runs overfit (by the verdict), whether a later phase closed the gap an earlier one showed on
the same test images, how each phase compares with the previous one, whether transfer and
pretraining beat training from scratch, and which run is best on each set of test images.
"""
from __future__ import annotations

from pathlib import Path

from .compare import INIT_KINDS, Group, best_groups, gap_pairs, overfit_majority, scratch_pairs, stated
from .perclass import class_sentences
from .stats import format_p
from .sweeps import confirmation


def _acc(group: Group) -> str:
    text = group.mean_std_text("test_acc")
    return "no test score" if text is None else f"{text}%"


def _overfit_share(group: Group) -> tuple[int, int]:
    return sum(m["verdict"]["verdict"] == "overfit" for m in group.metrics), len(group.records)


def _gap(group: Group) -> str:
    return f"{group.summary('gap')['mean'] * 100:.1f} points"


def overfitting(groups: list[Group]) -> list[str]:
    """One sentence per overfit run, naming the rule that fired (the gap, or the validation loss
    rising) and, where the last epoch was not the best, that its scores come from the best one."""
    overfit = [g for g in groups if _overfit_share(g)[0]]
    if not overfit:
        return ["No run overfits by the verdict."]
    sentences = []
    for group in overfit:
        hits, total = _overfit_share(group)
        share = f", in {hits} of {total} repeats" if total > 1 else ""
        first = next(m for m in group.metrics if m["verdict"]["verdict"] == "overfit")
        rule = f": {first['verdict']['explanation']}" if first["verdict"].get("explanation") else ""
        best, last = first.get("best_epoch"), first.get("epochs")
        when = (f"; its scores are those of epoch {best}, the best by validation accuracy, before the last "
                f"(epoch {last})") if best is not None and last is not None and best < last else ""
        sentences.append(f"Overfit by the verdict: {group.run_id} (train-validation gap {_gap(group)}{share})"
                         f"{rule}{when}.")
    return sentences


def closing_the_gap(groups: list[Group], found: list[dict]) -> list[str]:
    """A later run on the same test images as an earlier overfit run: did it close the gap?"""
    sentences = []
    for group, before in gap_pairs(groups):
        done = "closed" if not overfit_majority(group) else "did not close"
        result = stated(found, group, before)
        score = f"; test accuracy {_acc(group)} vs {_acc(before)}" + (f", {describe(result)}" if result else "")
        sentences.append(f"{group.run_id} {done} the overfitting gap of {before.run_id}: gap {_gap(group)} "
                         f"vs {_gap(before)}{score}.")
    return sentences


def describe(result: dict) -> str:
    """"+2.3 points (95% CI +0.8 to +3.9): better (p = 0.004)", the words following the numbers."""
    low, high = (v * 100 for v in result["ci95"])
    p_value = "" if result["words"].startswith("no clear") else f" (p = {format_p(result['p'])})"
    return f"{result['diff'] * 100:+.1f} points (95% CI {low:+.1f} to {high:+.1f}): {result['words']}{p_value}"


def phase_steps(found: list[dict]) -> list[str]:
    return [f"{c['a']} vs {c['b']} (previous phase, {c['test_images']} {c['dataset']} test images): "
            f"{describe(c)}." for c in found if c["kind"].startswith("previous phase")]


def against_scratch(groups: list[Group], found: list[dict]) -> list[str]:
    """Per set of test images: the best pretrained and transferred runs against the best from scratch."""
    sentences = []
    for group, scratch, kind in scratch_pairs(groups):
        if scratch is None:
            sentences.append(f"{group.run_id} ({INIT_KINDS[kind]}, test accuracy {_acc(group)}) has no run trained "
                             f"from scratch on the same {Path(group.test_key[0]).name} test images to compare with.")
            continue
        result = stated(found, group, scratch)
        verdict = describe(result) if result else "not comparable"
        what = INIT_KINDS[kind][0].upper() + INIT_KINDS[kind][1:]
        sentences.append(f"{what} ({group.run_id}, {_acc(group)}) against training "
                         f"from scratch ({scratch.run_id}, {_acc(scratch)}): {verdict}.")
    return sentences


def best_runs(groups: list[Group]) -> list[str]:
    return [f"Best on the {g.first['test']['n']} {Path(key[0]).name} test images: {g.run_id}, test accuracy "
            f"{_acc(g)}." for key, g in best_groups(groups).items()]


def diverged(records: list, runs: list[tuple[dict, dict]]) -> list[str]:
    """Which runs diverged (and what their scores are), and which runs were not run because of it."""
    sentences, gone = [], set()
    for record in records:
        verdict = (record.metrics or {}).get("verdict", {})
        if verdict.get("verdict") == "diverged":
            sentences.append(f"Diverged: {record.label}: {verdict['explanation']}.")
            gone.add(record.run_id)
        elif record.problem and record.problem.startswith("training diverged"):
            sentences.append(f"Diverged: {record.label}: {record.problem}.")
            gone.add(record.run_id)
    for phase, run in runs:  # study order: a source is seen before the runs that start from it
        source, run_id = (run.get("model") or {}).get("init_from"), f"{phase['name']}/{run['name']}"
        if source in gone and not any(r.run_id == run_id and r.metrics for r in records):
            sentences.append(f"Not run: {run_id}, which starts from {source}.")
            gone.add(run_id)
    return sentences


def calibration(groups: list[Group], found: list[dict]) -> list[str]:
    """A run clearly more accurate than another on the same images, but worse calibrated: say so."""
    by_id, sentences, said = {g.run_id: g for g in groups}, [], set()
    for c in found:
        if "class" in c or (c["a"], c["b"]) in said:  # whole runs only, each pair once
            continue
        said.add((c["a"], c["b"]))
        a, b = by_id[c["a"]], by_id[c["b"]]
        ece_a, ece_b = a.summary("ece")["mean"], b.summary("ece")["mean"]
        if c["words"] == "better" and ece_a is not None and ece_b is not None and ece_a > ece_b + 0.01:
            sentences.append(f"{a.run_id} is more accurate than {b.run_id} but worse calibrated: expected "
                             f"calibration error {ece_a * 100:.1f}% against {ece_b * 100:.1f}% (its confidence "
                             "overstates or understates how often it is right; calibrate: true fits a temperature).")
    return sentences


def findings(groups: list[Group], found: list[dict]) -> list[str]:
    if not groups:
        return ["No run has finished yet."]
    return overfitting(groups) + closing_the_gap(groups, found) + phase_steps(found) + \
        class_sentences(groups, found, format_p) + confirmation(groups, found, describe) + \
        against_scratch(groups, found) + calibration(groups, found) + best_runs(groups)
