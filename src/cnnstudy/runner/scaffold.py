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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..config import StudyError
from ..fileio import atomic_write_text

SEED_EPOCHS = {"baseline": 25, "slim": 25, "regularized": 40, "cnn_head": 40, "cnn_last_conv": 30,
               "cnn_new_head": 30, "resnet50": 10, "mobilenet_v2": 10, "efficientnet_b0": 10}
ROLES = ("main", "transfer", "transfer3")


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
    from ..data.sources import open_source

    source = open_source(path, base)
    report = inspect_dataset(source)
    per_class = np.sum([counts for counts in report["counts"].values()], axis=0).astype(int).tolist()
    empty = [name for name, count in zip(report["classes"], per_class) if count == 0]
    if empty:
        raise StudyError(f"--dataset {role}={path}: class folder(s) {', '.join(empty)} hold no readable image; "
                         "add images or remove the folder(s)")
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


def step_seconds(model_name: str, classes: int, size: int, batch: int = 16) -> float:
    """Seconds per training image of `model_name` at `size` px on this machine (two warm-up steps,
    the best of three timed: the machine's speed, not what else it is doing)."""
    from ..models.registry import create_model

    model = create_model(model_name, max(classes, 2), image_size=size).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images, labels = torch.randn(batch, 3, size, size), torch.randint(0, max(classes, 2), (batch,))
    times = []
    for _ in range(5):
        started = time.perf_counter()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return float(np.min(times[2:])) / batch


def run_seconds(model: str, folder: Folder, size: int, epochs: int, limit: int | None,
                measured: dict[str, float]) -> float:
    """A run's estimated wall-clock: training images each epoch, plus a third of that again for its
    evaluation passes (validation, the verdict's train sample), which run forward only."""
    if (model, size) not in measured:
        measured[(model, size)] = step_seconds(model, len(folder.classes), size)
    images = sum(min(count, limit) if limit else count for count in folder.per_class) * 0.7
    return epochs * images * measured[(model, size)] * (1 + 1 / 3)


def plan_runs(folders: dict[str, Folder]) -> list[tuple[str, str, str]]:
    """(phase, run, model) of the seed study that these folders allow."""
    runs = [("phase1", "baseline", "cnn_baseline"), ("phase2", "slim", "cnn_slim"),
            ("phase3", "regularized", "cnn_regularized")]
    if "transfer" in folders:
        runs += [("phase4", "cnn_head", "cnn_regularized"), ("phase4", "cnn_last_conv", "cnn_regularized")]
    if "transfer3" in folders:
        runs += [("phase4", "cnn_new_head", "cnn_regularized"), ("phase4", "resnet50", "resnet50"),
                 ("phase4", "mobilenet_v2", "mobilenet_v2"), ("phase4", "efficientnet_b0", "efficientnet_b0")]
    return runs


def estimate(folders: dict[str, Folder], size: int, limit: int | None, measured: dict[str, float]) -> dict[str, float]:
    """Seconds per run (the cnn_head sweep: its 16 trials and 3 + 3 confirmation repeats)."""
    found = {}
    for phase, name, model in plan_runs(folders):
        role = "main" if phase != "phase4" else "transfer" if name in ("cnn_head", "cnn_last_conv") else "transfer3"
        copies = 16 + 6 if name == "cnn_head" else 1
        found[f"{phase}/{name}"] = copies * run_seconds(model, folders[role], size, SEED_EPOCHS[name],
                                                        limit if role == "main" else None, measured)
    return found


def fit_limit(folders: dict[str, Folder], size: int, hours: float | None,
              measured: dict[str, float]) -> tuple[int | None, float, str]:
    """limit_per_class for phases 1-3, the estimated seconds, and why."""
    total = sum(estimate(folders, size, None, measured).values())
    if hours is None or total <= hours * 3600:
        budget = "" if hours is None else f", within the {hours:g} h asked for"
        return None, total, f"every image is used{budget}"
    main_runs = {k: v for k, v in estimate(folders, size, None, measured).items() if not k.startswith("phase4")}
    room = hours * 3600 - (total - sum(main_runs.values()))
    largest = max(folders["main"].per_class)
    limit = max(20, int(largest * max(room, 0) / sum(main_runs.values())))
    if limit >= largest:  # the floor of 20 limits nothing in a folder this small
        return None, total, "every image is used (a limit would not cut this folder)"
    fitted = sum(estimate(folders, size, limit, measured).values())
    return limit, fitted, (f"at most {limit} images per class in phases 1-3, to fit the {hours:g} h asked for "
                           f"(with every image: about {total / 3600:.1f} h)")


def fit_budget(folders: dict[str, Folder], hours: float | None) -> tuple[int, str, int | None, float, str]:
    """Image size and limit_per_class (each with why) and the estimated seconds: the photos' own size
    and every image where that fits `hours`; else fewer images per class, then a smaller size."""
    size, size_why = pick_image_size(folders["main"])
    measured: dict = {}
    for smaller in [size] + [s for s in (160, 128, 96, 64, 48) if s < size]:
        limit, seconds, limit_why = fit_limit(folders, smaller, hours, measured)
        if hours is None or seconds <= hours * 3600 or smaller == 48:
            break
    if smaller != size:
        size_why = f"lowered from {size} px to fit the {hours:g} h asked for ({size_why})"
    if hours is not None and seconds > hours * 3600:
        limit_why += f"; even so the study takes about {seconds / 3600:.1f} h here: ask for more hours, or a GPU"
    return smaller, size_why, limit, seconds, limit_why


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


def init_study(path: Path, given: dict[str, str], hours: float | None, log: Callable[[str], None]) -> Path:
    """Write the seed study for the folders `given` ({role: folder}) to `path`; returns it."""
    if path.exists():
        raise StudyError(f"{path} exists; cnnstudy init never overwrites a file: choose another name or move it")
    unknown = [role for role in given if role not in ROLES]
    if "main" not in given or unknown:
        raise StudyError(f"--dataset: give main=FOLDER (phases 1-3), and optionally transfer=FOLDER (4.1) and "
                         f"transfer3=FOLDER (4.2); {'unknown role ' + ', '.join(unknown) if unknown else 'no main'}")
    folders = {role: describe(role, folder, Path.cwd()) for role, folder in given.items()}
    same = [role for role in ("transfer", "transfer3") if role in folders and folders[role].path == folders["main"].path]
    if same:
        raise StudyError(f"--dataset {same[0]}: it is the same folder as main; transfer learning needs a new "
                         "dataset (phase 3's model has seen these images): give another folder")
    for folder in folders.values():
        log(f"{folder.role}: {folder.path}: {folder_comment(folder)}")
    size, size_why, limit, seconds, limit_why = fit_budget(folders, hours)
    text = study_text(path, folders, size, size_why, limit, limit_why, seconds)
    atomic_write_text(path, text)
    try:
        from .study import plan_study

        plan_study(path)  # checked as any study is: a file init writes must run
    except StudyError:
        path.unlink()
        raise
    if "transfer3" in folders:
        log("the ImageNet weights of resnet50, mobilenet_v2 and efficientnet_b0 are fetched before anything "
            f"trains (about 130 MB); offline, fetch them first: cnnstudy data fetch --study {path}")
    log(f"wrote {path}: estimated {seconds / 3600:.1f} h on this machine. Run it with: cnnstudy run {path}")
    return path
