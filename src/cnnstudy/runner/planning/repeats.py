"""Repeats: `repeats: N` trains a run N times on the same split, with seeds derived from its seed.

Layout: with N = 1 the run lives in `<phase>/<run>/` (as without repeats); with N > 1 each repeat
has a folder of its own, `<phase>/<run>/r0` ... `r<N-1>`, each a complete run folder. r0 keeps the
run's own seed, so adding repeats to a study keeps the numbers it already has. Where one checkpoint
of a repeated run is needed (`init_from`), the repeat with the best validation accuracy is used
(the lowest index on a tie).

Folds (`data.split.folds: k`) add one level: each repeat's folder holds `f0` ... `f<k-1>`, each a
complete run folder, beside the pooled out-of-fold results of all k (runner/results/folds.py). A run that
starts from a folded run on the same folds starts each fold from the matching fold; from any other
data, from the source's fold with the best validation accuracy.
"""
from __future__ import annotations

from pathlib import Path

from ...config import RunConfig, StudyError
from ...fileio import read_json
from ...seeds import repeat_seed

RESULT_FILES = ("metrics.json", "last.pt", "best.pt")


def group_dir(study_dir: Path, cfg: RunConfig) -> Path:
    return study_dir / cfg.phase / cfg.name


def repeat_folders(group: Path, repeats: int) -> list[tuple[int | None, Path]]:
    """(repeat index, folder) of every repeat of the run in `group`; the index is None without repeats."""
    return [(None, group)] if repeats == 1 else [(k, group / f"r{k}") for k in range(repeats)]


def repeat_dirs(study_dir: Path, cfg: RunConfig) -> list[tuple[int | None, Path]]:
    return repeat_folders(group_dir(study_dir, cfg), cfg.repeats)


def unit_dirs(study_dir: Path, cfg: RunConfig) -> list[tuple[int | None, int | None, Path]]:
    """(repeat, fold, folder) of every training unit of the run: its repeats, each split into its folds."""
    folds = cfg.data.split.folds
    return [(repeat, fold, folder / f"f{fold}" if fold is not None else folder)
            for repeat, folder in repeat_dirs(study_dir, cfg) for fold in (range(folds) if folds else [None])]


def run_label(run_id: str, repeat: int | None, fold: int | None = None) -> str:
    """<phase>/<run>, <phase>/<run>/r<k> for a repeat, .../f<j> for a fold."""
    label = run_id if repeat is None else f"{run_id}/r{repeat}"
    return label if fold is None else f"{label}/f{fold}"


def repeat_config(cfg: RunConfig, repeat: int | None) -> RunConfig:
    return cfg if repeat is None else cfg.model_copy(update={"seed": repeat_seed(cfg.seed, repeat)})


def has_results(run_dir: Path) -> bool:
    return any((run_dir / name).exists() for name in RESULT_FILES)


def leftover_layout(study_dir: Path, cfg: RunConfig) -> str | None:
    """Results in the layout of another repeat count, or with(out) folds, which this study would not read."""
    folder = group_dir(study_dir, cfg)
    folded = [d for _, d in repeat_dirs(study_dir, cfg) if any(has_results(f) for f in d.glob("f[0-9]*"))]
    trained = [d for _, d in repeat_dirs(study_dir, cfg) if (d / "last.pt").exists() or (d / "best.pt").exists()]
    if cfg.data.split.folds and trained:
        return "holds the results of a run on a single split, but the study now asks for data.split.folds"
    if not cfg.data.split.folds and folded:
        return "holds k-fold results (f0, f1, ...), but the study now asks for a single split"
    if cfg.repeats > 1 and has_results(folder):
        return f"holds the results of a run without repeats, but the study now asks for {cfg.repeats}"
    if cfg.repeats == 1 and folder.is_dir() and any(has_results(d) for d in folder.glob("r[0-9]*")):
        return "holds repeats (r0, r1, ...), but the study now asks for a single run"
    return None


def best_repeat_dir(study_dir: Path, cfg: RunConfig) -> Path:
    """The folder of the repeat with the best validation accuracy (the run's own folder without repeats)."""
    folders = [folder for _, folder in repeat_dirs(study_dir, cfg)]
    if len(folders) == 1:
        return folders[0]
    for folder in folders:
        if not (folder / "metrics.json").exists():
            raise StudyError(f"{folder} has no metrics.json, so the best repeat of {cfg.run_id} is unknown; "
                             f"re-run with --force {cfg.run_id}")
    return best_repeat(folders)


def best_repeat(folders: list[Path]) -> Path:
    """Of finished repeat folders (in repeat order), the one with the best validation accuracy,
    the first on a tie."""
    scores = [read_json(folder / "metrics.json")["best_val_acc"] for folder in folders]
    scored = [score if score is not None else -1.0 for score in scores]  # None: diverged, no checkpoint
    return folders[scored.index(max(scored))]


def best_fold(folder: Path, folds: int) -> int:
    """The fold (of a finished repeat folder) with the best validation accuracy, the first on a tie."""
    folders = [folder / f"f{j}" for j in range(folds)]
    missing = [f for f in folders if not (f / "metrics.json").exists()]
    if missing:
        raise StudyError(f"{missing[0]} has no metrics.json, so the best fold of {folder} is unknown; re-run the study")
    return folders.index(best_repeat(folders))


def source_checkpoint(study_dir: Path, source: RunConfig, fold: int | None = None,
                      fold_digest: str | None = None) -> Path:
    """The best.pt an init_from of `source` starts from: for a folded source, its fold `fold` where that
    fold's split is the starting run's (`fold_digest`: the same images, folded the same way), else its
    fold with the best validation accuracy."""
    folder = best_repeat_dir(study_dir, source)
    if source.data.split.folds:
        recorded = read_json(folder / f"f{fold}" / "fingerprint.json") if fold is not None and \
            (folder / f"f{fold}" / "fingerprint.json").exists() else {}
        matching = fold_digest is not None and recorded.get("split", {}).get("digest") == fold_digest
        folder = folder / f"f{fold if matching else best_fold(folder, source.data.split.folds)}"
    path = folder / "best.pt"
    if not path.exists():
        raise StudyError(f"{path} is missing, but runs start from it; re-run with --force {source.run_id}")
    return path
