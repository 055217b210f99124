"""A study file's shape: data and split, model, sweeps, runs, phases, dataset roles and tracking
(pydantic), with the recipe's settings from config/recipe.py."""
from __future__ import annotations

import copy
from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, PrivateAttr, Tag, field_validator, model_validator

from .base import SafeName, Strict
from .recipe import AugmentConfig, AugmentPolicy, TrainConfig, VerdictConfig, _augment_kind


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
