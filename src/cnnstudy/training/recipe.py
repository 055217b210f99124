"""A run's training recipe as torch objects: optimizer (torch.optim, no weight decay on
normalization layers and biases, as timm's and torchvision's references do), an epoch-wise learning
rate schedule (torch.optim.lr_scheduler, linear warmup first), the loss (class weights, label
smoothing), an exponential moving average of the weights (torch.optim.swa_utils) and early stopping.

Schedules step once per epoch, as torchvision's reference scripts do, so that a run resumed after
epoch k (their state is in last.pt) continues with the very learning rate an uninterrupted run has.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatch
from typing import Any, Callable, NamedTuple

import torch
from torch import nn
from torch.optim import lr_scheduler
from torch.optim.swa_utils import AveragedModel

from ..config import EarlyStopping, TrainConfig

WARMUP_START = 0.01  # warmup starts at lr / 100 (torchvision's reference: lr_warmup_decay 0.01)
DEFAULTS = {"momentum": 0.9, "min_lr": 0.0, "gamma": 0.1, "factor": 0.1, "patience": 2}


@dataclass
class Recipe:
    """What a run trains with besides the optimizer (training/recipe.py builds each part): the loss,
    the epoch-wise schedule (and plateau's warmup), the weights' moving average, which is what is
    evaluated and kept when present, gradient clipping and early stopping."""
    criterion: nn.Module = field(default_factory=nn.CrossEntropyLoss)
    schedule: Any = None
    warmup: Any = None
    ema: Any = None  # torch.optim.swa_utils.AveragedModel
    grad_clip: float | None = None
    early_stopping: Any = None  # config.EarlyStopping

    @property
    def metric(self) -> str:
        """What chooses best.pt: early stopping's metric, else val_acc."""
        return self.early_stopping.metric if self.early_stopping is not None else "val_acc"

    def stateful(self) -> dict[str, Any]:
        """The parts whose state last.pt keeps, by key."""
        parts = {"schedule": self.schedule, "warmup": self.warmup, "ema": self.ema}
        return {key: part for key, part in parts.items() if part is not None}


PLAIN = Recipe()


def make_recipe(train: TrainConfig, model: nn.Module, labels: list[int], num_classes: int,
                device: torch.device) -> tuple[torch.optim.Optimizer, Recipe]:
    """The optimizer and the rest of the recipe for `model` (already on `device`); `labels`: the
    training labels (balanced class weights)."""
    optimizer = build_optimizer(model, train)
    return optimizer, Recipe(build_criterion(train, labels, num_classes, device), build_schedule(optimizer, train),
                             plateau_warmup(optimizer, train), build_ema(model, train.ema), train.grad_clip,
                             train.early_stopping)


def setting(train: TrainConfig, key: str) -> Any:
    """A recipe key as set, or its default where the study leaves it out."""
    value = getattr(train, key)
    if value is not None:
        return value
    return max(1, train.epochs // 3) if key == "step_size" else DEFAULTS[key]


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters: without weight decay one group in the model's order (the order a
    last.pt's optimizer state is stored in); with it, weights in one group and, in another, what does
    not decay: normalization layers' parameters, biases and every 1-d parameter, and the names (or
    fnmatch patterns) a timm model lists in `no_weight_decay()` (a ViT's position embeddings and class
    token), as timm's `param_groups_weight_decay` spares them."""
    if weight_decay == 0:
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]
    listed = model.no_weight_decay() if callable(getattr(model, "no_weight_decay", None)) else ()
    norms = {id(p) for module in model.modules()
             if isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm))
             for p in module.parameters(recurse=False)}
    decay, spared = [], []
    for name, param in model.named_parameters():  # each shared parameter once, as named first
        if param.requires_grad:
            keep = id(param) in norms or param.ndim <= 1 or name.rpartition(".")[2] == "bias" or \
                any(fnmatch(name, pattern) for pattern in listed)
            (spared if keep else decay).append(param)
    return [group for group in ({"params": decay, "weight_decay": weight_decay},
                                {"params": spared, "weight_decay": 0.0}) if group["params"]]


def build_optimizer(model: nn.Module, train: TrainConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, train.weight_decay)
    # weight_decay=0 by default: AdamW's own default (0.01) would decay what the study says it does not.
    if train.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=train.lr, momentum=setting(train, "momentum"),
                               nesterov=bool(train.nesterov), weight_decay=0.0)
    if train.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=train.lr, momentum=setting(train, "momentum"), weight_decay=0.0)
    kind = torch.optim.AdamW if train.optimizer == "adamw" else torch.optim.Adam
    return kind(groups, lr=train.lr, weight_decay=0.0)


