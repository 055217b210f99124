"""The training loop as plain functions returning flat dicts: train_one_epoch, evaluate, fit.

What fit writes after each epoch, in this order, so that a kill at any instant leaves files that
agree: history.jsonl (the rows so far), then last.pt (which claims that epoch), then best.pt when
the epoch improved. A resumed run trusts last.pt and rewrites the other two from it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .checkpoint import CheckpointError, load_checkpoint_file, save_checkpoint
from .devices import autocast, grad_scaler
from .fileio import read_jsonl, write_jsonl
from .freeze import set_train_mode
from .metrics import epoch_line
from .seeds import derive_seed

# What a checkpoint must share with the run that resumes it; the fingerprint covers config,
# split and inputs, the others catch a model assembled differently from the same config.
RESUME_KEYS = ("fingerprint", "split_digest", "model_name", "class_names", "trainable_names")


class NonFiniteLossError(RuntimeError):
    """Training diverged; the last good checkpoint is kept."""


def _to_device(images: torch.Tensor, labels: torch.Tensor, device: torch.device):
    images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    return images, labels.to(device, non_blocking=True)


def train_one_epoch(model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer,
                    criterion: nn.Module, device: torch.device, desc: str = "train",
                    precision: str = "fp32", scaler: torch.amp.GradScaler | None = None) -> dict[str, float]:
    set_train_mode(model)
    scaler = scaler or grad_scaler(device, precision)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for images, labels, _ in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True):
        images, labels = _to_device(images, labels, device)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, precision):
            logits = model(images)
            loss = criterion(logits.float(), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        # Accumulated on the device: no .item() sync per step.
        loss_sum += loss.detach() * labels.numel()
        correct += (logits.argmax(1) == labels).sum()
        seen += labels.numel()
    mean_loss = (loss_sum / max(seen, 1)).item()
    if not np.isfinite(mean_loss):
        raise NonFiniteLossError(f"training loss became {mean_loss}; lower train.lr (the last good "
                                 "checkpoint is kept in last.pt/best.pt)")
    return {"train_loss": mean_loss, "train_acc": correct.item() / max(seen, 1)}


@torch.inference_mode()
def predict(model: nn.Module, loader: Iterable, device: torch.device,
            precision: str = "fp32") -> dict[str, np.ndarray]:
    """Class probabilities, targets and dataset indices for every item of `loader`, in order."""
    model.eval()
    probs, targets, indices = [], [], []
    for images, labels, index in loader:
        images, labels = _to_device(images, labels, device)
        with autocast(device, precision):
            logits = model(images)
        probs.append(torch.softmax(logits.float(), 1).cpu())
        targets.append(labels.cpu())
        indices.append(index.cpu() if isinstance(index, torch.Tensor) else torch.as_tensor(index))
    return {"probs": torch.cat(probs).numpy(), "targets": torch.cat(targets).numpy(),
            "indices": torch.cat(indices).numpy()}


def evaluate(model: nn.Module, loader: Iterable, device: torch.device, precision: str = "fp32") -> dict[str, Any]:
    """Loss and accuracy of `loader`, plus the raw predictions they were computed from."""
    out = predict(model, loader, device, precision)
    picked = out["probs"][np.arange(len(out["targets"])), out["targets"]]
    out["loss"] = float(-np.log(np.clip(picked, 1e-12, None)).mean())
    out["acc"] = float((out["probs"].argmax(1) == out["targets"]).mean())
    return out


@dataclass
class FitState:
    """What a run needs to resume exactly: the epoch reached, the history so far, the best val acc."""
    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    best_val_acc: float = -1.0
    best_epoch: int = 0


def resume_state(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, meta: dict[str, Any]) -> FitState:
    """Pick up after the last completed epoch, if a previous attempt left last.pt behind."""
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
    state = FitState(ckpt["epoch"], list(ckpt["history"]), ckpt["best_val_acc"], ckpt.get("best_epoch", 0))
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
        save_checkpoint(best, {k: v for k, v in ckpt.items() if k not in ("optimizer", "scaler", "history")})


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, train_loader, val_loader, device: torch.device,
        epochs: int, run_dir: Path, meta: dict[str, Any], seed: int = 0, log=print,
        precision: str = "fp32", train_eval_loader=None, on_epoch: Callable[[dict], None] | None = None) -> FitState:
    """Train for `epochs`, writing history.jsonl, last.pt and best.pt (by val acc) after every epoch.

    With `train_eval_loader` (un-augmented training images), each row also holds train_eval_loss and
    train_eval_acc, measured in eval mode like the validation numbers they are compared with.
    `on_epoch` receives each row once its files are written (experiment tracking)."""
    criterion = nn.CrossEntropyLoss()
    scaler = grad_scaler(device, precision)
    state = resume_state(run_dir, model, optimizer, scaler, meta)
    if state.epoch:
        log(f"resuming {run_dir} after epoch {state.epoch}/{epochs}")
    for epoch in range(state.epoch + 1, epochs + 1):
        # Each purpose has its own stream, keyed by epoch: a resumed run draws what an uninterrupted one would.
        torch.manual_seed(derive_seed(seed, "dropout", epoch))
        train_loader.set_epoch(epoch)
        started = time.perf_counter()
        row = {"epoch": epoch, **train_one_epoch(model, train_loader, optimizer, criterion, device,
                                                  f"epoch {epoch}/{epochs}", precision, scaler)}
        if train_eval_loader is not None:
            seen = evaluate(model, train_eval_loader, device, precision)
            row.update(train_eval_loss=seen["loss"], train_eval_acc=seen["acc"], train_eval_n=len(seen["targets"]))
        val = evaluate(model, val_loader, device, precision)
        row.update(val_loss=val["loss"], val_acc=val["acc"], seconds=time.perf_counter() - started)
        state.history.append(row)
        state.epoch = epoch
        improved = row["val_acc"] > state.best_val_acc
        if improved:
            state.best_val_acc, state.best_epoch = row["val_acc"], epoch
        _save_epoch(run_dir, model, optimizer, scaler, state, meta, improved)
        log(epoch_line(row, epochs))
        if on_epoch is not None:
            on_epoch(row)
    return state


def _save_epoch(run_dir: Path, model, optimizer, scaler, state: FitState, meta: dict, improved: bool) -> None:
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    ckpt = {**meta, "model": weights, "epoch": state.epoch, "best_val_acc": state.best_val_acc,
            "best_epoch": state.best_epoch}
    write_jsonl(run_dir / "history.jsonl", state.history)
    save_checkpoint(run_dir / "last.pt", {**ckpt, "optimizer": optimizer.state_dict(),
                                          "scaler": scaler.state_dict(), "history": state.history})
    if improved:
        save_checkpoint(run_dir / "best.pt", ckpt)


def read_history(run_dir: Path) -> list[dict]:
    return read_jsonl(run_dir / "history.jsonl")
