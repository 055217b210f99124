"""Which classes a change helped or hurt: per-class accuracy (recall) of the runs that share test
images, each phase step the study states split by class with McNemar's exact test on that class's
images, and the confusion pairs that grew or shrank most. The per-class tests are exploratory: a
family of their own, adjusted apart from the comparisons the study states (compare.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .compare import CLASS_KIND, EXPLORATORY
from .groups import Group
from .stats import format_p


def confusion_changes(a: Group, b: Group, shown: int = 2) -> tuple[list, list]:
    """The off-diagonal confusion pairs (true, predicted, change in images) that grew and shrank most."""
    before = np.asarray(b.metrics[b.fixed_repeat]["test"]["confusion_matrix"])
    after = np.asarray(a.metrics[a.fixed_repeat]["test"]["confusion_matrix"])
    change = after - before
    np.fill_diagonal(change, 0)
    names = a.first["classes"]
    pairs = [(names[i], names[j], int(change[i, j])) for i, j in zip(*np.nonzero(change))]
    grew = sorted((p for p in pairs if p[2] > 0), key=lambda p: -p[2])[:shown]
    shrank = sorted((p for p in pairs if p[2] < 0), key=lambda p: p[2])[:shown]
    return grew, shrank


def class_sentences(groups: list[Group], found: list[dict]) -> list[str]:
    """Per phase step split by class: the classes helped and hurt most (adjusted p), and the confusions
    that changed."""
    by_id, sentences = {g.run_id: g for g in groups}, []
    steps = dict.fromkeys((x["a"], x["b"]) for x in found if x["family"] == EXPLORATORY and x["kind"] == CLASS_KIND)
    for a, b in steps:
        classes = [x for x in found if x["kind"] == CLASS_KIND and x["a"] == a and x["b"] == b]
        ranked = sorted(classes, key=lambda x: -x["diff"])
        helped = [x for x in ranked if x["diff"] > 0][:2]
        hurt = [x for x in reversed(ranked) if x["diff"] < 0][:2]
        words = lambda xs: ", ".join(f"{x['class']} {x['diff'] * 100:+.0f} points (p = {format_p(x['p'])})"
                                     for x in xs) or "none"
        grew, shrank = confusion_changes(by_id[a], by_id[b])
        pairs = lambda ps: ", ".join(f"{t} taken for {p} {n:+d}" for t, p, n in ps) or "none"
        sentences.append(f"{a} vs {b} by class: helped most {words(helped)}; hurt most {words(hurt)}; "
                         f"confusions that grew most: {pairs(grew)}; shrank most: {pairs(shrank)}.")
    return sentences


def class_table(groups: list[Group]) -> list[tuple[str, list[dict], list[str]]]:
    """Per set of test images: (title, rows of per-class recall in %, columns)."""
    tables = []
    for key in dict.fromkeys(g.test_key for g in groups if g.test_key is not None):
        members = [g for g in groups if g.test_key == key]
        if len(members) < 2:
            continue
        columns = ["class"] + [g.run_id for g in members]
        rows = [{"class": name, **{g.run_id: f"{g.metrics[g.fixed_repeat]['test']['per_class'][name]['recall'] * 100:.1f}"
                                   for g in members}} for name in members[0].first["classes"]]
        tables.append((f"Per-class accuracy (recall, %) on the {members[0].first['test']['n']} "
                       f"{Path(key[0]).name} test images (a repeated run's first repeat, as tested by class)",
                       rows, columns))
    return tables