def build_schedule(optimizer: torch.optim.Optimizer, train: TrainConfig) -> lr_scheduler.LRScheduler | None:
    """The epoch-wise schedule after warmup (None for constant without warmup). Plateau is returned
    as is (it steps on val_loss, see step_schedule); the others are chained after the warmup."""
    warmup, epochs = train.warmup_epochs, train.epochs
    if train.schedule == "onecycle":  # its own warmup: the rising part of the cycle
        return lr_scheduler.OneCycleLR(optimizer, max_lr=train.lr, total_steps=epochs,
                                       pct_start=(onecycle_warmup(train) + 1) / epochs,
                                       final_div_factor=_final_div(train), cycle_momentum=train.momentum is None)
    if train.schedule == "plateau":
        return lr_scheduler.ReduceLROnPlateau(optimizer, factor=setting(train, "factor"),
                                              patience=setting(train, "patience"), min_lr=setting(train, "min_lr"))
    main = {"cosine": lambda: lr_scheduler.CosineAnnealingLR(optimizer, max(1, epochs - warmup),
                                                             eta_min=setting(train, "min_lr")),
            "step": lambda: lr_scheduler.StepLR(optimizer, setting(train, "step_size"), setting(train, "gamma")),
            "constant": lambda: None}[train.schedule]()
    if not warmup:
        return main
    ramp = lr_scheduler.LinearLR(optimizer, start_factor=WARMUP_START, total_iters=warmup)
    if main is None:
        return ramp
    return lr_scheduler.SequentialLR(optimizer, [ramp, main], milestones=[warmup])


def onecycle_warmup(train: TrainConfig) -> int:
    """Epochs before OneCycleLR's peak: warmup_epochs, or 30 % of the epochs (torch's pct_start),
    at least one, so that the peak falls on epoch warmup + 1 as with the other schedules."""
    return train.warmup_epochs or min(max(1, round(0.3 * train.epochs)), train.epochs - 2)


def _final_div(train: TrainConfig) -> float:
    """OneCycleLR ends at lr / 25 / final_div_factor: min_lr where set, else torch's lr / 2.5e5."""
    floor = setting(train, "min_lr")
    return 1e4 if floor == 0 else train.lr / 25 / floor


def plateau_warmup(optimizer: torch.optim.Optimizer, train: TrainConfig) -> lr_scheduler.LinearLR | None:
    """Plateau's warmup, stepped by hand: SequentialLR cannot chain ReduceLROnPlateau."""
    if train.schedule != "plateau" or not train.warmup_epochs:
        return None
    return lr_scheduler.LinearLR(optimizer, start_factor=WARMUP_START, total_iters=train.warmup_epochs)


def step_schedule(schedule, warmup, epoch: int, epochs: int, val_loss: float) -> None:
    """After epoch `epoch` (1-based): the next epoch's learning rate. The last epoch needs none
    (OneCycleLR refuses a step past its cycle)."""
    if epoch >= epochs:
        return
    if warmup is not None and epoch <= warmup.total_iters:
        warmup.step()
    elif isinstance(schedule, lr_scheduler.ReduceLROnPlateau):
        schedule.step(val_loss)
    elif schedule is not None:
        schedule.step()


def class_weight_tensor(train: TrainConfig, labels: list[int], num_classes: int) -> torch.Tensor | None:
    """Loss weights: balanced = n / (classes x n_class), as scikit-learn's; a list is taken as given."""
    if train.class_weights == "none":
        return None
    if train.class_weights == "balanced":
        counts = torch.bincount(torch.as_tensor(labels), minlength=num_classes).float()
        return len(labels) / (num_classes * counts.clamp(min=1))
    return torch.tensor(train.class_weights, dtype=torch.float32)


