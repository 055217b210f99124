"""The report's first screen in words: a plain takeaway (what the study found and the next step), then
one item per phase naming the one comparison that phase asks about, with its verdict and the numbers
of the table; the phase's other comparisons are counted and drawn in the forest plot below.

Every claim comes from the comparisons (compare.py), the verdicts in the run folders and the
detectable differences (settle.py); the takeaway's advice is given only where a number backs it.
"""
from __future__ import annotations

from collections import Counter

from .compare import CONFIRMATORY
from .findings import best_runs, claim, describe, diverged, named_in, rule_words, state
from .groups import Group
from .pairs import BEST_KIND, GAP_KIND, PHASE_KINDS, SCRATCH_KIND, SWEEP_KIND
from .sweeps import sweep_setting_words
from .settle import FOLDS, detectable_range, held_out, split_images, unsettled

# The comparison a phase asks about, by kind: what it says it builds on first, its sweep last.
ASKED = (*PHASE_KINDS, BEST_KIND, GAP_KIND, SCRATCH_KIND, SWEEP_KIND)
CLEAR = ("better", "worse")


def short_words(words: str) -> str:
    return "no clear difference" if words.startswith("no clear") else \
        "cannot be tested" if words.startswith("cannot") else words


def asked_first(mine: list[dict]) -> dict:
    return min(mine, key=lambda c: next(i for i, kind in enumerate(ASKED) if c["kind"].startswith(kind)))


def best_claim(c: dict, by_id: dict[str, Group], phase: str) -> str:
    """"cnn_last_conv, the best by validation on hymenoptera (68.4%), against cnn_head: ..."."""
    best, other = by_id[c["a"]], by_id[c["b"]]
    return (f"{best.name}, the best by validation on {best.dataset_name} ({best.mean('val_acc') * 100:.1f}%), "
            f"against {named_in(other, phase, best)}: {describe(c)}")


def others_words(others: list[dict]) -> str:
    counts = Counter(short_words(c["words"]) for c in others)
    if len(others) == 1:
        return f"Its other comparison ({others[0]['words'].split(' (')[0]}) is in the plot below"
    listed = ", ".join(f"{n} {words}" for words, n in counts.items())
    return f"Its other {len(others)} comparisons ({listed}) are in the plot below"


def phase_item(phase: dict, members: list[Group], found: list[dict],
               by_id: dict[str, Group]) -> tuple[str | None, set[str]]:
    """The phase's sentence(s), and the runs they name."""
    names = {g.run_id for g in members}
    mine = [c for c in found if c["family"] == CONFIRMATORY and c["a"] in names]
    if mine:
        first = asked_first(mine)
        said = best_claim(first, by_id, phase["name"]) if first["kind"] == BEST_KIND else \
            claim(first, by_id, phase["name"])
        others = [c for c in mine if c is not first]
        sentences, named = [said] + ([others_words(others)] if others else []), {first["a"], first["b"]}
    else:
        runs = [g for g in members if not g.is_base]
        sentences = [state(g) for g in runs[:2]] + \
            ([f"{len(runs) - 2} more run(s) in the table below"] if len(runs) > 2 else [])
        named = {g.run_id for g in runs[:2]}
    if not sentences:
        return None, set()
    title = f": {phase['title'].rstrip('.')}" if phase.get("title") else ""
    return f"**{phase['name']}{title}.** " + ". ".join(sentences) + ".", named  # run names keep their case


def unlearned(groups: list[Group], named: set[str]) -> list[str]:
    """One sentence naming the runs that did not learn and no phase item named."""
    runs = [g for g in groups if g.verdict == "did not learn" and g.run_id not in named]
    if not runs:
        return []
    return ["Did not learn: " + "; ".join(f"{g.run_id} ({rule_words(g.first['verdict'])})" for g in runs) + "."]


def clear_words(c: dict, by_id: dict[str, Group]) -> str:
    a, b = by_id[c["a"]], by_id[c["b"]]
    verb = "beats" if c["words"] == "better" else "trails"
    if c["kind"] == SWEEP_KIND:  # what the sweep chose, against the setting it started from
        return (f"{sweep_setting_words(a, b, c, '')}: the chosen setting {verb} the base by {abs(c['diff']) * 100:.1f} "
                f"points on {c['test_images']} {c['dataset']} test images")
    return f"{a.run_id} {verb} {b.run_id} by {abs(c['diff']) * 100:.1f} points on {c['test_images']} {c['dataset']} test images"


