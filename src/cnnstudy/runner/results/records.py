"""Reading a study folder back: the runs it holds, in study order, each repeat with its own config
and metrics. A run's numbers are used only when its metrics.json carries the digest of the
fingerprint.json beside it, i.e. they were computed from the config, split and inputs that folder
records. Everything downstream (summary, comparisons, report) reads runs through here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from ...fileio import read_json, read_jsonl
from ..planning.fingerprint import fingerprint_digest, read_fingerprint
from ..planning.repeats import repeat_folders, run_label


@dataclass
class RunRecord:
    run_id: str  # <phase>/<run>
    repeat: int | None  # None: a run without repeats
    run_dir: Path
    config: dict | None  # the repeat's own resolved config, from its fingerprint.json
    metrics: dict | None
    problem: str | None  # why no numbers can be shown; None when they can

    @property
    def label(self) -> str:
        return run_label(self.run_id, self.repeat)


def study_roles(study_dir: Path) -> dict[str, dict]:
    """The dataset roles of the resolved study.yaml ({role: {dataset, classes, replaced}}), if any."""
    return yaml.safe_load((study_dir / "study.yaml").read_text(encoding="utf-8")).get("datasets") or {}


def study_phases(study_dir: Path) -> list[dict]:
    """The phases of the resolved study.yaml, in order: name, title, description, compare, runs."""
    return yaml.safe_load((study_dir / "study.yaml").read_text(encoding="utf-8"))["phases"]


def study_runs(study_dir: Path) -> list[tuple[dict, dict]]:
    """(phase, run) pairs in study order, from the resolved study.yaml (order, titles, repeats only)."""
    return [(phase, run) for phase in study_phases(study_dir) for run in phase["runs"]]


def read_run(run_dir: Path, run_id: str, repeat: int | None = None) -> RunRecord:
    fingerprint = read_fingerprint(run_dir)
    config = fingerprint["config"] if fingerprint else None
    if not (run_dir / "metrics.json").exists():
        return RunRecord(run_id, repeat, run_dir, config, None, "not finished yet")
    metrics = read_json(run_dir / "metrics.json")
    if fingerprint is None or metrics.get("fingerprint") != fingerprint_digest(fingerprint):
        return RunRecord(run_id, repeat, run_dir, config, None,
                         "its metrics.json does not match the config, split and inputs recorded beside it "
                         f"(fingerprint.json); re-run it with --force {run_id} ({run_label(run_id, repeat)})")
    changed = changed_folds(run_dir, fingerprint)
    if changed:
        return RunRecord(run_id, repeat, run_dir, config, None,
                         f"its folds {', '.join(changed)} changed since they were pooled; re-run the study to pool "
                         "them again")
    if metrics.get("scored_on") is None:  # diverged before its first checkpoint
        return RunRecord(run_id, repeat, run_dir, config, None, metrics["verdict"]["explanation"])
    return RunRecord(run_id, repeat, run_dir, config, rejudged(metrics, run_dir, config), None)


def changed_folds(run_dir: Path, fingerprint: dict) -> list[str]:
    """The folds of a pooled k-fold folder whose own fingerprint is no longer the one that was pooled."""
    return [f"f{j}" for j, digest in enumerate(fingerprint.get("folds", []))
            if fingerprint_digest(read_fingerprint(run_dir / f"f{j}") or {}) != digest]


def rejudged(metrics: dict, run_dir: Path, config: dict) -> dict:
    """The run's metrics, its verdict judged again where an older cnnstudy judged otherwise than this one:
    from the run's own history, config and split (all in its folder); its metrics.json is left as written.
    A verdict without "chance" (a run made before 0.4, which could read "overfit" at chance) is checked for
    "did not learn"; an early-stopped or EMA run's verdict without "epoch" (made before 0.6, at its last
    epoch) is judged at the epoch the run is scored on (a pooled k-fold run: its folds)."""
    verdict, train = metrics["verdict"], (config or {}).get("train", {})
    last_epoch = "epoch" not in verdict and (train.get("early_stopping") or train.get("ema")) is not None
    if verdict["verdict"] == "diverged" or not ("chance" not in verdict or last_epoch):
        return metrics
    if not (run_dir / "split.json").exists():
        return _pooled_again(metrics, run_dir, config) if last_epoch and "folds" in metrics else metrics
    from ...data.splits import Split
    from ...training.metrics import chance_level, judged_at

    split = Split.load(run_dir / "split.json")
    chance = chance_level([label for _, label in split.train], len(split.classes))
    thresholds = {key: value for key, value in (config or {}).get("verdict", {}).items()}
    history = read_jsonl(run_dir / "history.jsonl")
    epoch = metrics.get("best_epoch") if last_epoch else verdict.get("epoch")
    again = judged_at(history, epoch or len(history), **thresholds, chance=chance)
    if last_epoch or again["verdict"] == "did not learn":
        return {**metrics, "verdict": again}
    return {**metrics, "verdict": {**verdict, "chance": chance}}


def _pooled_again(metrics: dict, run_dir: Path, config: dict) -> dict:
    """A pooled k-fold run's verdict pooled again from its folds, each judged again."""
    from .folds import pooled_verdict

    folds = sorted((f for f in run_dir.glob("f[0-9]*") if (f / "metrics.json").exists()), key=lambda f: int(f.name[1:]))
    if not folds:
        return metrics
    return {**metrics, "verdict": pooled_verdict([rejudged(read_json(f / "metrics.json"), f, config) for f in folds])}


def run_records(study_dir: Path, phase: dict, run: dict) -> list[RunRecord]:
    """One record per repeat (`<run>/r<k>`), or one for a run without repeats."""
    run_id, group = f"{phase['name']}/{run['name']}", study_dir / phase["name"] / run["name"]
    return [read_run(folder, run_id, k) for k, folder in repeat_folders(group, run.get("repeats", 1))]


def collect_records(study_dir: Path) -> list[RunRecord]:
    return [record for phase, run in study_runs(study_dir) for record in run_records(study_dir, phase, run)]
