"""summary.csv and summary.md: one row per finished run, read from the run folders alone."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import yaml

from .fileio import atomic_write_text, read_json

COLUMNS = ["phase", "run", "model", "init", "params", "trainable", "epochs", "best_epoch", "train_acc",
           "val_acc", "test_acc", "precision", "recall", "f1", "auc", "gap", "verdict", "sec_per_epoch"]


def study_runs(study_dir: Path) -> list[tuple[dict, dict]]:
    """(phase, run config) pairs in study order, from the resolved study.yaml."""
    study = yaml.safe_load((study_dir / "study.yaml").read_text(encoding="utf-8"))
    return [(phase, run) for phase in study["phases"] for run in phase["runs"]]


def summary_row(metrics: dict) -> dict:
    scored = metrics.get("test") or metrics["val"]
    pct = lambda v: None if v is None else round(100 * v, 2)  # noqa: E731
    return {"phase": metrics["run"].split("/")[0], "run": metrics["run"].split("/")[1],
            "model": metrics["model"], "init": metrics["init"], "params": metrics["total_params"],
            "trainable": metrics["trainable_params"], "epochs": metrics["epochs"],
            "best_epoch": metrics["best_epoch"], "train_acc": pct(metrics["best_train_acc"]),
            "val_acc": pct(metrics["best_val_acc"]),
            "test_acc": pct(metrics["test"]["accuracy"]) if metrics.get("test") else None,
            "precision": pct(scored["precision_macro"]), "recall": pct(scored["recall_macro"]),
            "f1": pct(scored["f1_macro"]), "auc": None if scored["auc_macro"] is None else
            round(scored["auc_macro"], 4), "gap": pct(metrics["verdict"]["gap"]),
            "verdict": metrics["verdict"]["verdict"], "sec_per_epoch": round(metrics["seconds_per_epoch"], 2)}


def collect_rows(study_dir: Path) -> list[dict]:
    rows = []
    for phase, run in study_runs(study_dir):
        path = study_dir / phase["name"] / run["name"] / "metrics.json"
        if path.exists():
            rows.append(summary_row(read_json(path)))
    return rows


def markdown_table(rows: list[dict]) -> str:
    fmt = lambda v: "—" if v is None else (f"{v:,}" if isinstance(v, int) else str(v))  # noqa: E731
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(fmt(row[c]) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_summary(study_dir: Path) -> list[dict]:
    rows = collect_rows(study_dir)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(study_dir / "summary.csv", buffer.getvalue())
    note = ("Accuracies in %, best epoch by validation accuracy; precision/recall/F1 are macro averages "
            "on the test split (val where there is none); gap = final train - val accuracy.\n\n")
    atomic_write_text(study_dir / "summary.md", "# Summary\n\n" + note + markdown_table(rows))
    return rows
