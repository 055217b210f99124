"""A run's training recipe as a study file says it: optimizer, schedule, loss, EMA, early stopping
(TrainConfig), the overfitting verdict's thresholds (VerdictConfig) and augmentation (AugmentConfig)."""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from .base import Strict, _none_word


class EarlyStopping(Strict):
    """Stop when `metric` has not improved by more than `min_delta` for `patience` epochs; the best
    epoch by that metric is the run's checkpoint (Keras' EarlyStopping with restore_best_weights)."""
    metric: Literal["val_loss", "val_acc"] = "val_loss"
    patience: int = Field(5, ge=1)
    min_delta: float = Field(0.0, ge=0)


def _list_or_name(value: Any) -> str:
    return "<list>" if isinstance(value, (list, tuple)) else "<name>"


Optimizer = Literal["adam", "adamw", "sgd", "rmsprop"]
Schedule = Literal["constant", "cosine", "step", "onecycle", "plateau"]
# Which recipe keys each optimizer and schedule reads: a key set for another one would do nothing.
RECIPE_KEY_USERS = {"momentum": ("sgd", "rmsprop"), "nesterov": ("sgd",), "step_size": ("step",),
                    "gamma": ("step",), "factor": ("plateau",), "patience": ("plateau",),
                    "min_lr": ("cosine", "plateau", "onecycle")}


class TrainConfig(Strict):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0, description="not applied to normalization layers and biases")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 autocast where the device computes bf16 natively, fp16 with a "
                            "gradient scaler on older CUDA GPUs, else fp32")
    optimizer: Optimizer = "adam"
    momentum: float | None = Field(None, ge=0, lt=1, description="sgd and rmsprop; default 0.9")
    nesterov: bool | None = Field(None, description="sgd only")
    schedule: Schedule = "constant"
    warmup_epochs: int = Field(0, ge=0, description="linear warmup from lr/100 before the schedule")
    min_lr: float | None = Field(None, ge=0, description="cosine's floor, plateau's lowest lr; default 0")
    step_size: int | None = Field(None, ge=1, description="step: epochs between decays; default epochs // 3")
    gamma: float | None = Field(None, gt=0, lt=1, description="step: the decay factor; default 0.1")
    factor: float | None = Field(None, gt=0, lt=1, description="plateau: the decay factor; default 0.1")
    patience: int | None = Field(None, ge=0, description="plateau: epochs without a lower val_loss; default 2")
    early_stopping: EarlyStopping | None = None
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    grad_clip: float | None = Field(None, gt=0, description="the largest global gradient norm")
    class_weights: Annotated[Union[Annotated[Literal["none", "balanced"], Tag("<name>")],
                                   Annotated[list[Annotated[float, Field(gt=0)]], Tag("<list>")]],
                             Discriminator(_list_or_name)] = Field(
        "none", description="loss weights: balanced = n / (classes x n_class), or one per class in class order")
    sampler: Literal["none", "balanced"] = Field("none", description="balanced: each class drawn equally often")
    ema: float | None = Field(None, gt=0, lt=1, description="decay of an exponential moving average of the "
                                                            "weights, which is evaluated and kept")

    _nones = field_validator("momentum", "nesterov", "min_lr", "step_size", "gamma", "factor", "patience",
                             "early_stopping", "grad_clip", "ema", mode="before")(_none_word)

    @model_validator(mode="after")
    def _keys_used(self) -> "TrainConfig":
        for key, users in RECIPE_KEY_USERS.items():
            chosen = self.optimizer if key in ("momentum", "nesterov") else self.schedule
            if getattr(self, key) is not None and chosen not in users:
                what = "optimizer" if key in ("momentum", "nesterov") else "schedule"
                raise ValueError(f"{key} does nothing with {what} {chosen}: it is read by {' and '.join(users)}; "
                                 f"drop it or set train.{what}")
        if self.schedule == "onecycle" and "epochs" not in self.model_fields_set:
            raise ValueError("schedule onecycle spans train.epochs, which is not set: set train.epochs")
        if self.schedule == "onecycle" and (self.epochs < 3 or self.warmup_epochs > self.epochs - 2):
            raise ValueError(f"schedule onecycle needs at least 3 epochs and warmup_epochs at most epochs - 2 (a rise "
                             f"and a fall), got epochs {self.epochs}, warmup_epochs {self.warmup_epochs}")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum above 0")
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be fewer than epochs ({self.epochs})")
        return self


class VerdictConfig(Strict):
    """Thresholds of the overfitting verdict (see docs/verdict.md)."""
    max_gap: float = 0.10  # final train acc (eval mode, un-augmented) - val acc above this: overfit
    val_loss_rise: float = 0.20  # final val loss above (1 + this) x its minimum ...
    val_loss_rise_abs: float = 0.05  # ... and above it by at least this much: overfit
    min_train_acc: float = 0.70  # final train acc below this: underfit
    # Final train acc within this share of the way from chance to 100 %: "did not learn" (never overfit).
    min_learned: float = Field(0.10, ge=0, lt=1)


AugmentPolicy = Literal["none", "seed", "trivialaugment", "randaugment", "autoaugment"]


class AugmentConfig(Strict):
    """Training augmentation in parts, applied in this order: the policy (seed: the seed's flip,
    rotation and scale), random-resized crop, flip, colour jitter, then, on normalized images,
    random erasing, then mixup/cutmix on the batch (see docs/study-file.md)."""
    policy: AugmentPolicy = "none"
    crop: Literal["random-resized", "none"] = "none"
    flip: bool | None = Field(None, description="default: true for trivialaugment, randaugment, autoaugment")
    color: float = Field(0.0, ge=0, lt=1, description="brightness, contrast and saturation jitter")
    erase: float = Field(0.0, ge=0, le=1, description="probability of erasing a random rectangle")
    mixup: float = Field(0.0, ge=0, description="alpha of the Beta(alpha, alpha) mixing weight")
    cutmix: float = Field(0.0, ge=0, description="alpha of the Beta(alpha, alpha) area kept")

    @property
    def flips(self) -> bool:
        return self.flip if self.flip is not None else self.policy not in ("none", "seed")

    @property
    def changes_pixels(self) -> bool:
        """Whether any part acts on single images (mixing acts on batches)."""
        return self.policy != "none" or self.crop != "none" or self.flips or bool(self.color or self.erase)

    @property
    def mixes(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0


def _augment_kind(value: Any) -> str:
    # Tags, so that a wrong value is told against the form it was written in (tags are dropped from keys).
    return "<mapping>" if isinstance(value, (dict, AugmentConfig)) else "<name>"


def augment_settings(augment: "str | AugmentConfig") -> AugmentConfig:
    """A run's augment as parts: a policy name alone means that policy with its default flip."""
    return augment if isinstance(augment, AugmentConfig) else AugmentConfig(policy=augment)
