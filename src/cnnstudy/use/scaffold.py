"""`cnnstudy init`: the seed study written for a person's own folders.

Each folder is inspected (layout, classes, counts, image sizes, unreadable files); what does not
apply is left out (phase 4.1 without a `transfer` folder, 4.2 without a `transfer3` one); the image
size follows the photos and the wall-clock is estimated from the training step measured on this
machine, with `limit_per_class` lowered to fit `--hours` where one is given. Every choice is written
as a comment beside it, and the file is checked as any study is before it is kept.
"""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..config import StudyError
from ..fileio import atomic_write_text
from .budget import estimate, fit_budget, leave_out, measure, outcome_lines
from ..runner.planning.only import only_without
from ..runner.planning.precheck import check_init


@dataclass
class Folder:
    """What `init` needs to know of one dataset."""
    role: str
    path: str
    classes: list[str]
    per_class: list[int]  # usable images per class, over every split folder
    shorter_side: float  # median shorter side of the images, px
    unreadable: int
    layout: str


def describe(role: str, path: str, base: Path) -> Folder:
    from ..data.inspection import inspect_dataset
    from ..data.layout import empty_classes_error
    from ..data.sources import open_source

    source = open_source(path, base, f"--dataset {role}=")
    report = inspect_dataset(source, progress=f"inspecting {role}", copies=False)  # `run` looks for copies
    per_class = np.sum([counts for counts in report["counts"].values()], axis=0).astype(int).tolist()
    empty = [name for name, count in zip(report["classes"], per_class) if count == 0]
    if empty:
        raise StudyError(f"--dataset {role}={path}: {empty_classes_error(empty, source.root)}")
    size = report["size"] or {"width": {"median": 0}, "height": {"median": 0}}
    # A folder is written as an absolute path: the study then runs from any working directory.
    written = str((base / path).resolve()) if (base / path).exists() else path
    return Folder(role, written, list(report["classes"]), per_class,
                  float(min(size["width"]["median"], size["height"]["median"])), len(report["unreadable"]),
                  report["layout"]["description"])


def pick_image_size(main: Folder) -> tuple[int, str]:
    """The seed's 224 px where the photos allow it, else their own size (a multiple of 16, >= 48)."""
    side = main.shorter_side
    if side >= 224:
        return 224, f"the seed's size; your images' median shorter side is {side:.0f} px, so nothing is upscaled"
    if side >= 48:
        size = max(48, int(side) // 16 * 16)
        return size, f"your images' median shorter side is {side:.0f} px: nothing is upscaled beyond it"
    return 48, f"your images are small ({side:.0f} px median shorter side); the seed CNNs need 46 px, so they are upscaled"


def batch_size(folders: dict[str, Folder], seed: int = 32) -> int:
    """The seed's 32, or the largest power of two that a dataset's training part (about 70 %) still fills."""
    smallest = min(int(sum(folder.per_class) * 0.7) for folder in folders.values())
    size = seed
    while size > 1 and size > smallest:
        size //= 2
    return size


def folder_comment(folder: Folder) -> str:
    counts = f"{min(folder.per_class):,}-{max(folder.per_class):,}" if folder.per_class else "0"
    return (f"{len(folder.classes)} classes, {sum(folder.per_class):,} images ({counts} per class), "
            f"{folder.layout}; {folder.unreadable} unreadable")


PHASES = """phases:
  - name: phase1
    title: Baseline CNN from scratch
    runs:
      - {name: baseline, model: cnn_baseline}
  - name: phase2
    title: A slimmer CNN (half the feature maps)
    runs:
      - {name: slim, model: cnn_slim}
  - name: phase3
    title: BatchNorm, Dropout and data augmentation
    compare: phase1
    runs:
      - {name: regularized, model: cnn_regularized, augment: seed, train: {epochs: 40}}
"""
TRANSFER = """      - name: cnn_head                    # 4.1: only the fully connected layers train
        model: {name: cnn_regularized, init_from: phase3/regularized, freeze: head}
        data: {dataset: transfer}
        train: {lr: 0.017}
        sweep: {trials: 16, prune: median, params: {train.lr: {low: 1.0e-4, high: 0.1, log: true}}, confirm: 3}
      - name: cnn_last_conv               # 4.1b: the last conv block trains too
        model: {name: cnn_regularized, init_from: phase3/regularized, freeze: last_conv}
        data: {dataset: transfer}
        train: {lr: 0.017, epochs: 30}
"""
TRANSFER3 = """      - name: cnn_new_head                # 4.2: a new head for transfer3's classes
        model: {name: cnn_regularized, init_from: phase3/regularized, freeze: head}
        data: {dataset: transfer3}
        train: {lr: 0.005, epochs: 30}
""" + "".join(f"""      - name: {model}                  # ImageNet weights, fetched before training
        model: {{name: {model}, pretrained: true, freeze: "last:10"}}
        data: {{dataset: transfer3}}
        train: {{lr: 0.001, epochs: 10}}
""" for model in ("resnet50", "mobilenet_v2", "efficientnet_b0"))


def study_text(path: Path, folders: dict[str, Folder], size: int, size_why: str, limit: int | None,
               limit_why: str, seconds: float) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem).lstrip(".") or "study"
    roles = "".join(f"  {role}: {json.dumps(folder.path)}    # {folder_comment(folder)}\n"
                    for role, folder in folders.items())
    text = (f"# Written by `cnnstudy init` for your folders: the seed study's phases (docs/study-file.md).\n"
            f"# Estimated wall-clock on this machine: about {seconds / 3600:.1f} h (the training step measured\n"
            f"# here; frozen layers train faster, so an upper bound). Run it with: cnnstudy run {path}\n"
            f"name: {name}\ndescription: The seed study on your own images.\ndatasets:\n{roles}defaults:\n"
            f"  data:\n    dataset: main\n    image_size: {size}    # {size_why}\n"
            f"    limit_per_class: {'null' if limit is None else limit}    # {limit_why}\n"
            f"  train: {{epochs: 25, batch_size: {batch_size(folders)}, lr: 0.001}}    # the seed's, the batch no larger "
            "than the smallest training set\n  augment: none\n  seed: 0\n" + PHASES)
    if "transfer" in folders or "transfer3" in folders:
        text += ("  - name: phase4\n    title: Transfer learning\n    compare: best\n"
                 "    defaults: {data: {limit_per_class: null}, train: {epochs: 40}}\n    runs:\n")
        text += (TRANSFER if "transfer" in folders else "") + (TRANSFER3 if "transfer3" in folders else "")
    else:
        text += "# No phase 4: give a second folder (--dataset transfer=PATH) for transfer learning.\n"
    return text


