"""`cnnstudy init`'s wall-clock: the seed study's runs, each model's training step measured once on
this machine, and what fits `--hours`: fewer images per class in phases 1-3, then a smaller image
size, and, where even the smallest study does not fit, the runs to leave out, said on the terminal.

A step is measured at 112 px (or the study's size, if smaller) with a batch of 8 (one warm-up step,
the best of two timed); other sizes are estimated by the pixel count, as a convolution's cost scales
(at 224 px, measured on 2 AVX2 cores: the 4-conv CNNs within 7 % of a step measured there, the ImageNet
backbones 38-59 % above it, which keeps the estimate an upper bound; docs/newcomer.md).
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

SEED_EPOCHS = {"baseline": 25, "slim": 25, "regularized": 40, "cnn_head": 40, "cnn_last_conv": 30,
               "cnn_new_head": 30, "resnet50": 10, "mobilenet_v2": 10, "efficientnet_b0": 10}
SMALLER_SIZES = (160, 128, 96, 64, 48)
MEASURED_AT = 112  # px: a quarter of 224's pixels, so measuring takes seconds, not a minute
FEWEST_PER_CLASS = 20  # the floor of a --hours cut
TOO_FEW_PER_CLASS = 50  # below this, phases 1-3 test a handful of images a class: said so


def step_seconds(model_name: str, classes: int, size: int, batch: int = 8) -> float:
    """Seconds per training image of `model_name` at `size` px on this machine (one warm-up step,
    the best of two timed: the machine's speed, not what else it is doing)."""
    import torch

    from ..models.registry import create_model

    model = create_model(model_name, max(classes, 2), image_size=size).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images, labels = torch.randn(batch, 3, size, size), torch.randint(0, max(classes, 2), (batch,))
    times = []
    for _ in range(3):
        started = time.perf_counter()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return float(np.min(times[1:])) / batch


def plan_runs(roles: set[str]) -> list[tuple[str, str, str, str]]:
    """(phase, run, model, dataset role) of the seed study that these dataset roles allow."""
    runs = [("phase1", "baseline", "cnn_baseline", "main"), ("phase2", "slim", "cnn_slim", "main"),
            ("phase3", "regularized", "cnn_regularized", "main")]
    if "transfer" in roles:
        runs += [("phase4", "cnn_head", "cnn_regularized", "transfer"),
                 ("phase4", "cnn_last_conv", "cnn_regularized", "transfer")]
    if "transfer3" in roles:
        runs += [("phase4", "cnn_new_head", "cnn_regularized", "transfer3")]
        runs += [("phase4", model, model, "transfer3") for model in ("resnet50", "mobilenet_v2", "efficientnet_b0")]
    return runs


def measure(folders: dict, size: int, log: Callable[[str], None]) -> dict[str, tuple[int, float]]:
    """Each model's seconds per training image, by model: (the size measured at, seconds)."""
    size = min(size, MEASURED_AT)
    from ..training.runtime import tune_runtime

    tune_runtime()  # the allocator and threads a study trains with
    models = list(dict.fromkeys(model for _, _, model, _ in plan_runs(set(folders))))
    log(f"measuring one training step of each model at {size} px on this machine: {', '.join(models)}")
    classes = max(len(folder.classes) for folder in folders.values())
    return {model: (size, step_seconds(model, classes, size)) for model in models}


def run_seconds(model: str, per_class: list[int], size: int, epochs: int, limit: int | None,
                measured: dict[str, tuple[int, float]]) -> float:
    """A run's estimated wall-clock: training images (about 70 %) each epoch, plus a third of that
    again for its evaluation passes (validation, the verdict's train sample), which run forward only."""
    at, seconds = measured[model]
    images = sum(min(count, limit) if limit else count for count in per_class) * 0.7
    return epochs * images * seconds * (size / at) ** 2 * (1 + 1 / 3)


def estimate(folders: dict, size: int, limit: int | None, measured: dict) -> dict[str, float]:
    """Seconds per run (the cnn_head sweep: its 16 trials and 3 + 3 confirmation repeats)."""
    found = {}
    for phase, name, model, role in plan_runs(set(folders)):
        copies = 16 + 6 if name == "cnn_head" else 1
        found[f"{phase}/{name}"] = copies * run_seconds(model, folders[role].per_class, size, SEED_EPOCHS[name],
                                                        limit if role == "main" else None, measured)
    return found


def fit_limit(folders: dict, size: int, hours: float | None, measured: dict) -> tuple[int | None, float, str]:
    """limit_per_class for phases 1-3, the estimated seconds, and why."""
    every = estimate(folders, size, None, measured)
    total = sum(every.values())
    if hours is None or total <= hours * 3600:
        budget = "" if hours is None else f", within the {hours:g} h asked for"
        return None, total, f"every image is used{budget}"
    main_runs = sum(seconds for run, seconds in every.items() if not run.startswith("phase4"))
    room = hours * 3600 - (total - main_runs)
    largest = max(folders["main"].per_class)
    limit = max(FEWEST_PER_CLASS, int(largest * max(room, 0) / main_runs))
    if limit >= largest:  # the floor limits nothing in a folder this small
        return None, total, "every image is used (a limit would not cut this folder)"
    fitted = sum(estimate(folders, size, limit, measured).values())
    return limit, fitted, (f"at most {limit} images per class in phases 1-3, to fit the {hours:g} h asked for "
                           f"(with every image: about {total / 3600:.1f} h)")


def fit_budget(folders: dict, size: int, hours: float | None, measured: dict) -> tuple[int, int | None, float, str]:
    """The image size, limit_per_class (with why) and estimated seconds: every image at `size` where
    that fits `hours`; else fewer images per class, then a smaller size."""
    for smaller in [size] + [s for s in SMALLER_SIZES if s < size]:
        limit, seconds, limit_why = fit_limit(folders, smaller, hours, measured)
        if hours is None or seconds <= hours * 3600:
            break
    return smaller, limit, seconds, limit_why


def leave_out(per_run: dict[str, float], hours: float) -> list[str]:
    """The phase-4 runs to leave out, the longest first, until the rest fits `hours` (phases 1-3 stay)."""
    left: list[str] = []
    for run in sorted((r for r in per_run if r.startswith("phase4")), key=per_run.get, reverse=True):
        if sum(s for r, s in per_run.items() if r not in left) <= hours * 3600:
            break
        left.append(run)
    return left


def duration(seconds: float) -> str:
    """"1.9 h", "12 min", "under a minute": as a person reads an estimate."""
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else "under a minute"


def outcome_lines(per_run: dict[str, float], hours: float | None, limit: int | None, size: int,
                  left: list[str], without: set[str] = frozenset()) -> list[str]:
    """What the budget came to, for the terminal: the estimate, a cut that leaves too little to tell
    models apart, and where even the smallest study does not fit, the runs `left` out (leave_out;
    `without`: runs out already, whose weights cannot be had)."""
    total = sum(per_run.values())
    cut = f"phases 1-3 on {limit} images a class at {size} px" if limit else f"every image at {size} px"
    lines = [f"estimated {duration(total)} on this machine ({cut})"]
    if limit is not None and limit < TOO_FEW_PER_CLASS:
        lines.append(f"note: {limit} images a class leave phases 1-3 about {max(1, round(limit * 0.15))} test "
                     "images a class, too few to tell the models apart; ask for more hours for a study that can")
    if hours is None or total <= hours * 3600:
        return lines
    rest = sum(s for r, s in per_run.items() if r not in left and r not in without)
    lines[0] = f"cannot fit {hours:g} h: the smallest study here is about {duration(total)} ({cut})"
    longest = ", ".join(f"{run} {duration(per_run[run])}" for run in left)
    fits = "" if rest <= hours * 3600 else "; more than asked for: ask for more hours, or a GPU"
    lines.append(f"to come near {hours:g} h, leave out {longest}: about {duration(rest)}{fits}" if left else
                 f"the rest takes about {duration(rest)}{fits}")
    return lines