def takeaway(groups: list[Group], found: list[dict]) -> str | None:
    """Two to four plain sentences: what is clear, what is not and why, and the next step."""
    stated = [c for c in found if c["family"] == CONFIRMATORY]
    if not stated:
        return None
    clear, open_ = [c for c in stated if c["words"] in CLEAR], unsettled(found)
    by_id = {g.run_id: g for g in groups}
    if clear:
        head = "The one stated comparison is" if len(stated) == 1 else \
            f"{len(clear)} of the {len(stated)} stated comparisons {'is' if len(clear) == 1 else 'are'}"
        said = [f"{head} clear: " + "; ".join(clear_words(c, by_id) for c in clear[:2])
                + (f"; and {len(clear) - 2} more" if len(clear) > 2 else "")]
    else:
        said = [f"The one stated comparison {'cannot be tested' if stated[0]['p'] is None else 'shows no clear difference'}"
                if len(stated) == 1 else
                f"None of the {len(stated)} stated comparisons shows a clear difference"]
    span = detectable_range(found)
    if open_ and span:
        smallest = f"{span[0] * 100:.0f}" if round(span[0] * 100) == round(span[1] * 100) else \
            f"{span[0] * 100:.0f} to {span[1] * 100:.0f}"
        images = span_words(sorted({c["test_images"] for c in open_}))
        rest = "The other" if len(clear) + len(open_) == len(stated) else "Of the rest,"
        said.append((f"{rest} {len(open_)} {'is' if len(open_) == 1 else 'are'} too close to call on {images} test "
                     "images" if clear else f"On {images} test images")
                    + f": only differences of about {smallest} points would show 80% of the time")
        said += next_step(open_, by_id)
    said += training_advice(groups)
    return " ".join(sentence + "." for sentence in said)


def span_words(values: list[int]) -> str:
    return f"{values[0]}" if len(values) == 1 else f"{values[0]} to {values[-1]}"


def next_step(open_: list[dict], by_id: dict[str, Group]) -> list[str]:
    """The lever most open comparisons share (settle.py gives each one's command and effect)."""
    testable = [c for c in open_ if held_out(c, by_id[c["a"]], by_id[c["b"]]) and sum(c["test"]["mcnemar"][:2])]
    repeated = [c for c in open_ if "mcnemar" not in c["test"]]
    if len(testable) >= len(repeated) and testable:
        totals = sorted({split_images(by_id[c["a"]]) for c in testable})
        return [f"Next step: {FOLDS}-fold cross-validation would test all {span_words(totals)} images instead of a "
                "held-out part (each command under What would settle it)"]
    return ["Next step: more repeats would average out the seeds' spread (each command under What would settle it)"] \
        if repeated else []


def training_advice(groups: list[Group]) -> list[str]:
    """"Train longer" where runs underfit: their verdicts say so (not of a run early stopping ended:
    more epochs were there to take)."""
    runs = groups  # every row of the table, a sweep's base setting too
    under = [g for g in runs if g.verdict == "underfit"
             and (g.first.get("stopped") or {}).get("reason") != "early_stopping"]
    if not under:
        return []
    epochs = max(g.first["epochs"] for g in under)
    return [f"{len(under)} of the {len(runs)} runs underfit (their training accuracy stayed under the verdict's "
            f"limit): train {'it' if len(under) == 1 else 'them'} longer, e.g. `--set train.epochs={2 * epochs}`"]


def answer(groups: list[Group], found: list[dict], phases: list[dict], records: list,
           runs: list[tuple[dict, dict]]) -> tuple[str | None, list[str]]:
    """(the takeaway, the items): divergence first, one item per phase, the runs that did not learn and
    the best run of each shared set of test images, where no phase item named them."""
    if not groups:
        return None, diverged(records, runs) + ["No run has finished yet."]
    by_id = {g.run_id: g for g in groups}
    items, named = [], set()
    for phase in phases:
        item, mentioned = phase_item(phase, [g for g in groups if g.phase == phase["name"]], found, by_id)
        items += [item] if item else []
        named |= mentioned
    best = best_runs(groups, named)
    return takeaway(groups, found), diverged(records, runs) + items + unlearned(groups, named) + ([best] if best else [])