def choose_size(folders: dict[str, Folder], hours: float | None, log: Callable[[str], None]
                ) -> tuple[int, str, int | None, str, dict[str, float]]:
    """Image size and limit_per_class (each with why) and each run's estimated seconds: the photos'
    own size and every image where that fits `hours`; else fewer images per class, then a smaller size."""
    size, size_why = pick_image_size(folders["main"])
    measured = measure(folders, size, log)
    fitted, limit, seconds, limit_why = fit_budget(folders, size, hours, measured)
    if fitted != size:
        size_why = f"lowered from {size} px to fit the {hours:g} h asked for ({size_why})"
    if hours is not None and seconds > hours * 3600:
        limit_why += f"; even so the study takes about {seconds / 3600:.1f} h here: ask for more hours, or a GPU"
    return fitted, size_why, limit, limit_why, estimate(folders, fitted, limit, measured)


def weights_check(path: Path, runs: list) -> tuple[str | None, set[str]]:
    """Whether the pretrained runs' weights can be had (on disk, or their host answers): a line to
    say so, and the runs that cannot have them."""
    from ..data.fetch import unreachable
    from ..models.weights import WeightsFile, needed_weights

    needed = needed_weights(runs)
    missing = {item.model: reason for item in needed if isinstance(item, WeightsFile) and item.local() is None
               and (reason := unreachable(item.remote, "torchvision"))}
    names = " and ".join(", ".join(item.model for item in needed).rsplit(", ", 1))
    if not missing:
        return (f"the ImageNet weights of {names} are fetched before anything trains (about 130 MB); offline, "
                f"fetch them first: cnnstudy data fetch --study {path}") if needed else None, set()
    return (f"the ImageNet weights of {', '.join(missing)} cannot be fetched from here "
            f"({next(iter(missing.values()))}): fetch them where there is internet (cnnstudy data fetch --study "
            f"{path}), or leave their runs out"), \
        {cfg.run_id for cfg in runs if cfg.model.pretrained and cfg.model.name in missing}


def tell_outcome(path: Path, runs: list, per_run: dict[str, float], hours: float | None, limit: int | None,
                 size: int, log: Callable[[str], None]) -> None:
    """The estimate, what --hours came to, the weights that cannot be had and, where runs should be left
    out, one ready --only line."""
    weights, no_weights = weights_check(path, runs)
    within = {run: seconds for run, seconds in per_run.items() if run not in no_weights}
    left = leave_out(within, hours) if hours is not None else []
    for line in outcome_lines(per_run, hours, limit, size, left, no_weights) + ([weights] if weights else []):
        log(line)
    if left or no_weights:
        log(f"  cnnstudy run {shlex.quote(str(path))} --only {only_without(runs, set(left) | no_weights)}")


def init_study(path: Path, given: dict[str, str], hours: float | None, log: Callable[[str], None]) -> Path:
    """Write the seed study for the folders `given` ({role: folder}) to `path`; returns it."""
    check_init(path, given)
    folders = {}
    for role, folder in given.items():
        folders[role] = describe(role, folder, Path.cwd())
        log(f"{role}: {folders[role].path}: {folder_comment(folders[role])}")
    same = [role for role in ("transfer", "transfer3") if role in folders and folders[role].path == folders["main"].path]
    if same:
        raise StudyError(f"--dataset {same[0]}: it is the same folder as main; transfer learning needs a new "
                         "dataset (phase 3's model has seen these images): give another folder")
    size, size_why, limit, limit_why, per_run = choose_size(folders, hours, log)
    atomic_write_text(path, study_text(path, folders, size, size_why, limit, limit_why, sum(per_run.values())))
    try:
        from ..runner.study import plan_study

        _, runs = plan_study(path)  # checked as any study is: a file init writes must run
    except StudyError:
        path.unlink()
        raise
    tell_outcome(path, runs, per_run, hours, limit, size, log)
    log(f"wrote {path}. Run it with: cnnstudy run {path}")
    return path
