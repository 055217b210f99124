"""The study's numbers as data, read from the run folders alone (records.py):

- summary.csv: one row per run, or per repeat of a repeated run;
- summary_grouped.csv: one row per run, with mean, std and 95 % interval over its repeats;
- comparisons.csv: runs on the same test images against each other (compare.py);
- summary.md: the per-run table.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from .compare import comparisons, phase_compare
from .groups import group_records, value_of
from ..fileio import atomic_write_text
from ..runner.results.records import RunRecord, collect_records, study_phases
from .render import markdown_table

COLUMNS = ["phase", "run", "repeat", "seed", "model", "init", "dataset", "params", "trainable", "epochs",
           "best_epoch", "train_acc", "train_eval_acc", "val_acc", "test_acc", "precision", "recall", "f1", "auc", "ece", "scored_on",
           "gap", "verdict", "sec_per_epoch"]
NOT_HELD_OUT = "val (not held out)"


PERCENT_COLUMNS = ("train_acc", "train_eval_acc", "val_acc", "test_acc", "precision", "recall", "f1", "ece", "gap")


def summary_row(metrics: dict) -> dict:
    """One run's (or repeat's) row; its numbers are compare.value_of's headline metrics, in %."""
    value = {column: value_of(metrics, column) for column in (*PERCENT_COLUMNS, "auc", "sec_per_epoch")}
    row = {"phase": metrics["run"].split("/")[0], "run": metrics["run"].split("/")[1],
           "repeat": metrics.get("repeat"), "seed": metrics.get("seed"), "model": metrics["model"],
           "init": metrics["init"], "dataset": Path(metrics["dataset"]).name, "params": metrics["total_params"],
           "trainable": metrics["trainable_params"], "epochs": metrics["epochs"], "best_epoch": metrics["best_epoch"],
           "auc": None if value["auc"] is None else round(value["auc"], 4),
           "scored_on": "test" if metrics["scored_on"] == "test" else NOT_HELD_OUT,
           "verdict": metrics["verdict"]["verdict"], "sec_per_epoch": round(value["sec_per_epoch"], 2)}
    row.update({column: None if value[column] is None else round(100 * value[column], 2)
                for column in PERCENT_COLUMNS})
    return row


def summary_rows(records: list[RunRecord]) -> list[dict]:
    return [summary_row(record.metrics) for record in records if record.metrics]


GROUPED_METRICS = ["test_acc", "val_acc", "f1", "precision", "recall", "auc", "ece", "gap", "sec_per_epoch"]
COMPARISON_COLUMNS = ["family", "kind", "a", "b", "class", "dataset", "test_images", "diff", "ci_low", "ci_high",
                      "ci_level", "p_raw", "p", "family_size", "method", "note", "words"]
# p: adjusted within its family (Bonferroni); the interval is at the matching level; words follow both.


def grouped_rows(groups) -> list[dict]:
    """One row per run: mean, std and 95 % interval of every headline metric over its repeats."""
    rows = []
    for group in groups:
        first = group.first
        row = {"phase": group.phase, "run": group.run_id.split("/")[1], "model": first["model"],
               "init": first["init"], "dataset": Path(first["dataset"]).name, "repeats": len(group.records),
               "scored_on": "test" if group.test_key else NOT_HELD_OUT}
        for metric in GROUPED_METRICS:
            stats = group.summary(metric)
            row.update({f"{metric}_mean": stats["mean"], f"{metric}_std": stats["std"],
                        f"{metric}_ci95_low": (stats["ci95"] or [None, None])[0],
                        f"{metric}_ci95_high": (stats["ci95"] or [None, None])[1]})
        rows.append(row)
    return rows


def _csv(rows: list[dict], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


SUMMARY_NOTE = ("Accuracies in %. train_acc, val_acc and the scores are the best epoch's (by validation "
                "accuracy; train_acc measured while training, with augmentation and Dropout); train_eval_acc "
                "is the judged epoch's train accuracy in eval mode on un-augmented images (the last epoch; "
                "the scored one with early stopping or EMA), the side gap compares with that epoch's "
                "validation accuracy. Precision/recall/F1/AUC are macro "
                "averages on the split named in scored_on: the held-out test split, or, where a run has "
                f"none, \"{NOT_HELD_OUT}\": the validation images that chose its checkpoint, so those "
                "scores are optimistic. ece = expected calibration error (15 bins, top label) on that split. "
                "gap = train_eval_acc - the judged epoch's validation accuracy.")


def write_summary(study_dir: Path) -> list[dict]:
    """Write summary.csv, summary_grouped.csv, comparisons.csv and summary.md; returns the per-run rows."""
    records = collect_records(study_dir)  # every run folder read once
    rows, groups = summary_rows(records), group_records(records)
    atomic_write_text(study_dir / "summary.csv", _csv(rows, COLUMNS))
    grouped = grouped_rows(groups)
    atomic_write_text(study_dir / "summary_grouped.csv", _csv(grouped, list(grouped[0]) if grouped else ["run"]))
    found = [{**c, "ci_low": (c["ci"] or [None])[0], "ci_high": (c["ci"] or [None, None])[1], "ci_level": c["level"]}
             for c in comparisons(groups, phase_compare(study_phases(study_dir)))]
    atomic_write_text(study_dir / "comparisons.csv", _csv(found, COMPARISON_COLUMNS))
    left_out = "".join(f"\n- {r.label}: left out, {r.problem}" for r in records
                       if r.problem and r.problem != "not finished yet")
    atomic_write_text(study_dir / "summary.md",
                      f"# Summary\n\n{SUMMARY_NOTE}{left_out}\n\n" + markdown_table(rows, COLUMNS))
    return rows
