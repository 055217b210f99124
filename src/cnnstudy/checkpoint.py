"""Checkpoints: saved atomically, loaded with weights_only=True, checked against the model they go into."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

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


def load_matching_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> list[str]:
    """Copy `state` into `model`, where every tensor must match except the final head layer.

    A head of another size (10 classes -> 3) keeps the model's fresh layer; returns those keys.
    Anything else that differs means another architecture, which is refused with the keys listed.
    """
    from .models import head_module_names

    target = model.state_dict()
    head_prefix = head_module_names(model)[-1] + "."
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    resized = [k for k in target if k in state and state[k].shape != target[k].shape]
    kept_fresh = [k for k in resized if k.startswith(head_prefix)]
    bad_shapes = [k for k in resized if k not in kept_fresh]
    if missing or unexpected or bad_shapes:
        raise CheckpointError(_mismatch_message(model, source, missing, unexpected, bad_shapes, state, target))
    merged = {k: (target[k] if k in kept_fresh else v) for k, v in state.items()}
    model.load_state_dict(merged, strict=True)
    return kept_fresh


def _mismatch_message(model, source, missing, unexpected, bad_shapes, state, target) -> str:
    def few(keys: list[str]) -> str:
        return ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")

    lines = [f"{source} does not fit {model._get_name()}: it looks like another architecture."]
    if missing:
        lines.append(f"  missing in the checkpoint: {few(missing)}")
    if unexpected:
        lines.append(f"  not in the model: {few(unexpected)}")
    if bad_shapes:
        shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(target[k].shape)}" for k in bad_shapes]
        lines.append(f"  shape differs: {few(shapes)}")
    lines.append("  Point init_from/weights at a run of the same model, or change model.name to match it.")
    return "\n".join(lines)
