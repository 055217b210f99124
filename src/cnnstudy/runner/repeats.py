"""Repeats: `repeats: N` trains a run N times on the same split, with seeds derived from its seed.

Layout: with N = 1 the run lives in `<phase>/<run>/` (as without repeats); with N > 1 each repeat
has a folder of its own, `<phase>/<run>/r0` ... `r<N-1>`, each a complete run folder. r0 keeps the
run's own seed, so adding repeats to a study keeps the numbers it already has. Where one checkpoint
of a repeated run is needed (`init_from`), the repeat with the best validation accuracy is used
(the lowest index on a tie).
"""
from __future__ import annotations

from pathlib import Path

from ..config import RunConfig, StudyError
from ..fileio import read_json
from ..seeds import repeat_seed

RESULT_FILES = ("metrics.json", "last.pt", "best.pt")


def group_dir(study_dir: Path, cfg: RunConfig) -> Path:
    return study_dir / cfg.phase / cfg.name


def repeat_folders(group: Path, repeats: int) -> list[tuple[int | None, Path]]:
    """(repeat index, folder) of every repeat of the run in `group`; the index is None without repeats."""
    return [(None, group)] if repeats == 1 else [(k, group / f"r{k}") for k in range(repeats)]


def repeat_dirs(study_dir: Path, cfg: RunConfig) -> list[tuple[int | None, Path]]:
    return repeat_folders(group_dir(study_dir, cfg), cfg.repeats)


def run_label(run_id: str, repeat: int | None) -> str:
    """<phase>/<run>, or <phase>/<run>/r<k> for a repeat."""
    return run_id if repeat is None else f"{run_id}/r{repeat}"


def repeat_config(cfg: RunConfig, repeat: int | None) -> RunConfig:
    return cfg if repeat is None else cfg.model_copy(update={"seed": repeat_seed(cfg.seed, repeat)})


def has_results(run_dir: Path) -> bool:
    return any((run_dir / name).exists() for name in RESULT_FILES)


def leftover_layout(study_dir: Path, cfg: RunConfig) -> str | None:
    """Results in the layout of another repeat count, which this study would not read."""
    folder = group_dir(study_dir, cfg)
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


def source_checkpoint(study_dir: Path, source: RunConfig) -> Path:
    """The best.pt an init_from of `source` starts from."""
    path = best_repeat_dir(study_dir, source) / "best.pt"
    if not path.exists():
        raise StudyError(f"{path} is missing, but runs start from it; re-run with --force {source.run_id}")
    return path
