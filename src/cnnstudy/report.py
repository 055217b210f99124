"""The study report, rebuilt from the run folders alone: report.md and a self-contained report.html."""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from .fileio import atomic_write_text, read_json
from .summary import COLUMNS, SUMMARY_NOTE, RunRecord, collect_rows, markdown_table, read_run, study_runs

PLOTS = [("curves.png", "Loss and accuracy"), ("roc.png", "ROC"), ("confusion.png", "Confusion matrix"),
         ("predictions.png", "Predictions")]


def _settings(cfg: dict) -> str:
    return (f"Hyper-parameters: epochs {cfg['train']['epochs']}, batch {cfg['train']['batch_size']}, "
            f"lr {cfg['train']['lr']}, image {cfg['data']['image_size']} px, augment {cfg['augment']}, "
            f"freeze {cfg['model']['freeze']}, dataset {cfg['data']['dataset']}, seed {cfg['seed']}.")


def _scores(metrics: dict) -> list[tuple[str, str]]:
    scored = metrics["scored_on"]
    line = (f"Best epoch {metrics['best_epoch']}: val accuracy {metrics['best_val_acc'] * 100:.2f}%; "
            f"{scored} accuracy {metrics[scored]['accuracy'] * 100:.2f}%, macro F1 "
            f"{metrics[scored]['f1_macro'] * 100:.2f}%.")
    origin = metrics["split"]["origin"]
    split = "Split: " + "; ".join(f"{part} {metrics['split']['sizes'][part]} images ({origin[part]})"
                                  for part in origin) + "."
    blocks = [("p", line), ("p", split)]
    if scored != "test":
        blocks.append(("p", "**No held-out test split**: these scores are on the validation images that chose "
                            "best.pt, so they are optimistic (split.test is 0)."))
    return blocks


def run_blocks(record: RunRecord, model_name: str) -> list[tuple[str, str]]:
    """A run's section, from its own folder: settings from its fingerprint, scores from its metrics."""
    name = record.run_id.split("/")[1]
    if record.metrics is None:
        return [("h3", f"{name} ({model_name})"), ("p", f"No results: {record.problem}.")]
    metrics, cfg, run_dir = record.metrics, record.config, record.run_dir
    verdict = metrics["verdict"]
    blocks = [("h3", f"{name} — {metrics['model']} ({metrics['init']})"),
              ("p", f"Parameters: {metrics['total_params']:,} ({metrics['trainable_params']:,} trainable). "
                    + _settings(cfg)),
              ("pre", metrics["final_epoch_line"]), *_scores(metrics),
              ("p", f"Verdict: **{verdict['verdict']}** — {verdict['explanation']}."),
              ("details", (run_dir / "model.txt").read_text(encoding="utf-8"))]
    blocks += [("img", str(run_dir / "plots" / png)) for png, _ in PLOTS if (run_dir / "plots" / png).exists()]
    if metrics["skipped_images"]:
        blocks.append(("p", f"{len(metrics['skipped_images'])} unreadable image(s) were left out "
                            "(listed in metrics.json)."))
    return blocks


def report_blocks(study_dir: Path) -> list[tuple[str, str]]:
    blocks = [("h1", f"Study report: {study_dir.name}")]
    current = None
    for phase, run in study_runs(study_dir):
        if phase["name"] != current:
            current = phase["name"]
            blocks.append(("h2", f"{phase['name']}: {phase['title']}" if phase["title"] else phase["name"]))
            if phase["description"]:
                blocks.append(("p", phase["description"]))
        blocks += run_blocks(read_run(study_dir, phase["name"], run["name"]), run["model"]["name"])
    blocks += [("h2", "Comparison"), ("p", SUMMARY_NOTE), ("table", "")]
    return blocks


def to_markdown(blocks, study_dir: Path, rows: list[dict]) -> str:
    out = []
    for kind, text in blocks:
        if kind.startswith("h"):
            out.append("#" * int(kind[1]) + " " + text)
        elif kind in ("pre", "details"):
            out.append(f"```\n{text.rstrip()}\n```")
        elif kind == "img":
            out.append(f"![{Path(text).stem}]({Path(text).relative_to(study_dir).as_posix()})")
        elif kind == "table":
            out.append(markdown_table(rows))
        else:
            out.append(text)
    return "\n\n".join(out) + "\n"


def _html_table(rows: list[dict]) -> str:
    head = "".join(f"<th>{c}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape('—' if r[c] is None else str(r[c]))}</td>"
                                    for c in COLUMNS) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def to_html(blocks, rows: list[dict], title: str) -> str:
    out = []
    for kind, text in blocks:
        if kind.startswith("h"):
            out.append(f"<{kind}>{html.escape(text)}</{kind}>")
        elif kind == "pre":
            out.append(f"<pre>{html.escape(text)}</pre>")
        elif kind == "details":
            out.append(f"<details><summary>Architecture</summary><pre>{html.escape(text)}</pre></details>")
        elif kind == "img":
            data = base64.b64encode(Path(text).read_bytes()).decode()
            out.append(f'<img alt="{Path(text).stem}" src="data:image/png;base64,{data}">')
        elif kind == "table":
            out.append(_html_table(rows))
        else:
            out.append("<p>" + re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(text)) + "</p>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
             "img{max-width:49%;vertical-align:top}"
             "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(out)}</body></html>\n")


def build_report(study_dir: str | Path) -> tuple[Path, Path]:
    """Write report.md and report.html into the study folder; needs only the files a study wrote."""
    study_dir = Path(study_dir)
    if not (study_dir / "study.yaml").exists():
        raise FileNotFoundError(f"{study_dir} is not a study folder (no study.yaml); pass runs/<study>")
    rows = collect_rows(study_dir)
    blocks = report_blocks(study_dir)
    atomic_write_text(study_dir / "report.md", to_markdown(blocks, study_dir, rows))
    atomic_write_text(study_dir / "report.html", to_html(blocks, rows, f"cnnstudy: {study_dir.name}"))
    return study_dir / "report.md", study_dir / "report.html"
