"""Checkpoints: saved atomically, loaded with weights_only=True, checked against the model they go into."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from .fileio import atomic_torch_save


class CheckpointError(ValueError):
    """A checkpoint or weights file that cannot be used as asked."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    atomic_torch_save(state, path)


def load_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with weights_only=True: tensors and plain data only, never arbitrary code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path or the run it names")
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


def check_same_split(ckpt: dict[str, Any], dataset: str, split_digest: str, source: str) -> None:
    """A checkpoint trained on another split of the same dataset has seen some of this split's
    validation and test images; starting from it would inflate every score."""
    if ckpt.get("dataset") == dataset and ckpt.get("split_digest") not in (None, split_digest):
        raise CheckpointError(
            f"{source} was trained on another split of {dataset}, so some of this run's validation and "
            "test images were among its training images. Use the same data.split and "
            "data.limit_per_class as the run that made it, or start from a checkpoint of another dataset")
