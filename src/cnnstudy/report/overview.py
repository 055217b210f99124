"""The report's first screen: the answer (takeaway, one item per phase), the forest plot of every
confirmatory comparison, what would settle each open one, then every run in one table with the
study's plots and the differences with their uncertainty. Built from the run folders alone."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import plots
from .answer import answer
from .compare import CONFIRMATORY, EXPLORATORY
from .findings import calibration_notes, points
from .forest import forest_rows, plot_forest
from .groups import Group, verdict_counts
from .pairs import BEST_KIND, SWEEP_KIND
from .perclass import class_sentences, class_table
from .settle import settle_items
from .stats import format_p, wilson
from ..fileio import read_jsonl
from ..runner.results.records import RunRecord, study_phases, study_runs

Blocks = list[tuple[str, object]]


GROUP_COLUMNS = ["run", "init", "dataset", "repeats", "test acc %", "macro F1 %", "ECE %", "val acc %", "gap",
                 "verdict"]
DIFF_COLUMNS = ["run", "against", "test images", "difference", "CI", "p", "in words", "method"]


def group_rows(groups: list[Group], leaks: dict[str, str] | None = None) -> list[dict]:
    """Every run in one row: its scores (mean ± std over repeats) and its verdict; `leaks`: run id -> its
    accuracy without test images that have a copy on the training side, shown beside its own."""
    rows = []
    for g in groups:
        counts = verdict_counts(g) if len(g.records) > 1 else g.first["verdict"]["verdict"]
        rows.append({"run": g.run_id, "init": g.first["init"], "dataset": g.dataset_name, "repeats": len(g.records),
                     "test acc %": (g.mean_std_text("test_acc") or "(no test split)")
                     + (f" ({leaks[g.run_id]})" if g.run_id in (leaks or {}) else ""),
                     "macro F1 %": g.mean_std_text("f1"), "ECE %": g.mean_std_text("ece"),
                     "val acc %": g.mean_std_text("val_acc"), "gap": g.mean_std_text("gap"), "verdict": counts})
    return rows


def diff_rows(found: list[dict], family: str) -> list[dict]:
    return [{"run": c["a"] + (f" [{c['class']}]" if "class" in c else ""), "against": f"{c['b']} ({c['kind']})",
             "test images": f"{c['test_images']} {c['dataset']}", "difference": f"{points(c['diff'])} points",
             "CI": "—" if c["ci"] is None else f"{points(c['ci'][0])} to {points(c['ci'][1])} ({c['level'] * 100:.3g}%)",
             "p": "—" if c["p"] is None else format_p(c["p"]), "in words": c["words"],
             "method": c["method"] + (f"; {c['note']}" if c["note"] else "")}
            for c in found if c["family"] == family]


def family_note(found: list[dict], family: str) -> str:
    members = [c for c in found if c["family"] == family]
    tested = sum(c["p"] is not None for c in members)
    level = members[0]["level"] * 100 if members else 95.0
    return (f"The {tested} tested {family} comparison(s) are one family: each p is multiplied by {tested} "
            f"(Bonferroni, capped at 1) and each interval is at the matching {level:.3g}% level, so an interval "
            "excludes zero exactly when its p is below 0.05; the words follow both. comparisons.csv keeps the raw p.")


def answer_blocks(study_dir: Path, records: list[RunRecord], groups: list[Group], found: list[dict],
                  leaks: dict[str, str]) -> Blocks:
    """`leaks`: run id -> its accuracy without leaked test images (datacheck.leak_notes)."""
    phases, runs = study_phases(study_dir), study_runs(study_dir)
    lead, items = answer(groups, found, phases, records, runs)
    blocks: Blocks = [("h2", "The answer"), *([("lead", f"**In short.** {lead}")] if lead else []), ("ul", items)]
    blocks += forest_blocks(study_dir, found, [phase["name"] for phase in phases])
    settle = settle_items(found, {g.run_id: g for g in groups})
    blocks += [("h3", "What would settle it"), ("ul", settle)] if settle else []
    blocks += [("h3", "Every run"), ("table", (group_rows(groups, leaks), GROUP_COLUMNS)),
               ("p", "Verdicts are explained, with their numbers, in each run's section (docs/verdict.md).")]
    blocks += [("img", figure) for figure in study_plots(study_dir, groups)]
    if any(c["family"] == CONFIRMATORY for c in found):
        blocks += [("h3", "Differences on the same test images"),
                   ("table", (diff_rows(found, CONFIRMATORY), DIFF_COLUMNS)), ("p", family_note(found, CONFIRMATORY))]
    blocks += [("p", sentence) for sentence in calibration_notes(groups, found)]
    by_id = {g.run_id: g for g in groups}
    panels = [side_by_side(study_dir, by_id[c["a"]], by_id[c["b"]]) for c in found
              if c["family"] == CONFIRMATORY and c["kind"] not in (SWEEP_KIND, BEST_KIND)]
    panels = [path for path in panels if path is not None]
    if panels:
        blocks += [("fold", "Where each run looks, on the same test images (Grad-CAM, predicted class)"),
                   *[("img", path) for path in panels], ("endfold", "")]
    return blocks


def forest_blocks(study_dir: Path, found: list[dict], phases: list[str]) -> Blocks:
    rows = forest_rows(found, phases)
    if not rows:
        return []
    level = next(c["level"] for c in found if c["family"] == CONFIRMATORY)
    return [("img", plot_forest(rows, level, study_dir / "plots" / "forest.png"))]


def exploratory_blocks(groups: list[Group], found: list[dict]) -> Blocks:
    """Per-class recall of the runs on each test set, and each phase step split by class: exploratory."""
    blocks: Blocks = []
    sentences = class_sentences(groups, found)
    if sentences:
        blocks += [("fold", "Each phase step split by class"), ("ul", sentences),
                   ("table", (diff_rows(found, EXPLORATORY), DIFF_COLUMNS)), ("p", family_note(found, EXPLORATORY)),
                   ("endfold", "")]
    for title, rows, columns in class_table(groups):
        blocks += [("fold", title), ("table", (rows, columns)), ("endfold", "")]
    return [("h2", "By class (exploratory)"), *blocks] if blocks else []


def side_by_side(study_dir: Path, a: Group, b: Group, shown: int = 6) -> Path | None:
    """Both runs' stored maps of the same grid images (their representative repeats), one column each."""
    found = {}
    for group in (b, a):
        path = group.records[group.representative].run_dir / "explanations.npz"
        if not path.exists():
            return None
        with np.load(path) as arrays:
            found[group.run_id] = {key: arrays[key] for key in ("ids", "kind", "pixels", "maps", "targets")}
    grids = {run: {str(i): k for k, (i, kind) in enumerate(zip(v["ids"], v["kind"])) if kind == "grid"}
             for run, v in found.items()}
    common = [i for i in grids[b.run_id] if i in grids[a.run_id]][:shown]
    if not common:
        return None
    first = found[b.run_id]
    rows = [grids[b.run_id][i] for i in common]
    classes = a.first["classes"]
    return plots.plot_cam_side_by_side(first["pixels"][rows],
                                       {run: v["maps"][[grids[run][i] for i in common]] for run, v in found.items()},
                                       [classes[int(t)] for t in first["targets"][rows]],
                                       study_dir / "plots" / f"cam-{a.run_id.replace('/', '-')}-vs-"
                                                             f"{b.run_id.replace('/', '-')}.png")


