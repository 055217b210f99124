"""Which runs the report compares: the questions the study asks, as pairs of runs scored on the same
test images. The first pair found for two runs is the one stated; every unordered pair once.

The confirmatory family, in this order:
- a swept run's confirmed best setting against its base setting (`<run>.base`);
- each run against what its phase says it builds on (`compare:` in the study file: `previous`, the
  default, is the nearest earlier phase with runs on the same test images; or a phase, or a run);
- a later run against the first earlier run of another phase that overfits ("closing the gap");
- transferred and pretrained runs against training from scratch, of the same architecture where the
  study has one (otherwise the best run of each kind by validation, the confound named);
- for a phase with `compare: best`, its best run by validation against each of its other runs.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..runner.search.sweep import base_name
from .groups import Group, best_by_validation, by_test_set, overfits

SWEEP_KIND = "sweep: best vs base setting"
GAP_KIND = "closing the gap"
SCRATCH_KIND = "against scratch"
BEST_KIND = "best by validation"
INIT_WORDS = {"ImageNet": "ImageNet pretraining", "transfer": "transfer"}


@dataclass
class Pair:
    kind: str
    a: Group  # the later run, or the one whose effect is asked about
    b: Group
    note: str = ""  # what else differs between the two, said with the result


PHASE_KINDS = ("previous phase", "against phase ", "against run ")  # what a phase says it builds on


def phase_kind(target: str) -> str:
    if target == "previous":
        return PHASE_KINDS[0]
    return f"against run {target}" if "/" in target else f"against phase {target}"


def sweep_pairs(groups: list[Group]) -> list[Pair]:
    by_id = {g.run_id: g for g in groups}
    return [Pair(SWEEP_KIND, g, by_id[base_name(g.run_id)]) for g in groups if base_name(g.run_id) in by_id]


def _targets(group: Group, target: str, phases: list[str], groups: list[Group]) -> list[Group]:
    """The runs `group` is compared with for one `compare:` entry of its phase."""
    here = phases.index(group.phase)
    same = [g for g in groups if g.test_key is not None and g.test_key == group.test_key and not g.is_base]
    if target == "previous":
        earlier = [phases.index(g.phase) for g in same if phases.index(g.phase) < here]
        return [g for g in same if earlier and phases.index(g.phase) == max(earlier)]
    if "/" in target:
        return [g for g in same if g.run_id == target]
    return [g for g in same if g.phase == target]


def phase_pairs(groups: list[Group], compare: dict[str, list[str]]) -> list[Pair]:
    phases = list(compare)
    pairs = []
    for group in (g for g in groups if not g.is_base):  # a base setting is its sweep's control only
        for target in compare.get(group.phase, []):
            if target not in ("best", "none"):
                pairs += [Pair(phase_kind(target), group, other) for other in _targets(group, target, phases, groups)]
    return pairs


def gap_pairs(groups: list[Group]) -> list[Pair]:
    """(later run, the first earlier overfit run of another phase on the same test images)."""
    pairs = []
    for i, group in enumerate(groups):
        if group.is_base:
            continue
        earlier = [g for g in groups[:i] if g.phase != group.phase and g.test_key is not None
                   and g.test_key == group.test_key and not g.is_base and overfits(g)]
        pairs += [Pair(GAP_KIND, group, earlier[0])] if earlier else []
    return pairs


def scratch_pairs(groups: list[Group]) -> list[Pair]:
    """Per set of test images: each transferred or pretrained run against the run of its own
    architecture from scratch; where a kind has none, its best run (by validation) against the best
    run from scratch, with the architectures named."""
    pairs = []
    for members in by_test_set([g for g in groups if not g.is_base]).values():
        scratch = [g for g in members if g.init_kind == "scratch"]
        for kind in INIT_WORDS:
            started = [g for g in members if g.init_kind == kind]
            matched = [(g, next((s for s in scratch if s.first["model"] == g.first["model"]), None)) for g in started]
            pairs += [Pair(SCRATCH_KIND, g, s) for g, s in matched if s is not None]
            best, best_scratch = best_by_validation(started), best_by_validation(scratch)
            if best is not None and best_scratch is not None and all(s is None for _, s in matched):
                note = (f"{best.first['model']} vs {best_scratch.first['model']}: another architecture, not "
                        f"{INIT_WORDS[kind]} alone")
                pairs.append(Pair(SCRATCH_KIND, best, best_scratch, note))
    return pairs


def best_pairs(groups: list[Group], compare: dict[str, list[str]]) -> list[Pair]:
    """For each phase with `compare: best`: per set of test images, its best run by validation against
    each of its other runs there."""
    pairs = []
    for phase, targets in compare.items():
        if "best" not in targets:
            continue
        mine = [g for g in groups if g.phase == phase and not g.is_base]
        for members in by_test_set(mine).values():
            best = best_by_validation(members)
            pairs += [Pair(BEST_KIND, best, other) for other in members if other is not best]
    return pairs


def stated_pairs(groups: list[Group], compare: dict[str, list[str]]) -> list[Pair]:
    """The confirmatory pairs in order, every unordered pair of runs once (the first kind that asks).
    A phase with `compare: none` asks nothing (its sweeps still confirm themselves against their base)."""
    silent = {phase for phase, targets in compare.items() if targets == ["none"]}
    asked = [g for g in groups if g.phase not in silent]
    found, seen = [], set()
    for pair in (sweep_pairs(groups) + phase_pairs(asked, compare) + gap_pairs(asked) + scratch_pairs(asked)
                 + best_pairs(asked, compare)):
        key = frozenset((pair.a.run_id, pair.b.run_id))
        if key not in seen and pair.a.test_key is not None and pair.a.test_key == pair.b.test_key:
            seen.add(key)
            found.append(pair)
    return found
