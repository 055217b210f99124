"""Using a finished run: `load_run` gives its config, metrics, history and model; `predict` applies
it to new images with the run's own classes, image size, normalization and precision, through the
same arithmetic its evaluation used (resize to uint8 like the decode-once cache, then normalize on
the device), so that predicting the run's own test images reproduces its predictions.npz.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..models.checkpoint import load_checkpoint_file
from ..config import StudyError
from ..data.cache import crop_window, resized_pixels
from ..data.layout import IMAGE_EXTENSIONS
from ..data.sources import open_image_file, to_rgb
from ..data.transforms import normalize
from ..training.devices import autocast, resolve_device
from ..fileio import read_json, read_jsonl
from ..models.registry import create_model
from ..runner.results.records import read_run, study_runs
from ..runner.planning.repeats import best_fold, best_repeat


def resolve_run_dir(path: str | Path, run: str | None = None, flag: str = "run=") -> Path:
    """A run folder from a run folder, a repeated run's folder (its best repeat), or a study folder + run.
    `flag`: how the caller names the run argument in a message (`--run` on the command line)."""
    path = Path(path)
    if (path / "study.yaml").exists():
        runs = [f"{phase['name']}/{entry['name']}" for phase, entry in study_runs(path)]
        if not run or run not in runs:
            close = difflib.get_close_matches(run or "", runs, n=1)
            pick = close[0] if close else runs[-1]
            example = f"{flag} {pick}" if flag.startswith("--") else f'{flag}"{pick}"'
            what = f"has no run {run!r}" if run else "is a study folder; name the run too"
            hint = "did you mean" if close else "e.g."
            raise StudyError(f"{path} {what}, {hint} {example}; its runs: {', '.join(runs)}")
        path = path / run
    if (path / "metrics.json").exists():
        return _model_folder(path)
    finished = sorted((m.parent for m in path.glob("r[0-9]*/metrics.json")), key=lambda d: int(d.name[1:]))
    if finished:  # the repeat with the best validation accuracy, as init_from uses
        return _model_folder(best_repeat(finished))
    raise StudyError(f"{path} is not a finished run folder (no metrics.json); pass runs/<study>/<phase>/<run>, "
                     "or a study folder with --run <phase>/<run>")


def _model_folder(path: Path) -> Path:
    """A k-fold run is k models: its pooled folder stands for the fold with the best validation accuracy."""
    folds = read_json(path / "metrics.json").get("folds")
    return path / f"f{best_fold(path, folds['k'])}" if folds else path


def folded_choice(run_dir: Path, given: str | Path) -> str | None:
    """What to say when a k-fold run's best fold was chosen for the folder `given` (None when `given`
    was the fold's own folder, or the run has no folds)."""
    parent = run_dir.parent / "metrics.json"
    if Path(given).resolve() == run_dir.resolve() or run_dir.name[:1] != "f" or not parent.exists():
        return None
    pooled = read_json(parent)
    if not pooled.get("folds"):
        return None
    k, repeat = pooled["folds"]["k"], pooled.get("repeat")
    name = pooled["run"] + (f" (repeat r{repeat})" if repeat is not None else "")
    return (f"{name} is a {k}-fold run ({k} models); using its fold {run_dir.name}, the one with the best "
            f"validation accuracy (pass {run_dir} to name a fold yourself)")


def image_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, and every image file under folders (recursively, hidden entries skipped)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                            and not any(part.startswith(".") for part in p.relative_to(path).parts))
        else:
            found.append(path)
    return found


