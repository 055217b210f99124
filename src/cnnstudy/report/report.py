"""The study report, rebuilt from the run folders alone: report.md and a self-contained report.html.

It leads with the answer (findings in words, the comparison table with mean ± std over repeats,
test scores and validation curves of every run, differences with their uncertainty), then gives
each phase's runs in detail, then every run (and repeat) in one table.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import plots
from .compare import CLASS_KIND, Group, comparisons, group_records
from ..fileio import atomic_write_text, read_jsonl
from .findings import diverged, findings
from .perclass import class_table
from ..runner.records import RunRecord, collect_records, study_runs
from .render import to_html, to_markdown
from .stats import format_p, wilson
from .sweeps import sweep_blocks
from .summary import COLUMNS, SUMMARY_NOTE, summary_rows

PLOTS = [("curves.png", "Loss and accuracy"), ("roc.png", "ROC"), ("confusion.png", "Confusion matrix"),
         ("predictions.png", "Predictions"), ("gradcam.png", "Grad-CAM"), ("why_wrong.png", "Why wrong"),
         ("reliability.png", "Reliability")]
Blocks = list[tuple[str, object]]


def _settings(cfg: dict) -> str:
    return (f"Hyper-parameters: epochs {cfg['train']['epochs']}, batch {cfg['train']['batch_size']}, "
            f"lr {cfg['train']['lr']}, image {cfg['data']['image_size']} px, augment {cfg['augment']}, "
            f"freeze {cfg['model']['freeze']}, dataset {cfg['data']['dataset']}, seed {cfg['seed']}.")


def _scores(metrics: dict) -> Blocks:
    scored = metrics["scored_on"]
    line = (f"Best epoch {metrics['best_epoch']}: val accuracy {metrics['best_val_acc'] * 100:.2f}%; "
            f"{scored} accuracy {metrics[scored]['accuracy'] * 100:.2f}%, macro F1 "
            f"{metrics[scored]['f1_macro'] * 100:.2f}%.")
    origin = metrics["split"]["origin"]
    split = "Split: " + "; ".join(f"{part} {metrics['split']['sizes'][part]} images ({origin[part]})"
                                  for part in origin) + "."
    blocks: Blocks = [("p", line), ("p", split)]
    if "ece" in metrics[scored]:
        blocks.append(("p", calibration_words(metrics)))
    if scored != "test":
        blocks.append(("p", "**No held-out test split**: these scores are on the validation images that chose "
                            "best.pt, so they are optimistic (split.test is 0)."))
    return blocks


def calibration_words(metrics: dict) -> str:
    scored = metrics["scored_on"]
    words = (f"Calibration on {scored}: expected calibration error {metrics[scored]['ece'] * 100:.1f}% (15 bins, "
             f"top label), negative log-likelihood {metrics[scored]['nll']:.3f}.")
    fitted = metrics.get("calibration")
    if fitted and scored in fitted:
        words += (f" Temperature {fitted['temperature']:.2f} (fitted on validation) brings them to "
                  f"{fitted[scored]['ece_scaled'] * 100:.1f}% and {fitted[scored]['nll_scaled']:.3f}; predict and "
                  "export use it.")
    return words


def run_blocks(record: RunRecord, model_name: str, title: str = "") -> Blocks:
    """A run's section, from its own folder: settings from its fingerprint, scores from its metrics."""
    name = record.label.split("/", 1)[1]
    if record.metrics is None:
        return [("h3", f"{name} ({model_name})"), ("p", f"No results: {record.problem}.")]
    metrics, run_dir = record.metrics, record.run_dir
    verdict = metrics["verdict"]
    blocks: Blocks = [
        ("h3", f"{name} — {metrics['model']} ({metrics['init']}){title}"),
        ("p", f"Parameters: {metrics['total_params']:,} ({metrics['trainable_params']:,} trainable). "
              + _settings(record.config)),
        ("pre", metrics["final_epoch_line"]), *_scores(metrics),
        ("p", f"Verdict: **{verdict['verdict']}** — {verdict['explanation']}."),
        ("details", (run_dir / "model.txt").read_text(encoding="utf-8"))]
    blocks += [("img", run_dir / "plots" / png) for png, _ in PLOTS if (run_dir / "plots" / png).exists()]
    if metrics["skipped_images"]:
        blocks.append(("p", f"{len(metrics['skipped_images'])} unreadable image(s) were left out "
                            "(listed in metrics.json)."))
    return blocks