class CrossEntropy(nn.CrossEntropyLoss):
    """nn.CrossEntropyLoss whose class-weighted mean is the same for soft targets (mixup, cutmix) as
    for hard labels: torch divides a weighted batch of labels by the sum of the labels' weights but a
    batch of probabilities by its size. Here soft rows are divided by their weight mass,
    sum_i sum_c w_c t_ic, which is the labels' sum of weights for one-hot rows, so one-hot rows cost
    what their labels cost."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.weight is None or target.ndim == 1:
            return super().forward(logits, target)
        total = nn.functional.cross_entropy(logits, target, weight=self.weight, reduction="sum",
                                            label_smoothing=self.label_smoothing)
        return total / (target @ self.weight).sum()


def build_criterion(train: TrainConfig, labels: list[int], num_classes: int, device: torch.device) -> nn.Module:
    weight = class_weight_tensor(train, labels, num_classes)
    return CrossEntropy(weight=None if weight is None else weight.to(device), label_smoothing=train.label_smoothing)


EMA_WARMUP_POWER = 2 / 3  # timm's ModelEmaV3 warmup (warmup_gamma 1, warmup_power 2/3)


def ema_decay(decay: float, updates: int) -> float:
    """The decay of the EMA's update after `updates` earlier ones, as timm's ModelEmaV3 with warmup:
    min(decay, 1 - (1 + updates) ** -2/3). Without the warmup, decay 0.999 over 30 epochs of 9 steps
    leaves 76 % of the average at the first steps' weights; with it the average forgets its start
    (0.37 after one update, 0.95 after 100, 0.99 after 1,000)."""
    return min(decay, 1 - (1 + updates) ** -EMA_WARMUP_POWER)


def ema_update_fn(decay: float) -> Callable:
    """AveragedModel's multi_avg_fn for `decay` with timm's warmup (its n_averaged counts the updates)."""
    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], updates: torch.Tensor) -> None:
        step = ema_decay(decay, int(updates))
        if torch.is_floating_point(averaged[0]) or torch.is_complex(averaged[0]):
            torch._foreach_lerp_(averaged, current, 1 - step)
        else:  # integer buffers (BatchNorm's num_batches_tracked) are copied, as timm's ModelEmaV3 does
            for mean, value in zip(averaged, current, strict=True):
                mean.copy_(value)
    return update


def build_ema(model: nn.Module, decay: float | None) -> AveragedModel | None:
    """The weights' exponential moving average, buffers (BatchNorm statistics) included, with timm's warmup."""
    if decay is None:
        return None
    return AveragedModel(model, multi_avg_fn=ema_update_fn(decay), use_buffers=True)


def monitored(row: dict, metric: str) -> float:
    """A metric as "higher is better"."""
    return row[metric] if metric == "val_acc" else -row[metric]


class Progress(NamedTuple):
    """What the history says so far: the epoch best.pt holds, and the epoch training stops at (None: go on)."""
    best_epoch: int | None
    stop_epoch: int | None


def track(history: list[dict], metric: str = "val_acc", rule: EarlyStopping | None = None) -> Progress:
    """One tracker for both best.pt and early stopping, as Keras' EarlyStopping with
    restore_best_weights: an epoch improves when `metric` beats the best value so far by more than
    the rule's min_delta (by anything without a rule, the first of equal epochs staying best); the
    rule stops training after `patience` epochs in a row without an improvement."""
    min_delta = rule.min_delta if rule is not None else 0.0
    best, best_epoch, waited = None, None, 0
    for row in history:
        value = monitored(row, metric)
        if best is None or value > best + min_delta:
            best, best_epoch, waited = value, row["epoch"], 0
            continue
        waited += 1
        if rule is not None and waited >= rule.patience:
            return Progress(best_epoch, row["epoch"])
    return Progress(best_epoch, None)


def recipe_line(train: TrainConfig, augment: Any) -> str:
    """The recipe in one line, for the report's run section."""
    parts = [f"{train.optimizer} lr {train.lr:g}"]
    if train.momentum is not None or train.nesterov:
        parts[0] += f" (momentum {setting(train, 'momentum'):g}{', nesterov' if train.nesterov else ''})"
    if train.weight_decay:
        parts.append(f"weight decay {train.weight_decay:g}")
    if train.schedule != "constant" or train.warmup_epochs:
        details = {"step": f" (x{setting(train, 'gamma'):g} every {setting(train, 'step_size')} epochs)",
                   "plateau": f" (x{setting(train, 'factor'):g} after {setting(train, 'patience')} epochs without "
                              "a lower val_loss)"}.get(train.schedule, "")
        floor = f" to {train.min_lr:g}" if train.min_lr is not None else ""
        parts.append(f"{train.schedule} schedule{floor}{details}" + (f" after {train.warmup_epochs} warmup epochs"
                                                                      if train.warmup_epochs else ""))
    extras = {"label smoothing": train.label_smoothing or None, "gradient clip": train.grad_clip, "EMA": train.ema}
    parts += [f"{name} {value:g}" for name, value in extras.items() if value]
    if train.class_weights != "none":
        parts.append(f"class weights {train.class_weights}")
    if train.sampler != "none":
        parts.append("balanced sampler")
    if train.early_stopping is not None:
        rule = train.early_stopping
        delta = f", min_delta {rule.min_delta:g}" if rule.min_delta else ""
        parts.append(f"early stopping on {rule.metric} (patience {rule.patience}{delta})")
    return ", ".join(parts) + f"; augment {augment_words(augment)}"


def augment_words(augment: Any) -> str:
    """A policy name as is; parts as the policy and every part set away from its default."""
    if isinstance(augment, str):
        return augment
    parts = augment.model_dump(exclude_defaults=True)
    parts.pop("policy", None)
    return ", ".join([augment.policy] + [f"{key} {str(value).lower()}" for key, value in parts.items()])
