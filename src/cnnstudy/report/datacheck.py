"""The data check in the report, from the study's own files: what it found for each split the runs
used (splits/*.check.json, found by the split digest in each run's metrics.json) in the report's
first lines, each run's test accuracy without the images that have a copy on the training side, and
a section of thumbnails: the groups of copies and the likely mislabels of folded runs
(label_issues.csv beside their pooled predictions).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import plots
from ..data.datacheck import check_sentence
from ..data.labels import read_label_issues
from ..fileio import read_json
from ..runner.results.records import RunRecord

Blocks = list[tuple[str, object]]
SHOWN_GROUPS, SHOWN_SUSPECTS = 8, 10


def load_checks(study_dir: Path) -> dict[str, dict]:
    """Every saved check, by each split digest it covers (a folded split's folds too)."""
    checks: dict[str, dict] = {}
    for path in sorted((study_dir / "splits").glob("*.check.json")):
        check = read_json(path)
        checks.update({digest: check for digest in check.get("digests", [])})
    return checks


def _finished(records: list[RunRecord]) -> list[RunRecord]:
    return [record for record in records if record.metrics is not None]


def _by_check(records: list[RunRecord], checks: dict[str, dict]) -> tuple[list[tuple[dict, list]], dict]:
    """The finished runs grouped by the check of their split, and by dataset those without one."""
    grouped: dict[str, tuple[dict, list]] = {}
    unchecked: dict[str, list[str]] = {}
    for record in _finished(records):
        check = checks.get(record.metrics["split"]["digest"])
        if check is None:
            unchecked.setdefault(Path(record.metrics["dataset"]).name, []).append(record.label)
        else:
            grouped.setdefault(check["digests"][0], (check, []))[1].append(record)
    return list(grouped.values()), unchecked


def leak_free_accuracy(record: RunRecord, check: dict) -> tuple[float, int, int] | None:
    """(accuracy, images kept, images left out) on the scored images without those that have a copy
    on the training side; None where no scored image has one."""
    leaked = set(check["leaked_test"])
    if not leaked or record.metrics["scored_on"] != "test":
        return None
    with np.load(record.run_dir / "predictions.npz") as arrays:
        ids, probs, targets = arrays["test_ids"], arrays["test_probs"], arrays["test_targets"]
    keep = ~np.isin(ids, sorted(leaked))
    if keep.all() or not keep.any():
        return None
    return float((probs[keep].argmax(1) == targets[keep]).mean()), int(keep.sum()), int((~keep).sum())


@dataclass
class StudyCheck:
    """The data check as the report reads it, gathered once: the finished runs by the check of their
    split, the datasets of runs without one, each run's leak-free accuracy (by its folder) and the
    label issues shown."""
    grouped: list[tuple[dict, list[RunRecord]]]
    unchecked: dict[str, list[str]]
    leaks: dict[Path, tuple[float, int, int]]
    suspects: list[tuple[RunRecord, list[dict]]]


def gather(study_dir: Path, records: list[RunRecord]) -> StudyCheck:
    grouped, unchecked = _by_check(records, load_checks(study_dir))
    leaks = {record.run_dir: scored for check, runs in grouped for record in runs
             if (scored := leak_free_accuracy(record, check))}
    return StudyCheck(grouped, unchecked, leaks, suspect_lists(records))


def leak_notes(found: StudyCheck) -> dict[str, str]:
    """run id -> its test accuracy without the leaked test images (the mean over its repeats), for the
    table beside the headline number."""
    by_run: dict[str, list[tuple[float, int, int]]] = {}
    for _, runs in found.grouped:
        for record in runs:
            if record.run_dir in found.leaks:
                by_run.setdefault(record.run_id, []).append(found.leaks[record.run_dir])
    return {run: f"{np.mean([a for a, _, _ in scores]) * 100:.1f} without the {scores[0][2]} leaked"
            for run, scores in by_run.items()}


def suspect_lists(records: list[RunRecord]) -> list[tuple[RunRecord, list[dict]]]:
    """Per dataset, the label issues of its folded run with the best pooled accuracy."""
    best: dict[str, RunRecord] = {}
    for record in _finished(records):
        if (record.run_dir / "label_issues.csv").exists():
            held = best.get(record.metrics["dataset"])
            if held is None or record.metrics["test"]["accuracy"] > held.metrics["test"]["accuracy"]:
                best[record.metrics["dataset"]] = record
    return [(record, read_label_issues(record.run_dir / "label_issues.csv")) for record in best.values()]


def _sentences(grouped: list[tuple[dict, list]]) -> list[str]:
    """One sentence a dataset; a dataset split two ways that the check sees differently, one a split."""
    said: dict[str, list[tuple[str, list]]] = {}
    for check, runs in grouped:
        name, sentence = Path(check["dataset"]).name, check_sentence(check)
        known = next((held for held in said.setdefault(name, []) if held[0] == sentence), None)
        if known:
            known[1].extend(runs)
        else:
            said[name].append((sentence, list(runs)))
    lines = []
    for name, found in said.items():
        for sentence, runs in found:
            ids = sorted({record.run_id for record in runs})
            which = f" (the split of {', '.join(ids) if len(ids) <= 3 else f'{len(ids)} runs'})" if len(found) > 1 else ""
            lines.append(f"{name}{which}: {sentence}.")
    return lines


def _accuracy(record: RunRecord) -> str:
    return f"accuracy {record.metrics['test']['accuracy'] * 100:.1f}% on {record.metrics['test']['n']} images"


def data_lines(found: StudyCheck) -> Blocks:
    """The report's first lines: what the data check found, dataset by dataset."""
    said = _sentences(found.grouped)
    said += [f"{name}: not checked ({', '.join(runs[:3])}{' ...' if len(runs) > 3 else ''} finished before "
             "cnnstudy checked data; run the study again to check it, nothing retrains)."
             for name, runs in found.unchecked.items()]
    for record, rows in found.suspects:
        said.append(f"{record.label}'s out-of-fold predictions ({_accuracy(record)}) contradict {len(rows)} label(s), "
                    "shown under Data check; the weaker the model, the more of them are its own mistakes "
                    f"(`cnnstudy inspect {record.metrics['dataset']} --labels` ranks them with a "
                    "pretrained probe)." if rows else f"{record.label}'s out-of-fold predictions contradict no label.")
    if found.leaks:
        said.append("Runs whose scored images have a copy on the training side are also scored without them, "
                    "in the Every run table and under Data check.")
    return [("p", "**Data check.** " + " ".join(said))] if said else []


def data_section(study_dir: Path, found: StudyCheck) -> Blocks:
    """Copies as thumbnails, the runs scored without leaked images, the likely mislabels."""
    blocks: Blocks = []
    shown = set()
    for check, runs in found.grouped:
        if check["dataset"] not in shown:  # the copies of a dataset once, as its first split places them
            shown.add(check["dataset"])
            blocks += _copies_blocks(study_dir, check)
        blocks += _leak_blocks(check, runs, found.leaks)
    for record, rows in found.suspects:
        blocks += _suspect_blocks(study_dir, record, rows)
    return [("h2", "Data check"), *blocks] if blocks else []


def _copies_blocks(study_dir: Path, check: dict) -> Blocks:
    if not check["copies"]:
        return []
    root, name = Path(check["dataset"]), Path(check["dataset"]).name
    shown = sorted(check["copies"], key=lambda group: (len(group["classes"]) == 1, group["files"][0]))[:SHOWN_GROUPS]
    rows = [(f"{' / '.join(group['classes'])}\n{group['kind']}" + ("\nLABEL CONFLICT" if len(group["classes"]) > 1 else ""),
             [(root / file, f"{file.split('/')[-2]} ({part})") for file, part in
              zip(group["files"], group["part_of_file"])][:5]) for group in shown]
    figure = plots.plot_thumbnail_rows(rows, study_dir / "plots" / f"data-copies-{check['digests'][0][:12]}.png")
    listing = "; ".join(", ".join(group["files"]) for group in check["copies"][:20])
    more = f" (and {len(check['copies']) - 20} more)" if len(check["copies"]) > 20 else ""
    return [("h3", f"Copies in {name}: {check['summary']}"), ("img", figure),
            ("p", f"Every group: {listing}{more}. The full list, with the part each file is in, is "
                  f"splits/*.check.json.")]


def _leak_blocks(check: dict, runs: list[RunRecord], leaks: dict[Path, tuple[float, int, int]]) -> Blocks:
    rows = []
    for record in runs:
        if record.run_dir in leaks:
            accuracy, kept, left = leaks[record.run_dir]
            rows.append({"run": record.label, "test acc %": f"{record.metrics['test']['accuracy'] * 100:.1f}",
                         "without copies of training images %": f"{accuracy * 100:.1f}",
                         "images": f"{kept} (of {kept + left})"})
    if not rows:
        return []
    return [("p", f"{len(check['leaked_test'])} scored image(s) of {Path(check['dataset']).name} have a copy on "
                  "the training side, so the headline accuracy counts some memorised images; without them:"),
            ("table", (rows, list(rows[0])))]


def _suspect_blocks(study_dir: Path, record: RunRecord, rows: list[dict]) -> Blocks:
    if not rows:
        return []
    root, where = Path(record.metrics["dataset"]), record.run_dir.relative_to(study_dir).as_posix()
    thumbs = [(root / row["file"], f"{row['given_label']} -> {row['suggested_label']} ({row['score']:.2g})")
              for row in rows[:SHOWN_SUSPECTS]]
    lines = [(f"ranks {start + 1}-{start + len(thumbs[start:start + 5])}", thumbs[start:start + 5])
             for start in range(0, len(thumbs), 5)]
    figure = plots.plot_thumbnail_rows(lines, study_dir / "plots" / f"data-labels-{where.replace('/', '-')}.png")
    return [("h3", f"Labels {record.label}'s out-of-fold predictions contradict: {len(rows)} ({_accuracy(record)})"),
            ("img", figure),
            ("p", f"The whole ranked list is {where}/label_issues.csv (file, given_label, suggested_label, score; "
                  "score is the probability given to the label the image has). Look at them; to leave out those "
                  "you find wrong, list them in a file (one path a line, or that CSV with only their rows) and "
                  "name it in data.exclude.")]
