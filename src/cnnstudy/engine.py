"""The training loop as plain functions returning flat dicts: train_one_epoch, evaluate, fit."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .checkpoint import CheckpointError, load_checkpoint_file, save_checkpoint
from .fileio import read_jsonl, write_jsonl
from .freeze import set_train_mode


class NonFiniteLossError(RuntimeError):
    """Training diverged; the last good checkpoint is kept."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 in hardware (CUDA Ampere+, CPUs with AVX512-BF16 or AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return device.type == "cpu" and any(getattr(torch.cpu, p, lambda: False)() for p in probes)


def use_bf16(device: torch.device, precision: str) -> bool:
    # Emulated bf16 is several times slower than fp32 (measured ~8x on a CPU without it), so
    # "auto" turns it on only where the hardware has it; there it was ~1.8x faster (docs/benchmarks.md).
    return precision == "bf16" or (precision == "auto" and native_bf16(device))


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def _to_device(images: torch.Tensor, labels: torch.Tensor, device: torch.device):
    images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    return images, labels.to(device, non_blocking=True)


def train_one_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    criterion: nn.Module, device: torch.device, desc: str = "train",
                    bf16: bool = False) -> dict[str, float]:
    set_train_mode(model)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for images, labels, _ in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True):
        images, labels = _to_device(images, labels, device)
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, bf16):
            logits = model(images)
            loss = criterion(logits.float(), labels)
        loss.backward()
        optimizer.step()
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
def predict(model: nn.Module, loader: DataLoader, device: torch.device,
            bf16: bool = False) -> dict[str, np.ndarray]:
    """Class probabilities, targets and dataset indices for every item of `loader`, in order."""
    model.eval()
    probs, targets, indices = [], [], []
    for images, labels, index in loader:
        images, labels = _to_device(images, labels, device)
        with _autocast(device, bf16):
            logits = model(images)
        probs.append(torch.softmax(logits.float(), 1).cpu())
        targets.append(labels.cpu())
        indices.append(index)
    return {"probs": torch.cat(probs).numpy(), "targets": torch.cat(targets).numpy(),
            "indices": torch.cat(indices).numpy()}


def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, bf16: bool = False) -> dict[str, Any]:
    """Loss and accuracy of `loader`, plus the raw predictions they were computed from."""
    out = predict(model, loader, device, bf16)
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


def epoch_line(row: dict, epochs: int) -> str:
    return (f"Epoch [{row['epoch']}/{epochs}], Loss: {row['train_loss']:.4f}, "
            f"Accuracy: {row['train_acc'] * 100:.2f}% | Validation Loss: {row['val_loss']:.4f}, "
            f"Validation Accuracy: {row['val_acc'] * 100:.2f}%")


def resume_state(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                 meta: dict[str, Any]) -> FitState:
    """Pick up after the last completed epoch, if a previous attempt left last.pt behind."""
    last = run_dir / "last.pt"
    if not last.exists():
        return FitState()
    ckpt = load_checkpoint_file(last)
    for key in ("model_name", "class_names", "trainable_names"):
        if ckpt.get(key) != meta.get(key):
            raise CheckpointError(f"{last} was saved with another {key} ({ckpt.get(key)!r}, now "
                                  f"{meta.get(key)!r}); add --force to start the run again")
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    return FitState(ckpt["epoch"], list(ckpt["history"]), ckpt["best_val_acc"])


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, train_loader: DataLoader,
        val_loader: DataLoader, device: torch.device, epochs: int, run_dir: Path,
        meta: dict[str, Any], seed: int = 0, log=print, bf16: bool = False) -> FitState:
    """Train for `epochs`, writing history.jsonl, last.pt and best.pt (by val acc) after every epoch."""
    criterion = nn.CrossEntropyLoss()
    state = resume_state(run_dir, model, optimizer, meta)
    if state.epoch:
        log(f"resuming {run_dir} after epoch {state.epoch}/{epochs}")
    for epoch in range(state.epoch + 1, epochs + 1):
        # Seeding by epoch makes a resumed run draw exactly what an uninterrupted one would.
        torch.manual_seed(seed * 100_003 + epoch)
        if train_loader.generator is not None:
            train_loader.generator.manual_seed(seed * 100_003 + epoch)
        started = time.perf_counter()
        row = {"epoch": epoch, **train_one_epoch(model, train_loader, optimizer, criterion, device,
                                                  desc=f"epoch {epoch}/{epochs}", bf16=bf16)}
        val = evaluate(model, val_loader, device, bf16)
        row.update(val_loss=val["loss"], val_acc=val["acc"], seconds=time.perf_counter() - started)
        state.history.append(row)
        state.epoch = epoch
        improved = row["val_acc"] > state.best_val_acc
        state.best_val_acc = max(state.best_val_acc, row["val_acc"])
        _save_epoch(run_dir, model, optimizer, state, meta, improved)
        log(epoch_line(row, epochs))
    return state


def _save_epoch(run_dir: Path, model, optimizer, state: FitState, meta: dict, improved: bool) -> None:
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    ckpt = {**meta, "model": weights, "epoch": state.epoch, "best_val_acc": state.best_val_acc}
    if improved:
        save_checkpoint(run_dir / "best.pt", ckpt)
    save_checkpoint(run_dir / "last.pt", {**ckpt, "optimizer": optimizer.state_dict(),
                                          "history": state.history})
    write_jsonl(run_dir / "history.jsonl", state.history)


def read_history(run_dir: Path) -> list[dict]:
    return read_jsonl(run_dir / "history.jsonl")
