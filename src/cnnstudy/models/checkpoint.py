"""Checkpoints: saved atomically, loaded with weights_only=True, checked against the run they go
into; and a run's training state (last.pt / best.pt / history.jsonl), saved after every epoch and
restored on resume.

What fit writes after each epoch, in this order, so that a kill at any instant leaves files that
agree: history.jsonl (the rows so far), then last.pt (which claims that epoch), then best.pt when
the epoch improved. A resumed run trusts last.pt and rewrites the other two from it.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..fileio import atomic_torch_save, write_jsonl


class CheckpointError(ValueError):
    """A checkpoint or weights file that cannot be used as asked."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    atomic_torch_save(state, path)


def load_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with weights_only=True: tensors and plain data only, never arbitrary code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path or the run it names")
    if path.suffix == ".safetensors":  # what timm and the Hugging Face Hub hand out: tensors only by design
        return _load_safetensors(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refusing to load {path}: it holds objects other than tensors and plain data, which "
            f"could run code on load ({str(err).splitlines()[0]}). Re-save it as a plain state_dict "
            "from code you trust") from None
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"{path} is not a readable torch checkpoint ({err}); "
                              "it may be truncated: re-run the run that wrote it") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state_dict or checkpoint")
    return state


def _load_safetensors(path: Path) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file ({err}); "
                              "it may be truncated: fetch or save it again") from None


def check_same_split(ckpt: dict[str, Any], dataset: str, split_digest: str, source: str) -> None:
    """A checkpoint trained on another split of the same dataset has seen some of this split's
    validation and test images; starting from it would inflate every score."""
    if ckpt.get("dataset") == dataset and ckpt.get("split_digest") not in (None, split_digest):
        raise CheckpointError(
            f"{source} was trained on another split of {dataset}, so some of this run's validation and "
            "test images were among its training images. Use the same data.split and "
            "data.limit_per_class as the run that made it, or start from a checkpoint of another dataset")


# What a checkpoint must share with the run that resumes it; the fingerprint covers config,
# split and inputs, the others catch a model assembled differently from the same config.
RESUME_KEYS = ("fingerprint", "split_digest", "model_name", "class_names", "trainable_names")
TRAINING_PARTS = ("schedule", "warmup", "ema")  # what last.pt may hold besides optimizer and scaler


@dataclass
class FitState:
    """What a run needs to resume exactly: the epoch reached, the history so far, the best val acc."""
    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    best_val_acc: float = -1.0
    best_epoch: int = 0
    diverged: dict | None = None  # {"epoch", "train_loss", "limit"} when training blew up (not resumed)
    stopped: dict | None = None  # {"reason": "early_stopping", "epoch", "best_epoch", "metric"}


def resume_state(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, meta: dict[str, Any], write: bool = True,
                 extras: dict[str, Any] | None = None) -> FitState:
    """Pick up after the last completed epoch, if a previous attempt left last.pt behind. `write`:
    this process may repair the files (rank 0 only, under data parallelism). `extras`: other
    objects with a state_dict (schedule, moving average), restored from their keys."""
    last = run_dir / "last.pt"
    if not last.exists():
        return FitState()
    ckpt = load_checkpoint_file(last)
    for key in RESUME_KEYS:
        if ckpt.get(key) != meta.get(key):
            raise CheckpointError(f"{last} was saved with another {key} ({_short(ckpt.get(key))}, now "
                                  f"{_short(meta.get(key))}); resuming would mix two different runs. "
                                  "Add --force to start the run again")
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    for key, part in (extras or {}).items():
        if key not in ckpt:
            raise CheckpointError(f"{last} holds no {key} state; resuming would not continue the same run. "
                                  "Add --force to start the run again")
        part.load_state_dict(ckpt[key])
    state = FitState(ckpt["epoch"], list(ckpt["history"]), ckpt["best_val_acc"], ckpt.get("best_epoch", 0))
    if write:
        _repair_after_kill(run_dir, ckpt, state)
    return state


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


def _repair_after_kill(run_dir: Path, ckpt: dict, state: FitState) -> None:
    """last.pt is the truth: drop history rows of an epoch it does not claim, and write best.pt if a
    kill came between last.pt and the best.pt of the same epoch."""
    write_jsonl(run_dir / "history.jsonl", state.history)
    best = run_dir / "best.pt"
    if state.best_epoch == state.epoch and (not best.exists() or
                                            load_checkpoint_file(best).get("epoch") != state.epoch):
        kept = {k: v for k, v in ckpt.items() if k not in ("optimizer", "scaler", "history", *TRAINING_PARTS)}
        if "ema" in ckpt:  # the averaged weights are the ones evaluated and kept
            kept["model"] = averaged_weights(ckpt["ema"])
        save_checkpoint(best, kept)


def averaged_weights(ema_state: dict) -> dict:
    """The model's weights inside an AveragedModel's state_dict (its `module.` entries)."""
    return {key.removeprefix("module."): value for key, value in ema_state.items() if key.startswith("module.")}


def _cpu(state: dict) -> dict:
    return {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in state.items()}


def save_epoch(run_dir: Path, model, optimizer, scaler, state: FitState, meta: dict, improved: bool,
               extras: dict[str, Any] | None = None, evaluated: torch.nn.Module | None = None) -> None:
    """After an epoch: history.jsonl first, then last.pt (which claims the epoch), then best.pt if it
    improved, so that a kill at any instant leaves files that agree (resume_state repairs the rest).
    best.pt holds the `evaluated` model's weights (the moving average, where there is one)."""
    weights = _cpu(model.state_dict())
    ckpt = {**meta, "model": weights, "epoch": state.epoch, "best_val_acc": state.best_val_acc,
            "best_epoch": state.best_epoch}
    write_jsonl(run_dir / "history.jsonl", state.history)
    parts = {key: _cpu(part.state_dict()) for key, part in (extras or {}).items()}
    save_checkpoint(run_dir / "last.pt", {**ckpt, "optimizer": optimizer.state_dict(),
                                          "scaler": scaler.state_dict(), "history": state.history, **parts})
    if improved:
        kept = weights if evaluated is None or evaluated is model else _cpu(evaluated.state_dict())
        save_checkpoint(run_dir / "best.pt", {**ckpt, "model": kept})