def repeated_blocks(records: list[RunRecord], group: Group | None, model_name: str) -> Blocks:
    """A repeated run: the repeats in one line, then the detail of its best repeat."""
    if group is None:
        return [("h3", f"{records[0].run_id.split('/')[1]} ({model_name})"), ("p", "No repeat has finished yet.")]
    best = group.records[group.representative]
    verdicts = [m["verdict"]["verdict"] for m in group.metrics]
    counts = ", ".join(f"{v} ×{verdicts.count(v)}" for v in dict.fromkeys(verdicts))
    stats = group.summary("test_acc")
    interval = f" (95% CI {stats['ci95'][0] * 100:.1f}–{stats['ci95'][1] * 100:.1f})" if stats["ci95"] else ""
    seeds = ", ".join(str(m["seed"]) for m in group.metrics)
    line = (f"Over {len(group.records)} of {len(records)} repeats (seeds {seeds}): test accuracy "
            f"{group.mean_std_text('test_acc')}%{interval}, macro F1 {group.mean_std_text('f1')}%, "
            f"verdicts: {counts}.")
    return run_blocks(best, model_name, f", repeat r{best.repeat}: the best by validation accuracy") + [("p", line)]


def phase_blocks(study_dir: Path, records: dict[str, list[RunRecord]], groups: dict[str, Group]) -> Blocks:
    blocks: Blocks = []
    current = None
    for phase, run in study_runs(study_dir):
        if phase["name"] != current:
            current = phase["name"]
            blocks.append(("h2", f"{phase['name']}: {phase['title']}" if phase["title"] else phase["name"]))
            if phase["description"]:
                blocks.append(("p", phase["description"]))
        run_id = f"{phase['name']}/{run['name']}"
        if run.get("sweep"):
            blocks += sweep_blocks(study_dir, run, run_id)
        if run.get("repeats", 1) > 1:
            blocks += repeated_blocks(records[run_id], groups.get(run_id), run["model"]["name"])
        else:
            blocks += run_blocks(records[run_id][0], run["model"]["name"])
    return blocks


GROUP_COLUMNS = ["run", "init", "dataset", "repeats", "test acc %", "macro F1 %", "ECE %", "val acc %", "gap",
                 "verdicts"]
DIFF_COLUMNS = ["run", "against", "test images", "difference", "95% CI", "p", "in words", "method"]


