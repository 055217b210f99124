"""The study report, rebuilt from the run folders alone: report.md and a self-contained report.html."""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from .fileio import atomic_write_text, read_json
from .summary import COLUMNS, collect_rows, markdown_table, study_runs

PLOTS = [("curves.png", "Loss and accuracy"), ("roc.png", "ROC"), ("confusion.png", "Confusion matrix"),
         ("predictions.png", "Predictions")]


def run_blocks(study_dir: Path, run: dict) -> list[tuple[str, str]]:
    run_dir = study_dir / run["phase"] / run["name"]
    if not (run_dir / "metrics.json").exists():
        return [("h3", f"{run['name']} ({run['model']['name']})"), ("p", "Not finished yet.")]
    metrics = read_json(run_dir / "metrics.json")
    verdict = metrics["verdict"]
    scored = "test" if metrics.get("test") else "val"
    blocks = [("h3", f"{run['name']} — {run['model']['name']} ({metrics['init']})"),
              ("p", f"Parameters: {metrics['total_params']:,} ({metrics['trainable_params']:,} trainable). "
                    f"Hyper-parameters: epochs {run['train']['epochs']}, batch {run['train']['batch_size']}, "
                    f"lr {run['train']['lr']}, image {run['data']['image_size']} px, augment "
                    f"{run['augment']}, freeze {run['model']['freeze']}, dataset {run['data']['dataset']}."),
              ("pre", metrics["final_epoch_line"]),
              ("p", f"Best epoch {metrics['best_epoch']}: val accuracy {metrics['best_val_acc'] * 100:.2f}%; "
                    f"{scored} accuracy {metrics[scored]['accuracy'] * 100:.2f}%, macro F1 "
                    f"{metrics[scored]['f1_macro'] * 100:.2f}%."),
              ("p", f"Verdict: **{verdict['verdict']}** — {verdict['explanation']}."),
              ("details", (run_dir / "model.txt").read_text(encoding="utf-8"))]
    blocks += [("img", str(run_dir / "plots" / name)) for name, _ in PLOTS if (run_dir / "plots" / name).exists()]
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
        blocks += run_blocks(study_dir, run)
    blocks += [("h2", "Comparison"), ("table", "")]
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
