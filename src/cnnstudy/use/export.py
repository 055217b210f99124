"""Shipping a run's model: ONNX or TorchScript, with a dynamic batch dimension and a JSON sidecar
(classes, image size, mean/std), verified on export: the exported model, run by onnxruntime or
loaded back by torch.jit, must give the PyTorch model's outputs within 1e-4 on a batch of the run's
own test images, or the export fails and its file is deleted. ONNX needs `pip install 'cnnstudy[export]'`.
"""
from __future__ import annotations

import copy
import io
import warnings
from contextlib import contextmanager
from typing import Iterator
from pathlib import Path

import numpy as np
import torch

from ..config import StudyError
from ..data.sources import open_source
from ..data.splits import Split
from ..fileio import atomic_write_bytes, write_json
from .inference import LoadedRun

TOLERANCE = 1e-4
FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
VERIFY_IMAGES = 8


class ExportError(StudyError):
    """An export that could not be made or did not reproduce the model."""


def sample_batch(run: LoadedRun, count: int = VERIFY_IMAGES) -> torch.Tensor:
    """A normalized float batch of the run's own test (else val) images, as the model sees them."""
    split = Split.load(run.run_dir / "split.json")
    items = split.test or split.val
    source = open_source(split.dataset)
    picked = [items[i][0] for i in np.linspace(0, len(items) - 1, min(count, len(items))).astype(int)]
    return run.inputs(np.stack([run.pixels(source.open(item)) for item in picked])).cpu().contiguous()


class Tempered(torch.nn.Module):
    """The model with its logits divided by the run's fitted temperature (calibrate: true)."""

    def __init__(self, model: torch.nn.Module, temperature: float) -> None:
        super().__init__()
        self.model, self.temperature = model, temperature

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images) / self.temperature


def cpu_model(run: LoadedRun) -> torch.nn.Module:
    """The run's model in plain fp32 on the CPU (a copy: the loaded run keeps its device), its logits
    scaled by the run's temperature where it has one."""
    model = copy.deepcopy(run.model).cpu().to(memory_format=torch.contiguous_format).float().eval()
    return model if run.temperature == 1.0 else Tempered(model, run.temperature).eval()


def reference_logits(run: LoadedRun, batch: torch.Tensor) -> np.ndarray:
    model = cpu_model(run)
    with torch.inference_mode():
        return model(batch).numpy()


def exported_logits(path: Path, fmt: str, batch: torch.Tensor) -> np.ndarray:
    try:
        if fmt == "onnx":
            import onnxruntime

            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            return session.run(None, {session.get_inputs()[0].name: batch.numpy()})[0]
        with quiet_jit():
            module = torch.jit.load(str(path), map_location="cpu")
        with torch.inference_mode():
            return module(batch).numpy()
    except ImportError as err:
        raise ExportError(f"{fmt} export needs {err.name}: pip install 'cnnstudy[export]'") from None
    except Exception as err:  # noqa: BLE001 - a file that does not load is a failed export, whatever the cause
        raise ExportError(f"{path} does not load as {fmt} ({type(err).__name__}: {str(err)[:300]})") from None


def verify_export(path: Path, fmt: str, run: LoadedRun, batch: torch.Tensor | None = None) -> float:
    """Largest absolute logit difference to PyTorch on real images (two batch sizes); raises above 1e-4."""
    batch = sample_batch(run) if batch is None else batch
    reference = reference_logits(run, batch)
    differences = []
    for size in (len(batch), max(1, len(batch) // 2)):  # the batch dimension must really be dynamic
        got = exported_logits(path, fmt, batch[:size])
        if got.shape != reference[:size].shape:
            raise ExportError(f"{path} gives outputs of shape {got.shape} for a batch of {size}, "
                              f"expected {reference[:size].shape}")
        differences.append(np.abs(got - reference[:size]).max())
    worst = float(np.max(differences))  # NaN stays NaN (Python's max() would drop it) and fails below
    if not worst <= TOLERANCE:
        raise ExportError(f"{path} differs from the PyTorch model by {worst:.2e} (limit {TOLERANCE:g}) on "
                          f"{len(batch)} test images of the run; it was not kept")
    return worst


@contextmanager
def quiet_jit() -> Iterator[None]:
    """torch.jit's FutureWarning (it points to torch.export, which writes no file TorchScript users can
    load) and the tracer's warnings about Python values in a traced graph: not the user's business,
    since the export is verified against the model on real images whatever the tracer thought."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


def _serialize(model: torch.nn.Module, fmt: str, example: torch.Tensor) -> bytes:
    if fmt == "torchscript":
        buffer = io.BytesIO()
        with quiet_jit():
            torch.jit.save(torch.jit.trace(model, example, check_trace=False), buffer)
        return buffer.getvalue()
    try:
        import onnx  # noqa: F401 - torch.onnx needs it; say so before a long export
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ExportError(f"ONNX export needs {err.name}: pip install 'cnnstudy[export]'") from None
    program = torch.onnx.export(model, (example,), dynamo=True, input_names=["images"], output_names=["logits"],
                                dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
    return program.model_proto.SerializeToString()


def export_run(run: LoadedRun, fmt: str, out: Path | None = None) -> Path:
    """Write the model and its sidecar, verify the file, return its path (deleted again if it fails)."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    path = Path(out) if out else run.run_dir / f"model{FORMATS[fmt]}"
    batch = sample_batch(run)
    atomic_write_bytes(path, _serialize(cpu_model(run), fmt, batch[:2]))
    try:
        worst = verify_export(path, fmt, run, batch)
    except ExportError:
        path.unlink(missing_ok=True)
        raise
    write_json(path.with_name(path.name + ".json"), sidecar(run, fmt, worst))
    return path


def resized_words(run: LoadedRun) -> str:
    if run.crop_pct is None:
        return "resized to image_size x image_size"
    return (f"with its shorter side resized to floor(image_size / {run.crop_pct:g}), then centre-cropped to "
            "image_size x image_size")


def sidecar(run: LoadedRun, fmt: str, worst: float) -> dict:
    return {"format": fmt, "classes": run.classes, "image_size": run.image_size,
            "input": f"float32 NCHW, RGB {resized_words(run)} ({run.resample}), scaled to [0, 1], "
                     "then (x - mean) / std per channel; dynamic batch dimension",
            "mean": list(run.stats[0]), "std": list(run.stats[1]),
            "output": "logits, one per class" + ("" if run.temperature == 1.0 else
                                                 f", divided by the fitted temperature {run.temperature:.4f}"),
            "temperature": run.temperature,
            "model": run.metrics["model"], "run": run.metrics["run"], "fingerprint": run.metrics["fingerprint"],
            "repeat": run.metrics.get("repeat"), "fold": run.metrics.get("fold"),
            "verified": {"images": VERIFY_IMAGES, "max_abs_logit_difference": worst, "tolerance": TOLERANCE}}