def comparison_panels(groups: list[Group]) -> list[dict]:
    """The runs of each set of test images (runs without a held-out test split apart, on validation)."""
    panels = []
    panel_of = {g.run_id: g.test_key or ("val", g.first["dataset"], g.first["split"]["digest"]) for g in groups}
    for panel in dict.fromkeys(panel_of.values()):
        members = [g for g in groups if panel_of[g.run_id] == panel]
        key = members[0].test_key
        first = members[0].first
        part, n = first["scored_on"], first[first["scored_on"]]["n"]
        title = f"{Path(first['dataset']).name}: {n} {'test' if key else 'validation (not held out)'} images, " \
                f"{len(first['classes'])} classes"
        acc = []
        for g in members:
            stats = g.summary("test_acc" if key else "val_acc")
            if stats["ci95"]:  # a t-interval over repeats can leave [0, 1]; accuracy cannot
                acc.append((stats["mean"], *np.clip(stats["ci95"], 0.0, 1.0).tolist()))
            else:
                accuracy = g.first[part]["accuracy"]
                acc.append((accuracy, *wilson(round(accuracy * n), n)))
        panels.append({"title": title, "runs": [g.run_id for g in members], "acc": acc,
                       "f1": [g.summary("f1")["mean"] or 0.0 for g in members],
                       "wilson": [len(g.records) == 1 for g in members], "chance": 1 / len(first["classes"])})
    return panels


def fold_folders(record: RunRecord) -> list[Path]:
    """The folders holding a run's training histories: its folds' for a k-fold run."""
    folds = record.metrics.get("folds")
    return [record.run_dir / f"f{j}" for j in range(folds["k"])] if folds else [record.run_dir]


def study_plots(study_dir: Path, groups: list[Group]) -> list[Path]:
    """The comparison bars and every run's validation curve."""
    if not groups:
        return []
    bars = plots.plot_comparison_panels(comparison_panels(groups), study_dir / "plots" / "comparison.png")
    curves = {g.run_id: [[row["val_acc"] for row in read_jsonl(folder / "history.jsonl")]
                         for r in g.records for folder in fold_folders(r)] for g in groups}
    return [bars, plots.plot_val_curves(curves, study_dir / "plots" / "val_curves.png")]


