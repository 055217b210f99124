"""What a study file may say: its keys, types and ranges (pydantic). Reading one, and naming every
problem it has at once, is runner/studyfile.py."""
from __future__ import annotations

import copy
import re
from typing import Annotated, Any, Literal, Union

from pydantic import (AfterValidator, BaseModel, ConfigDict, Discriminator, Field, PrivateAttr, Tag, field_validator,
                      model_validator)


class StudyError(ValueError):
    """A study file that cannot run as written."""


_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")


def _safe_name(value: str) -> str:
    # Names become folder names under runs/, and --force deletes run folders: nothing may climb out.
    if not _SAFE_NAME.fullmatch(value):
        raise ValueError("use letters, digits, '-', '_' and '.' only, not starting with '.' "
                         "(it names a folder), e.g. phase1 or cnn_head")
    return value


SafeName = Annotated[str, AfterValidator(_safe_name)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SplitConfig(Strict):
    train: float = Field(0.7, gt=0, lt=1)
    val: float = Field(0.15, ge=0, lt=1)
    test: float = Field(0.15, ge=0, lt=1)
    seed: int = Field(0, ge=0)
    folds: int | None = Field(None, ge=2, le=20, description="k-fold cross-validation: every image tested once")

    @model_validator(mode="after")
    def _folds_need_val(self) -> "SplitConfig":
        if self.folds is not None and self.val == 0:
            raise ValueError("folds: each fold carves its validation images from the other folds by split.val; "
                             "set split.val above 0 (e.g. 0.15)")
        return self

    @model_validator(mode="after")
    def _sums_to_one(self) -> "SplitConfig":
        if abs(self.train + self.val + self.test - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1, got {self.train + self.val + self.test:g}")
        return self


class DataConfig(Strict):
    dataset: str = Field(description="a folder of class sub-folders, a name under $CNNSTUDY_DATA, "
                                     "or 'fashion-mnist'")
    image_size: int = Field(224, ge=8)
    limit_per_class: int | None = Field(None, ge=1)
    split: SplitConfig = SplitConfig()
    loader: Literal["cached", "torchvision"] = Field(
        "cached", description="cached: decode once, augment batches on the device; torchvision: PIL per image")
    num_workers: int = Field(0, ge=0, description="DataLoader workers of the torchvision loader")
    on_bad_image: Literal["skip", "fail"] = "skip"
    classes: list[str] | None = Field(None, min_length=2, description="use only these classes, by folder name")
    conflicts: Literal["leave_out", "keep"] = Field(
        "leave_out", description="copies of one photo filed under two classes: left out of training and "
                                 "testing, or kept (each under its own label, all in one part)")
    exclude: str | None = Field(None, description="a file of images to leave out: relative paths, one a line, "
                                                  "or a CSV with a 'file' column (label_issues.csv)")

    @field_validator("classes")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("a class is named twice; name each once")
        return value


class ModelConfig(Strict):
    name: str
    pretrained: bool = False
    weights: str | None = None
    init_from: str | None = Field(None, description="<phase>/<run> whose best checkpoint to start from")
    freeze: str | list[str] = "none"


def _none_word(value: Any) -> Any:
    """`none` in a study file for an optional setting means not set (as `augment: none` does)."""
    return None if isinstance(value, str) and value.strip().lower() == "none" else value


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


class ParamRange(Strict):
    """A numeric search range: integers when low and high are both integers (and step, if given)."""
    low: float | int
    high: float | int
    log: bool = False
    step: float | int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> "ParamRange":
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("log: true needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("log and step do not go together; drop one")
        return self

    @property
    def integer(self) -> bool:
        return all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high)) and \
            (self.step is None or isinstance(self.step, int))


class SweepConfig(Strict):
    """A hyper-parameter search over a run's settings (Optuna); see docs/study-file.md."""
    trials: int = Field(16, ge=1, le=10_000)
    method: Literal["tpe", "random", "grid"] = "tpe"
    metric: Literal["val_acc", "val_loss"] = Field("val_acc", description="val_acc is maximized, val_loss minimized")
    prune: Literal["none", "median", "hyperband"] = "none"
    params: dict[str, list[Any] | ParamRange] = Field(min_length=1)
    confirm: int = Field(1, ge=1, le=100, description="repeats of the best and of the base setting, compared")

    @field_validator("params")
    @classmethod
    def _choices(cls, value: dict) -> dict:
        for key, space in value.items():
            if isinstance(space, list) and not space:
                raise ValueError(f"{key}: give at least one value to try")
        return value


class RunConfig(Strict):
    name: SafeName
    phase: SafeName
    model: ModelConfig
    data: DataConfig
    train: TrainConfig = TrainConfig()
    augment: Annotated[Union[Annotated[AugmentPolicy, Tag("<name>")], Annotated[AugmentConfig, Tag("<mapping>")]],
                       Discriminator(_augment_kind)] = Field(
        "none", description="a policy name, or a mapping of policy, crop, flip, color, erase, mixup, cutmix")
    seed: int = Field(0, ge=0)
    repeats: int = Field(1, ge=1, le=100, description="train the run this many times, seeds derived from seed")
    device: str = "auto"
    verdict: VerdictConfig = VerdictConfig()
    sweep: SweepConfig | None = None
    calibrate: bool = Field(False, description="fit a temperature on the validation split; predict/export use it")

    @field_validator("augment", mode="before")
    @classmethod
    def _augment_word(cls, value: Any) -> Any:
        # A policy name stays a name (its fingerprint is the one runs made before mappings existed).
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("model", mode="before")
    @classmethod
    def _model_shorthand(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @property
    def run_id(self) -> str:
        return f"{self.phase}/{self.name}"


class PhaseConfig(Strict):
    name: SafeName
    title: str = ""
    description: str = ""
    compare: str | list[str] = Field(
        "previous", description="what this phase's runs are compared with: previous (the nearest earlier phase "
                                "on the same test images), an earlier phase, an earlier <phase>/<run>, best "
                                "(its own best run by validation against its others), none; or a list of these")
    defaults: dict[str, Any] = {}
    runs: list[dict[str, Any]] = Field(min_length=1)

    @property
    def compare_targets(self) -> list[str]:
        return [self.compare] if isinstance(self.compare, str) else list(self.compare)


class TrackingConfig(Strict):
    """Optional experiment tracking (pip install 'cnnstudy[tracking]'); it never changes a result."""
    tensorboard: bool = Field(False, description="event files in each run folder's tensorboard/")
    mlflow: bool | str = Field(False, description="true: a SQLite store in the study folder; or a tracking URI")


class DatasetRole(Strict):
    """A dataset the study names once (`datasets:`) and its runs refer to by the role's name."""
    dataset: str = Field(description="a folder, or a name under $CNNSTUDY_DATA or in the catalogue")
    classes: list[str] | None = Field(None, min_length=2, description="only these classes, in this order")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"dataset": value} if isinstance(value, str) else value


class StudyConfig(Strict):
    name: SafeName
    description: str = ""
    tracking: TrackingConfig = TrackingConfig()
    datasets: dict[SafeName, DatasetRole] = Field(
        {}, description="roles: a name for each dataset the study uses, e.g. main, transfer; runs say "
                        "data: {dataset: main}, and --dataset main=PATH replaces a role as a whole")
    defaults: dict[str, Any] = {}
    phases: list[PhaseConfig] = Field(min_length=1)
    # Each role as the runs used it: {role: {dataset, classes, replaced}} (--dataset replaces a role whole).
    _roles_used: dict[str, dict] = PrivateAttr(default_factory=dict)

    @property
    def roles_used(self) -> dict[str, dict]:
        return self._roles_used

    def use_roles(self, roles: dict[str, dict]) -> None:
        self._roles_used = roles

    @model_validator(mode="after")
    def _compare_names_earlier_phases(self) -> "StudyConfig":
        for i, phase in enumerate(self.phases):
            earlier = {p.name for p in self.phases[:i]}
            runs = {f"{p.name}/{run.get('name')}" for p in self.phases[:i] for run in p.runs}
            for target in phase.compare_targets:
                if target not in ("previous", "best", "none") and target not in earlier | runs:
                    raise ValueError(f"phases.{i}.compare: {target!r} is not an earlier phase or run; use previous, "
                                     f"best, none, or one of: {', '.join(sorted(earlier | runs)) or '(no earlier phase)'}")
        return self


def deep_merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
