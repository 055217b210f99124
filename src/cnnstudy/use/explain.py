"""Why a run predicts what it predicts: class activation maps (the `grad-cam` package,
pytorch-grad-cam) of a finished run's model, on the layer its spec declares (`cam_layer`).

The model explains itself exactly as it predicts: eval mode (BatchNorm statistics, no Dropout), the
run's own resize and normalization, its precision. Maps come out at the model's input size with
values in [0, 1] and are resized (bilinear) onto each image's own pixels: the whole image, or the
centre crop a timm model evaluates, so that they lie where the model looked. Images are explained in batches; an unreadable file gets an error in its row.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from PIL import Image

from ..config import StudyError
from ..data.sources import open_image_file
from ..fileio import atomic_write_bytes, atomic_write_text
from ..models.explain import METHODS, class_activation_maps
from ..report.plots import plot_explanation
from .inference import LoadedRun, image_files

def cam_maps(run: LoadedRun, batch: np.ndarray, targets: list[int], method: str = "gradcam") -> np.ndarray:
    """(N, S, S) float32 maps in [0, 1] of a (N, S, S, 3) uint8 batch at the run's image size, for the
    class index each image is explained for."""
    try:
        return class_activation_maps(run.model, run.metrics["model"], run.inputs(batch), targets, run.device,
                                     run.precision, method)
    except ValueError as err:  # the model declares no target layer
        raise StudyError(str(err)) from None
    except (AttributeError, KeyError, RuntimeError, TypeError) as err:  # a layer whose output is not maps
        raise StudyError(f"Grad-CAM is not supported for {run.metrics['model']}: {type(err).__name__}: {err}") from None


def on_image(cam_map: np.ndarray, height: int, width: int,
             window: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """A map on an image's own height x width (bilinear), still float32 in [0, 1]: over the whole image,
    or, for a run that evaluates a centre crop, over the crop's `window` (left, top, right, bottom in
    the image's pixels), zero outside it."""
    if window is None:
        window = (0, 0, width, height)
    left, top = round(window[0]), round(window[1])
    size = (max(1, round(window[3]) - top), max(1, round(window[2]) - left))
    resized = torch.nn.functional.interpolate(torch.from_numpy(cam_map)[None, None], size=size,
                                              mode="bilinear", align_corners=False)[0, 0].clamp(0, 1).numpy()
    canvas = np.zeros((height, width), np.float32)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + size[0], height), min(left + size[1], width)
    canvas[y0:y1, x0:x1] = resized[y0 - top:y1 - top, x0 - left:x1 - left]
    return canvas


def inputs_with_outputs(paths: Iterable[str | Path]) -> list[tuple[Path, Path]]:
    """(image file, where its outputs go relative to --out, before their own suffix), each file once.
    Outputs mirror the inputs' paths below the folder they all share (a folder argument keeps its own
    name, a file its folder's), and keep the image's suffix (cat.jpg -> cat.jpg.png): a/cat.jpg,
    b/cat.jpg, a/cat.png and two folders both called imgs never write to one file."""
    found: dict[Path, Path] = {}
    for arg in map(Path, paths):  # predict's own file search, argument by argument
        for file in image_files([arg]):
            found.setdefault(Path(os.path.normpath(file.absolute())), file)  # `..` resolved: nothing lands outside
    if not found:
        return []
    roots = [Path(os.path.normpath(Path(p).absolute())).parent for p in paths]  # a folder argument keeps its name
    common = Path(os.path.commonpath(roots))
    return [(file, absolute.relative_to(common)) for absolute, file in found.items()]


def target_index(run: LoadedRun, target: str, predicted: int, file: Path) -> int:
    if target == "predicted":
        return predicted
    name = file.parent.name if target == "true" else target
    if name not in run.classes:
        raise ValueError(f"{'its folder ' + repr(name) if target == 'true' else repr(name)} is not one of the "
                         f"run's classes ({', '.join(run.classes)})")
    return run.classes.index(name)


def explain_images(run: LoadedRun, paths: Iterable[str | Path], out: Path, method: str = "gradcam",
                   target: str = "predicted", save_maps: bool = False, batch_size: int = 16) -> list[dict]:
    """An overlay PNG per image (and with `save_maps` the map as .npy), mirrored under `out`, and
    explanations.csv; returns the rows (file, class, confidence, explained, overlay, map, error)."""
    if method not in METHODS:
        raise StudyError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
    jobs, rows = inputs_with_outputs(paths), []
    for start in range(0, len(jobs), batch_size):
        rows += _explain_batch(run, jobs[start:start + batch_size], out, method, target, save_maps)
    write_table(out / "explanations.csv", rows)
    return rows


def _explain_batch(run: LoadedRun, jobs: list[tuple[Path, Path]], out: Path, method: str, target: str,
                   save_maps: bool) -> list[dict]:
    rows, ready = [], []
    for file, rel in jobs:
        row = {"file": str(file), "class": None, "confidence": None, "explained": None, "overlay": None,
               "map": None, "error": None}
        rows.append(row)
        try:
            image = open_image_file(file)
            ready.append((row, file, rel, image, run.pixels(image)))
        except Exception as err:  # noqa: BLE001 - one bad file never stops the others
            row["error"] = f"{type(err).__name__}: {err}"
    if not ready:
        return rows
    pixels = np.stack([item[4] for item in ready])
    probs = run.probabilities(pixels)
    wanted = []
    for (row, file, _, _, _), p in zip(ready, probs):
        try:
            wanted.append(target_index(run, target, int(p.argmax()), file))
        except ValueError as err:  # no map for this image; the batch still needs a class to run
            row["error"] = str(err)
            wanted.append(int(p.argmax()))
    maps = cam_maps(run, pixels, wanted, method)
    for (row, file, rel, image, _), p, k, cam_map in zip(ready, probs, wanted, maps):
        if row["error"] is None:
            _write_outputs(row, run, image, out / rel, p, k,
                           on_image(cam_map, image.height, image.width, run.crop_window(image)), save_maps)
    return rows


def _write_outputs(row: dict, run: LoadedRun, image: Image.Image, stem: Path, p: np.ndarray, k: int,
                   cam_map: np.ndarray, save_maps: bool) -> None:
    predicted = int(p.argmax())
    row.update({"class": run.classes[predicted], "confidence": float(p[predicted]), "explained": run.classes[k],
                "overlay": str(_with(stem, ".png"))})
    title = f"Pred: {run.classes[predicted]} ({p[predicted] * 100:.1f}%)" + \
        ("" if k == predicted else f", map for {run.classes[k]}")
    plot_explanation(np.asarray(image), cam_map, title, _with(stem, ".png"))
    if save_maps:
        buffer = io.BytesIO()
        np.save(buffer, cam_map)
        atomic_write_bytes(_with(stem, ".npy"), buffer.getvalue())
        row["map"] = str(_with(stem, ".npy"))


def _with(stem: Path, suffix: str) -> Path:
    """`stem` (an image's mirrored name, suffix and all) with an output suffix added: cat.jpg.png."""
    return stem.with_name(stem.name + suffix)


def write_table(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["file", "class", "confidence", "explained", "overlay", "map", "error"],
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows({**r, "confidence": "" if r["confidence"] is None else f"{r['confidence']:.6f}"} for r in rows)
    atomic_write_text(path, buffer.getvalue())
