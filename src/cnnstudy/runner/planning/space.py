"""Before anything trains: will the disks hold what the study is about to write? Checkpoints (best.pt:
the weights; last.pt: the weights and Adam's two moments of every trainable one), predictions and
plots per training unit, and the decode-once cache of every split not cached yet, summed per file
system and compared with its free space."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ...config import RunConfig, StudyError
from ...data.cache import cache_path, cache_root
from ...data.loaders import train_eval_items
from ...data.splits import PARTS
from ...fileio import existing_parent, free_bytes
from ...models.freeze import apply_freeze
from ...models.registry import count_parameters, create_model, eval_crop, resize_filter
from .plan import Job, RunPlan, SweepPlan
from ..search.sweep import sweep_units

PER_RUN_EXTRA = 3 * 2**20  # predictions, plots, history, config files
MARGIN = 1.15  # estimates are rough: ask for 15 % more


def run_bytes(cfg: RunConfig, classes: int) -> int:
    with torch.device("meta"):
        model = create_model(cfg.model.name, classes, image_size=cfg.data.image_size)
    apply_freeze(model, cfg.model.freeze)
    weights, trainable = count_parameters(model), count_parameters(model, True)
    return 4 * (2 * weights + 2 * trainable) + PER_RUN_EXTRA


def units(job: Job) -> int:
    if isinstance(job, SweepPlan):
        return sweep_units(job.cfg)
    return 0 if not isinstance(job, RunPlan) or job.action == "skip" else 1


def cache_bytes(jobs: list[Job]) -> int:
    """The image cache still to build: every part of every split a training run loads at its size."""
    wanted = {}
    for job in jobs:
        if units(job) and job.cfg.data.loader == "cached":
            resample = resize_filter(job.cfg.model.name, job.cfg.model.pretrained)
            for items, crop_pct in cached_arrays(job):
                path = cache_path(job.data.source, items, job.cfg.data.image_size, known=job.data.files,
                                  resample=resample, crop_pct=crop_pct)
                wanted[path] = len(items) * job.cfg.data.image_size ** 2 * 3
    return sum(size for path, size in wanted.items() if not path.exists())


def cached_arrays(job: Job) -> list[tuple[list[str], float | None]]:
    """The arrays a run's cached loader builds, as (items, evaluation crop): each part of its split,
    val and test at the crop, and, with a crop, the verdict's training sample at it too."""
    crop = eval_crop(job.cfg.model.name, job.cfg.model.pretrained)
    arrays = [([item for item, _ in getattr(job.data.split, part)], None if part == "train" else crop)
              for part in PARTS]
    if crop is not None:
        arrays.append(([item for item, _ in train_eval_items(job.data.split, job.cfg.seed)], crop))
    return [(items, crop_pct) for items, crop_pct in arrays if items]


def check_free_space(jobs: list[Job], study_dir: Path) -> None:
    needs = {study_dir: sum(units(job) * run_bytes(job.cfg, len(job.data.split.classes)) for job in jobs
                            if units(job)),
             cache_root(): cache_bytes(jobs)}
    by_device: dict[int, list[Path]] = {}
    for folder in needs:
        by_device.setdefault(os.stat(existing_parent(folder)).st_dev, []).append(folder)
    for folders in by_device.values():
        need, free = MARGIN * sum(needs[f] for f in folders), free_bytes(folders[0])
        if need > free:
            what = " and ".join(f"about {needs[f] / 2**20:.0f} MB into {f}" for f in folders if needs[f])
            raise StudyError(f"not enough free space: the study will write {what}, but only {free / 2**20:.0f} MB "
                             "are free there. Nothing was trained. Free some space, or point --out (or "
                             "$CNNSTUDY_CACHE, for the image cache) at a larger disk")