def answer_blocks(study_dir: Path, records: list[RunRecord], groups: list[Group], found: list[dict]) -> Blocks:
    rows = [{"run": g.run_id, "init": g.first["init"], "dataset": Path(g.first["dataset"]).name,
             "repeats": len(g.records), "test acc %": g.mean_std_text("test_acc") or "(no test split)",
             "macro F1 %": g.mean_std_text("f1"), "ECE %": g.mean_std_text("ece"),
             "val acc %": g.mean_std_text("val_acc"),
             "gap": g.mean_std_text("gap"),
             "verdicts": ", ".join(sorted(set(m["verdict"]["verdict"] for m in g.metrics)))} for g in groups]
    diffs = [{"run": c["a"], "against": f"{c['b']} ({c['kind']})", "test images": f"{c['test_images']} {c['dataset']}",
              "difference": f"{c['diff'] * 100:+.1f} points",
              "95% CI": f"{c['ci95'][0] * 100:+.1f} to {c['ci95'][1] * 100:+.1f}", "p": format_p(c["p"]),
              "in words": c["words"], "method": c["method"]} for c in found if c["kind"] != CLASS_KIND]
    answer = diverged(records, study_runs(study_dir)) + findings(groups, found)
    blocks: Blocks = [("h2", "The answer"), ("ul", answer), ("table", (rows, GROUP_COLUMNS))]
    blocks += [("img", path) for path in study_plots(study_dir, groups)]
    if diffs:
        blocks += [("h3", "Differences on the same test images"), ("table", (diffs, DIFF_COLUMNS)),
                   ("p", f"p-values are adjusted for the {len(found)} comparisons this report makes (Holm's "
                         "method), and the words follow the adjusted value; the raw p-values are in comparisons.csv.")]
    for title, rows, columns in class_table(groups):
        blocks += [("h3", title), ("table", (rows, columns))]
    by_id = {g.run_id: g for g in groups}
    panels = [side_by_side(study_dir, by_id[c["a"]], by_id[c["b"]]) for c in found
              if c["kind"].startswith(("previous phase", "against scratch"))]
    panels = [path for path in panels if path is not None]
    if panels:
        blocks += [("h3", "Where each run looks, on the same test images (Grad-CAM, predicted class)"),
                   *[("img", path) for path in panels]]
    return blocks


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
    for key in dict.fromkeys(g.test_key for g in groups):
        members = [g for g in groups if g.test_key == key]
        first = members[0].first
        part, n = first["scored_on"], first[first["scored_on"]]["n"]
        title = f"{Path(first['dataset']).name}: {n} {'test' if key else 'validation (not held out)'} images, " \
                f"{len(first['classes'])} classes"
        acc = []
        for g in members:
            stats = g.summary("test_acc" if key else "val_acc")
            if stats["ci95"]:
                acc.append((stats["mean"], *stats["ci95"]))
            else:
                accuracy = g.first[part]["accuracy"]
                acc.append((accuracy, *wilson(round(accuracy * n), n)))
        panels.append({"title": title, "runs": [g.run_id for g in members], "acc": acc,
                       "f1": [g.summary("f1")["mean"] or 0.0 for g in members],
                       "wilson": [len(g.records) == 1 for g in members], "chance": 1 / len(first["classes"])})
    return panels


def study_plots(study_dir: Path, groups: list[Group]) -> list[Path]:
    if not groups:
        return []
    bars = plots.plot_comparison_panels(comparison_panels(groups), study_dir / "plots" / "comparison.png")
    curves = {g.run_id: [[row["val_acc"] for row in read_jsonl(r.run_dir / "history.jsonl")] for r in g.records]
              for g in groups}
    return [bars, plots.plot_val_curves(curves, study_dir / "plots" / "val_curves.png")]


def build_report(study_dir: str | Path) -> tuple[Path, Path]:
    """Write report.md and report.html into the study folder; needs only the files a study wrote."""
    study_dir = Path(study_dir)
    if not (study_dir / "study.yaml").exists():
        raise FileNotFoundError(f"{study_dir} is not a study folder (no study.yaml); pass runs/<study>")
    records = collect_records(study_dir)  # every run folder read once
    by_run: dict[str, list[RunRecord]] = {}
    for record in records:
        by_run.setdefault(record.run_id, []).append(record)
    groups = group_records(records)
    found = comparisons(groups)
    blocks: Blocks = [("h1", f"Study report: {study_dir.name}"), *answer_blocks(study_dir, records, groups, found),
                      *phase_blocks(study_dir, by_run, {g.run_id: g for g in groups}),
                      ("h2", "All runs"), ("p", SUMMARY_NOTE), ("table", (summary_rows(records), COLUMNS))]
    atomic_write_text(study_dir / "report.md", to_markdown(blocks, study_dir))
    atomic_write_text(study_dir / "report.html", to_html(blocks, f"cnnstudy: {study_dir.name}"))
    return study_dir / "report.md", study_dir / "report.html"
