"""summary.csv and summary.md: one row per finished run, read from the run folders alone.

A run's numbers are shown only when its metrics.json carries the digest of the fingerprint.json
beside it, i.e. they were computed from the config, split and inputs that folder records.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import yaml

from .fileio import atomic_write_text, read_json
from .fingerprint import fingerprint_digest, read_fingerprint

COLUMNS = ["phase", "run", "model", "init", "dataset", "params", "trainable", "epochs", "best_epoch",
           "train_acc", "val_acc", "test_acc", "precision", "recall", "f1", "auc", "scored_on", "gap",
           "verdict", "sec_per_epoch"]
NOT_HELD_OUT = "val (not held out)"


@dataclass
class RunRecord:
    run_id: str
    run_dir: Path
    config: dict | None  # the run's own resolved config, from its fingerprint.json
    metrics: dict | None
    problem: str | None  # why no numbers can be shown; None when they can


def study_runs(study_dir: Path) -> list[tuple[dict, dict]]:
    """(phase, run) pairs in study order, from the resolved study.yaml (order and titles only)."""
    study = yaml.safe_load((study_dir / "study.yaml").read_text(encoding="utf-8"))
    return [(phase, run) for phase in study["phases"] for run in phase["runs"]]


def read_run(study_dir: Path, phase: str, name: str) -> RunRecord:
    run_dir, run_id = study_dir / phase / name, f"{phase}/{name}"
    fingerprint = read_fingerprint(run_dir)
    config = fingerprint["config"] if fingerprint else None
    if not (run_dir / "metrics.json").exists():
        return RunRecord(run_id, run_dir, config, None, "not finished yet")
    metrics = read_json(run_dir / "metrics.json")
    if fingerprint is None or metrics.get("fingerprint") != fingerprint_digest(fingerprint):
        return RunRecord(run_id, run_dir, config, None,
                         "its metrics.json does not match the config, split and inputs recorded beside it "
                         f"(fingerprint.json); re-run it with --force {run_id}")
    return RunRecord(run_id, run_dir, config, metrics, None)


def summary_row(metrics: dict) -> dict:
    scored_on = metrics.get("scored_on", "test" if metrics.get("test") else "val")
    scored = metrics[scored_on]
    pct = lambda v: None if v is None else round(100 * v, 2)  # noqa: E731
    return {"phase": metrics["run"].split("/")[0], "run": metrics["run"].split("/")[1],
            "model": metrics["model"], "init": metrics["init"],
            "dataset": Path(metrics.get("dataset", "?")).name, "params": metrics["total_params"],
            "trainable": metrics["trainable_params"], "epochs": metrics["epochs"],
            "best_epoch": metrics["best_epoch"], "train_acc": pct(metrics["best_train_acc"]),
            "val_acc": pct(metrics["best_val_acc"]),
            "test_acc": pct(metrics["test"]["accuracy"]) if metrics.get("test") else None,
            "precision": pct(scored["precision_macro"]), "recall": pct(scored["recall_macro"]),
            "f1": pct(scored["f1_macro"]), "auc": None if scored["auc_macro"] is None else
            round(scored["auc_macro"], 4), "scored_on": "test" if scored_on == "test" else NOT_HELD_OUT,
            "gap": pct(metrics["verdict"]["gap"]), "verdict": metrics["verdict"]["verdict"],
            "sec_per_epoch": round(metrics["seconds_per_epoch"], 2)}


def collect_records(study_dir: Path) -> list[RunRecord]:
    return [read_run(study_dir, phase["name"], run["name"]) for phase, run in study_runs(study_dir)]


def collect_rows(study_dir: Path) -> list[dict]:
    return [summary_row(record.metrics) for record in collect_records(study_dir) if record.metrics]


def markdown_table(rows: list[dict]) -> str:
    fmt = lambda v: "—" if v is None else (f"{v:,}" if isinstance(v, int) else str(v))  # noqa: E731
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(fmt(row[c]) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n"


SUMMARY_NOTE = ("Accuracies in %, best epoch by validation accuracy; precision/recall/F1/AUC are macro "
                "averages on the split named in scored_on: the held-out test split, or, where a run has "
                f"none, \"{NOT_HELD_OUT}\": the validation images that chose its checkpoint, so those "
                "scores are optimistic. gap = final train - val accuracy.")


def write_summary(study_dir: Path) -> list[dict]:
    records = collect_records(study_dir)
    rows = [summary_row(record.metrics) for record in records if record.metrics]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(study_dir / "summary.csv", buffer.getvalue())
    left_out = "".join(f"\n- {r.run_id}: left out, {r.problem}" for r in records
                       if r.problem and r.problem != "not finished yet")
    atomic_write_text(study_dir / "summary.md",
                      f"# Summary\n\n{SUMMARY_NOTE}{left_out}\n\n" + markdown_table(rows))
    return rows