class LoadedRun:
    """A finished run, read from its folder: `.config`, `.metrics`, `.history`, `.classes`, `.model`."""

    def __init__(self, run_dir: Path, device: str = "cpu") -> None:
        metrics = read_json(run_dir / "metrics.json")
        record = read_run(run_dir, metrics["run"], metrics.get("repeat"))
        if record.metrics is None:
            raise StudyError(f"{run_dir}: {record.problem}")
        self.run_dir, self.config, self.metrics = run_dir, record.config, record.metrics
        self.history = read_jsonl(run_dir / "history.jsonl")
        checkpoint = load_checkpoint_file(run_dir / "best.pt")
        self.classes: list[str] = list(checkpoint["class_names"])
        self.stats = tuple(map(tuple, checkpoint["normalization"]))
        self.image_size: int = self.config["data"]["image_size"]
        self.resample: str = checkpoint.get("resample", "bilinear")  # the filter it was trained with
        self.crop_pct: float | None = checkpoint.get("crop_pct")  # evaluation's centre crop (a timm model's)
        self.device = resolve_device(device)
        # The run's own precision where it evaluated on this kind of device (the same numbers), else fp32.
        trained_on = torch.device(self.metrics.get("device", "cpu")).type
        self.precision = self.metrics.get("precision", "fp32") if self.device.type == trained_on else "fp32"
        self.model = create_model(checkpoint["model_name"], len(self.classes), image_size=self.image_size)
        self.model.load_state_dict(checkpoint["model"])
        self.model = self.model.to(self.device).to(memory_format=torch.channels_last).eval()
        # calibrate: true: logits are divided by the temperature fitted on the validation split.
        self.temperature: float = self.metrics.get("calibration", {}).get("temperature", 1.0)

    def pixels(self, image: Image.Image) -> np.ndarray:
        """One image as the cache stores it (uint8 HWC at the run's image size)."""
        return resized_pixels(to_rgb(image), self.image_size, self.resample, self.crop_pct)

    def crop_window(self, image: Image.Image) -> tuple[float, float, float, float] | None:
        """Where the model's input lies on `image` (left, top, right, bottom), for a run that evaluates
        a centre crop; None where it sees the whole image."""
        return None if self.crop_pct is None else crop_window(*image.size, self.image_size, self.crop_pct)

    def inputs(self, batch: np.ndarray) -> torch.Tensor:
        """A (N, H, W, 3) uint8 batch as the model's normalized float NCHW input, on the run's device."""
        writable = np.require(batch, requirements="W")  # a read-only array (the image cache) is copied, not warned about
        return normalize(torch.from_numpy(writable).to(self.device).permute(0, 3, 1, 2).float(), self.stats)

    @torch.inference_mode()
    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities of a (N, H, W, 3) uint8 batch."""
        images = self.inputs(batch).contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.precision):
            logits = self.model(images)
        return torch.softmax(logits.float() / self.temperature, 1).cpu().numpy()

    def predict(self, images: Iterable[str | Path | Image.Image], top_k: int = 3, batch_size: int | None = None,
                progress: bool = False) -> list[dict]:
        """One dict per image, in order: file, class, confidence, top_k [{class, probability}],
        probabilities, error. Folders are searched recursively; an unreadable file gets an error and
        no class, and never stops the others."""
        entries = list(_expand(images))
        rows: list[dict] = [{} for _ in entries]
        batch_size = batch_size or self.config["train"]["batch_size"]
        pending: list[tuple[int, np.ndarray]] = []
        for index, (name, item) in enumerate(tqdm(entries, desc="predicting", disable=not progress, leave=False,
                                                  dynamic_ncols=True)):
            try:
                pending.append((index, self.pixels(item if isinstance(item, Image.Image) else open_image_file(item))))
            except Exception as err:  # noqa: BLE001 - any undecodable file is reported, not fatal
                rows[index] = {"file": name, "class": None, "confidence": None, "top_k": [], "probabilities": [],
                               "error": f"{type(err).__name__}: {err}"}
            if len(pending) == batch_size or (pending and index == len(entries) - 1):
                probs = self.probabilities(np.stack([pixels for _, pixels in pending]))
                for (done, _), p in zip(pending, probs):
                    rows[done] = self._row(entries[done][0], p, top_k)
                pending = []
        return rows

    def _row(self, name: str, p: np.ndarray, top_k: int) -> dict:
        order = np.argsort(-p, kind="stable")[:top_k]
        return {"file": name, "class": self.classes[order[0]], "confidence": float(p[order[0]]),
                "top_k": [{"class": self.classes[k], "probability": float(p[k])} for k in order],
                "probabilities": p.tolist(), "error": None}


def _expand(images: Iterable[str | Path | Image.Image]):
    """(name, image or path) for every image given, folders expanded."""
    for position, item in enumerate(images):
        if isinstance(item, Image.Image):
            yield f"<image {position}>", item
        else:
            for path in image_files([item]):
                yield str(path), path


def load_run(path: str | Path, run: str | None = None, device: str = "cpu", flag: str = "run=") -> LoadedRun:
    """A finished run for notebooks: `load_run("runs/quick/phase3/regularized").predict(["cat.jpg"])`."""
    return LoadedRun(resolve_run_dir(path, run, flag), device)
