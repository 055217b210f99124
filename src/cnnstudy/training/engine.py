"""The training loop as plain functions returning flat dicts: train_one_epoch, evaluate, fit.

Checkpointing lives in checkpoint.py, logging and tracking in the `Loop`'s callables: the loop only
trains, measures and hands each epoch's row on. Under data parallelism (a `Dist` of more than one
process) the model is a DistributedDataParallel wrapper, the training totals are summed over ranks
and evaluation predictions are gathered, so that every number covers the whole split once.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..models.checkpoint import FitState, resume_state, save_epoch
from .calibration import nll
from .devices import autocast, grad_scaler
from .distributed import SINGLE, Dist
from ..fileio import read_jsonl
from ..models.freeze import set_train_mode
from .metrics import epoch_line
from .recipe import PLAIN, Recipe, step_schedule, track
from ..seeds import derive_seed


class NonFiniteLossError(RuntimeError):
    """Training diverged; the last good checkpoint is kept."""

    def __init__(self, message: str, loss: float = float("nan")) -> None:
        super().__init__(message)
        self.loss = loss


# A mean training loss this many times a uniform guess's (ln classes) is no training any more; but a
# healthy run with a high learning rate can start there and recover (a head-only fine-tune at lr 0.1
# on ants/bees: 46.4, 8.8, 1.3, 0.7 over its first epochs), so only a loss that stays above it and
# does not fall, or is not a number at all, is an explosion (docs/verdict.md); and so is a loss a
# thousand times that limit, however it moves (a recovering start sits within 10x of it).
DIVERGENCE_FACTOR, EXPLOSION = 10.0, 1000.0


def divergence(train_loss: float, num_classes: int, epoch: int, previous: float | None = None) -> dict | None:
    """What fit records when an epoch's training loss is non-finite, or above the limit for a second
    epoch running without falling (`previous`: the epoch before's), else None."""
    limit = DIVERGENCE_FACTOR * math.log(max(num_classes, 2))
    rising = previous is not None and previous > limit and train_loss > limit and train_loss >= previous
    if not np.isfinite(train_loss):
        reason = "not finite"
    elif train_loss > EXPLOSION * limit:
        reason = "exploded"
    elif rising:
        reason = "above the limit and rising"
    else:
        return None
    return {"epoch": epoch, "train_loss": float(train_loss), "limit": limit, "reason": reason}


def diverged_words(diverged: dict) -> str:
    why = {"not finite": "not a finite number",
           "exploded": f"over {EXPLOSION:g} x the limit of {DIVERGENCE_FACTOR:g} x ln(classes) = {diverged['limit']:.2f}"
           }.get(diverged.get("reason"), f"above {DIVERGENCE_FACTOR:g} x ln(classes) = {diverged['limit']:.2f} for a "
                                         "second epoch and not falling")
    return f"training diverged at epoch {diverged['epoch']}: loss {diverged['train_loss']:.3g}, {why}; lower train.lr"


@dataclass
class Loop:
    """How a run trains: where, in what precision, for how long, with which seed, who writes."""
    device: torch.device
    epochs: int
    precision: str = "fp32"
    seed: int = 0
    dist: Dist = SINGLE
    log: Callable[[str], None] = print
    on_epoch: Callable[[dict], None] | None = None  # each epoch's row, once its files are written
    progress: bool = True  # per-batch progress bars (off in parallel workers)


def unwrap(model: nn.Module) -> nn.Module:
    """The model itself, inside a DistributedDataParallel wrapper or not."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _to_device(images: torch.Tensor, labels: torch.Tensor, device: torch.device):
    images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    return images, labels.to(device, non_blocking=True)


def train_one_epoch(model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer,
                    criterion: nn.Module, device: torch.device, desc: str = "train",
                    precision: str = "fp32", scaler: torch.amp.GradScaler | None = None,
                    dist: Dist = SINGLE, progress: bool = True, recipe: Recipe = PLAIN) -> dict[str, float]:
    """One pass over `loader`. Labels may be soft (mixup/cutmix: one row of class weights per
    image); accuracy then counts the class with the larger share."""
    set_train_mode(model)
    scaler = scaler or grad_scaler(device, precision)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = torch.zeros((), device=device, dtype=torch.long)
    clipped = [p for group in optimizer.param_groups for p in group["params"]] if recipe.grad_clip else None
    for images, labels, _ in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, disable=not (dist.main and progress)):
        images, labels = _to_device(images, labels, device)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, precision):
            logits = model(images)
            loss = criterion(logits.float(), labels)
        scaler.scale(loss).backward()
        if recipe.grad_clip is not None:
            scaler.unscale_(optimizer)  # clip the true gradients, not the loss-scaled ones
            nn.utils.clip_grad_norm_(clipped, recipe.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        if recipe.ema is not None:
            recipe.ema.update_parameters(unwrap(model))
        # Accumulated on the device: no .item() sync per step.
        count = labels.shape[0]
        loss_sum += loss.detach() * count
        correct += (logits.argmax(1) == (labels.argmax(1) if labels.ndim == 2 else labels)).sum()
        seen += count
    loss_sum, correct, seen = dist.all_sum(loss_sum, correct, seen)
    mean_loss = (loss_sum / seen.clamp(min=1)).item()
    if not np.isfinite(mean_loss):
        raise NonFiniteLossError(f"training loss became {mean_loss}; lower train.lr (the last good "
                                 "checkpoint is kept in last.pt/best.pt)", mean_loss)
    return {"train_loss": mean_loss, "train_acc": correct.item() / max(seen.item(), 1)}


@torch.inference_mode()
def predict(model: nn.Module, loader: Iterable, device: torch.device, precision: str = "fp32",
            dist: Dist = SINGLE) -> dict[str, np.ndarray]:
    """Logits (float32), class probabilities, targets and dataset indices of every item of `loader`
    (of every rank's shard, gathered and put back in index order under data parallelism)."""
    model.eval()
    logits_all, targets, indices = [], [], []
    for images, labels, index in loader:
        images, labels = _to_device(images, labels, device)
        with autocast(device, precision):
            logits = model(images)
        logits_all.append(logits.float().cpu())
        targets.append(labels.cpu())
        indices.append(index.cpu() if isinstance(index, torch.Tensor) else torch.as_tensor(index))
    logits = torch.cat(logits_all)
    out = {"logits": logits.numpy(), "probs": torch.softmax(logits, 1).numpy(), "targets": torch.cat(targets).numpy(),
           "indices": torch.cat(indices).numpy()}
    if dist.enabled:
        shards = dist.gather(out)
        out = {key: np.concatenate([shard[key] for shard in shards]) for key in out}
        order = np.argsort(out["indices"], kind="stable")
        out = {key: value[order] for key, value in out.items()}
    return out


def evaluate(model: nn.Module, loader: Iterable, device: torch.device, precision: str = "fp32",
             dist: Dist = SINGLE) -> dict[str, Any]:
    """Loss (the mean cross-entropy of the logits, as calibration's nll) and accuracy of `loader`,
    plus the raw predictions they were computed from."""
    out = predict(unwrap(model), loader, device, precision, dist)
    out["loss"] = nll(out["logits"], out["targets"])
    out["acc"] = float((out["probs"].argmax(1) == out["targets"]).mean())
    return out


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, loaders: dict, run_dir: Path, meta: dict[str, Any],
        loop: Loop, recipe: Recipe = PLAIN) -> FitState:
    """Train for `loop.epochs` (or until early stopping), writing history.jsonl, last.pt and best.pt
    (by `recipe.metric`) after every epoch; each row holds the epoch's learning rate.

    With loaders["train_eval"] (un-augmented training images), each row also holds train_eval_loss
    and train_eval_acc, measured in eval mode like the validation numbers they are compared with."""
    dist = loop.dist
    scaler = grad_scaler(loop.device, loop.precision)
    state = resume_state(run_dir, unwrap(model), optimizer, scaler, meta, write=dist.main, extras=recipe.stateful())
    if state.epoch:
        loop.log(f"resuming {run_dir} after epoch {state.epoch}/{loop.epochs}")
    stopped_at = track(state.history, recipe.metric, recipe.early_stopping).stop_epoch  # resumed after it stopped
    for epoch in range(state.epoch + 1, loop.epochs + 1):
        if stopped_at is not None:
            break
        row = _train_epoch(model, optimizer, loaders, loop, recipe, scaler, epoch)
        previous = state.history[-1]["train_loss"] if state.history else None
        state.diverged = divergence(row["train_loss"], len(meta["class_names"]), epoch, previous)
        if state.diverged:  # this epoch's weights are garbage: keep the files of the last good one
            loop.log(diverged_words(state.diverged))
            break
        evaluated = recipe.ema.module if recipe.ema is not None else unwrap(model)
        dist.sync_buffers(unwrap(model))  # BatchNorm statistics as rank 0 has them, on every rank
        if recipe.ema is not None:
            dist.sync_buffers(evaluated)
        row.update(_measure(evaluated, loaders, loop))
        row["seconds"] = time.perf_counter() - row.pop("started")
        state.history.append(row)
        progress = track(state.history, recipe.metric, recipe.early_stopping)
        stopped_at = progress.stop_epoch
        if stopped_at is not None:
            row["stopped"] = "early_stopping"
        state.epoch = epoch
        improved = progress.best_epoch == epoch
        if improved:
            state.best_val_acc, state.best_epoch = row["val_acc"], epoch
        # Stepped before last.pt is written, which so holds the next epoch's learning rate.
        step_schedule(recipe.schedule, recipe.warmup, epoch, loop.epochs, row["val_loss"])
        dist.on_main(lambda: save_epoch(run_dir, unwrap(model), optimizer, scaler, state, meta, improved,
                                        recipe.stateful(), evaluated))
        dist.barrier()
        loop.log(epoch_line(row, loop.epochs))
        if loop.on_epoch is not None:
            loop.on_epoch(row)
    if stopped_at is not None:
        state.stopped = {"reason": "early_stopping", "epoch": stopped_at, "best_epoch": state.best_epoch,
                         "metric": recipe.metric}
    return state


def _train_epoch(model: nn.Module, optimizer, loaders: dict, loop: Loop, recipe: Recipe, scaler, epoch: int) -> dict:
    """Epoch `epoch`'s training pass as a history row (its lr, when it started); a non-finite loss
    ends the pass and is recorded as the row's loss."""
    # Each purpose has its own stream, keyed by epoch: a resumed run draws what an uninterrupted one would.
    dist = loop.dist
    torch.manual_seed(derive_seed(loop.seed, "dropout", epoch, *([dist.rank] if dist.enabled else [])))
    loaders["train"].set_epoch(epoch)
    row = {"epoch": epoch, "started": time.perf_counter()}
    try:
        row.update(train_one_epoch(model, loaders["train"], optimizer, recipe.criterion, loop.device,
                                   f"epoch {epoch}/{loop.epochs}", loop.precision, scaler, dist, loop.progress,
                                   recipe))
    except NonFiniteLossError as err:
        row["train_loss"] = err.loss
    row["lr"] = optimizer.param_groups[0]["lr"]
    return row


def _measure(model: nn.Module, loaders: dict, loop: Loop) -> dict[str, float]:
    row: dict[str, float] = {}
    if "train_eval" in loaders:
        seen = evaluate(model, loaders["train_eval"], loop.device, loop.precision, loop.dist)
        row.update(train_eval_loss=seen["loss"], train_eval_acc=seen["acc"], train_eval_n=len(seen["targets"]))
    val = evaluate(model, loaders["val"], loop.device, loop.precision, loop.dist)
    row.update(val_loss=val["loss"], val_acc=val["acc"])
    return row


def read_history(run_dir: Path) -> list[dict]:
    return read_jsonl(run_dir / "history.jsonl")
