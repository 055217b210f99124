"""What would settle each "no clear difference": the smallest difference its test could have detected
(power.py), and the lever this study has to narrow it, computed from the study's own runs: k-fold
cross-validation where the test split holds a part of the images, more repeats where the repeats'
spread is what the test weighs. A lever is offered only with the number that supports it."""
from __future__ import annotations

from .compare import CONFIRMATORY
from .findings import points
from .groups import Group
from .pairs import SWEEP_KIND
from .power import detectable
from .sweeps import sweep_setting_words
from ..runner.search.sweep import BASE_SUFFIX

FOLDS = 5
MORE_REPEATS = 10


def unsettled(found: list[dict]) -> list[dict]:
    return [c for c in found if c["family"] == CONFIRMATORY and c["words"].startswith("no clear")]


def points_text(value: float) -> str:
    return f"{value * 100:.1f} points"


def detectable_words(c: dict) -> str:
    """"detectable from 11.6 points (80% power at the family's 99.4% level)", or why nothing is."""
    found = detectable(c["test"], c["level"])
    if found is not None:
        return f"detectable from {points_text(found)} (80% power at the family's {c['level'] * 100:.3g}% level)"
    if "mcnemar" in c["test"] and sum(c["test"]["mcnemar"][:2]) == 0:
        return "the two runs are right on the same images, so no difference can show"
    return "nothing is detectable: even a run right on every image the two split would not be called better 80% of the time"


def split_images(group: Group) -> int:
    """The images of a run's split, every part together (0 where its metrics do not say)."""
    return sum((group.first["split"].get("sizes") or {}).values())


def held_out(c: dict, a: Group, b: Group) -> bool:
    """Tested by McNemar on a part carved from the split's images, which k-fold cross-validation would
    test whole (a dataset's own test/ folder cannot be folded: data/splits.py refuses it)."""
    carved = all(str(g.first["split"].get("origin", {}).get("test", "")).startswith("carved from") for g in (a, b))
    return "mcnemar" in c["test"] and carved and not (a.first.get("folds") or b.first.get("folds")) and \
        split_images(a) > c["test_images"]


def run_keys(groups: list[Group], key: str, value) -> str:
    """`--set <phase>/<run>:key=value` for each run (a sweep's base setting is set through its run)."""
    runs = dict.fromkeys(g.run_id.removesuffix(BASE_SUFFIX) for g in groups)
    return " ".join(f"--set {run}:{key}={value}" for run in runs)


def repeat_keys(groups: list[Group], repeats: int) -> str:
    """The setting that gives each run `repeats` repeats: `sweep.confirm` for a swept run (and its base
    setting, which the sweep repeats as often), `repeats` for any other."""
    swept = [g for g in groups if g.is_base or (g.records[0].config or {}).get("sweep")]
    plain = [g for g in groups if g not in swept]
    return " ".join(keys for keys in (run_keys(swept, "sweep.confirm", repeats), run_keys(plain, "repeats", repeats))
                    if keys)


def lever(c: dict, a: Group, b: Group, alike: list[Group] | None = None) -> str:
    """The change to the study that would narrow this comparison's interval, with its projected effect;
    `alike`: every run on the same test images (k-fold must fold them all, or they no longer share any)."""
    test, level = c["test"], c["level"]
    lost = [g for g in (a, b) if g.verdict in ("did not learn", "diverged")]
    if lost:
        said = " and ".join(f"{g.run_id} {g.verdict}" for g in lost)
        return f"{said}: its training comes first; more test images would not make this a fair comparison"
    if "mcnemar" in test:
        n, total = test["mcnemar"][2], split_images(a)
        projected = detectable(test, level, images=total) if held_out(c, a, b) else None
        if projected is None:  # no lever this study has: said, with nothing to run
            return f"Only more test images than these {n} could narrow it"
        keys = run_keys(alike or [b, a], "data.split.folds", FOLDS)
        return (f"{FOLDS}-fold cross-validation would test all {total} images instead of {n}, detectable from about "
                f"{points_text(projected)}: `{keys}`")
    repeats = max(MORE_REPEATS, 2 * max(len(a.records), len(b.records)))
    projected = detectable(test, level, repeats=repeats)
    if projected is None:
        return "More repeats would not narrow it: the repeats do not vary"
    return (f"{repeats} repeats each would average out more of the seeds' spread, detectable from about "
            f"{points_text(projected)}: `{repeat_keys([b, a], repeats)}`")


def settle_items(found: list[dict], by_id: dict[str, Group]) -> list[str]:
    """One sentence per "no clear difference" of the stated comparisons."""
    items = []
    for c in unsettled(found):
        a, b = by_id[c["a"]], by_id[c["b"]]
        sample = f"{points(c['diff'])} points on {c['test_images']} {c['dataset']} test images" + \
            (f", {sum(c['test']['mcnemar'][:2])} right for only one of the two" if "mcnemar" in c["test"] else
             f", {len(a.records)} and {len(b.records)} repeats")
        change = lever(c, a, b, [g for g in by_id.values() if g.test_key == a.test_key])
        named = sweep_setting_words(a, b, c, "") if c["kind"] == SWEEP_KIND else f"{c['a']} vs {c['b']}"
        items.append(f"**{named}** ({sample}): {detectable_words(c)}. {change}.")
    return items


def detectable_range(found: list[dict]) -> tuple[float, float] | None:
    """The smallest and largest detectable difference of the unsettled comparisons (None if none has one)."""
    values = [v for v in (detectable(c["test"], c["level"]) for c in unsettled(found)) if v is not None]
    return (min(values), max(values)) if values else None
