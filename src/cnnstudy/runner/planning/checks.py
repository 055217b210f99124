"""What each run's config is checked for before anything trains: `run_problems`, against the models,
datasets and files it names (every problem at once); `check_prepared`, what needs the splits (batch
sizes, init_from across splits)."""
from __future__ import annotations

from pathlib import Path

import torch

from ...config import RunConfig, StudyError
from ...data.prepare import PreparedData
from ...models.checkpoint import CheckpointError, check_same_split, load_checkpoint_file
from ...models.freeze import FreezeError, apply_freeze
from ...models.registry import check_state_fits, create_model, get_spec, model_state
from ..search.sweep import check_sweep
from .precheck import dataset_problems
from .studyfile import merge_by_run, raise_problems


def run_problems(runs: list[RunConfig], study_path: Path, unread: set[str] = frozenset(),
                 datasets: dict[str, str] | None = None) -> list[str]:
    """Every config error a run can have on its own, found before anything trains: each run's first.
    `unread`: runs whose settings did not validate (a run starting from one is not blamed for it).
    `datasets`: the --dataset pairs (a missing folder is named by its pair)."""
    by_id: dict[str, RunConfig] = {}
    problems = []
    for cfg in runs:
        where = f"run {cfg.run_id}"
        try:
            if cfg.run_id in by_id:
                raise StudyError(f"{where}: the name is used twice in phase {cfg.phase!r}; rename one")
            if cfg.model.init_from not in unread:
                _check_model(cfg, where, by_id)
                for trial_cfg in check_sweep(cfg, where) if cfg.sweep is not None else []:
                    _check_model(trial_cfg, f"{where} (a value its sweep would try)", by_id)
            _check_environment(cfg, where, study_path)
        except StudyError as err:
            problems.append(str(err))
        by_id.setdefault(cfg.run_id, cfg)
    # found, not opened: the split store opens each dataset next (and the command line's quick check did)
    return merge_by_run(dataset_problems(runs, study_path, datasets, opened=False) + problems)


def _check_model(cfg: RunConfig, where: str, earlier: dict[str, RunConfig]) -> None:
    try:
        spec = get_spec(cfg.model.name)
    except ValueError as err:
        raise StudyError(f"{where}: model.name: {err}") from None
    if cfg.data.image_size < spec.min_size:
        raise StudyError(f"{where}: data.image_size {cfg.data.image_size} is below {cfg.model.name}'s "
                         f"minimum of {spec.min_size} px; raise it to {spec.min_size} or more")
    if cfg.model.pretrained and not spec.pretrained_available:
        hint = " on the Hugging Face Hub (timm knows only a URL for them; cnnstudy fetches timm weights from the Hub)" \
            if cfg.model.name.startswith("timm/") else ""
        raise StudyError(f"{where}: model.pretrained: {cfg.model.name} has no pretrained weights{hint}; use "
                         "model.init_from (a run of this study) or model.weights (a file) instead")
    source = cfg.model.init_from
    if source and cfg.model.weights:
        raise StudyError(f"{where}: model.init_from and model.weights both name a starting point; keep one")
    if source and source not in earlier:
        raise StudyError(f"{where}: model.init_from {source!r} names no earlier run; "
                         f"use one of: {', '.join(sorted(earlier)) or '(none yet)'}")
    if source and earlier[source].model.name != cfg.model.name:
        raise StudyError(f"{where}: model.init_from {source} trains a {earlier[source].model.name}, but this "
                         f"run builds a {cfg.model.name}; set model.name: {earlier[source].model.name}")
    with torch.device("meta"):  # weightless: only names and shapes are checked
        model = create_model(cfg.model.name, 2, image_size=cfg.data.image_size)
    try:
        apply_freeze(model, cfg.model.freeze)
    except FreezeError as err:
        raise StudyError(f"{where}: model.{err}") from None
    if cfg.model.weights:
        _check_weights_file(cfg, model, where)


def _check_weights_file(cfg: RunConfig, model, where: str) -> None:
    path = Path(cfg.model.weights)
    if not path.is_file():
        raise StudyError(f"{where}: model.weights file {path} does not exist")
    try:
        state = model_state(load_checkpoint_file(path))
        check_state_fits(model, {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}, str(path))
    except CheckpointError as err:
        raise StudyError(f"{where}: model.weights: {err}") from None


def _check_environment(cfg: RunConfig, where: str, study_path: Path) -> None:
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise StudyError(f"{where}: device {cfg.device!r} but CUDA is not available; use device: auto")
    if cfg.train.precision == "fp16" and not (cfg.device != "cpu" and torch.cuda.is_available()):
        raise StudyError(f"{where}: train.precision fp16 needs a CUDA device; use auto, fp32 or bf16")


def check_prepared(runs: list[RunConfig], prepared: dict[str, PreparedData], study_path: Path) -> None:
    """What can only be checked once every split is made: every run's first problem, in one message."""
    problems = []
    for cfg in runs:
        try:
            _check_split(cfg, prepared, f"run {cfg.run_id}")
        except StudyError as err:
            problems.append(str(err))
    raise_problems(str(study_path), problems)


def _check_split(cfg: RunConfig, prepared: dict[str, PreparedData], where: str) -> None:
    split = prepared[cfg.run_id].split
    trained = len(split.fold(0).train) if split.folds else len(split.train)  # a fold trains on fewer
    if cfg.train.batch_size > trained:
        raise StudyError(f"{where}: train.batch_size {cfg.train.batch_size} is larger than the {trained} training "
                         f"images{' of a fold' if split.folds else ''}; lower it")
    weights = cfg.train.class_weights
    if isinstance(weights, list) and len(weights) != len(split.classes):
        raise StudyError(f"{where}: train.class_weights has {len(weights)} weights, but {split.dataset} has "
                         f"{len(split.classes)} classes ({', '.join(split.classes)}): give one per class, in this "
                         "order, or use balanced")
    source = cfg.model.init_from
    if source and prepared[source].split.dataset == split.dataset and prepared[source].split.digest != split.digest:
        raise StudyError(
            f"{where}: model.init_from {source} trained on another split of the same dataset "
            f"({split.dataset}), so some of this run's validation and test images were among its "
            "training images and its scores would be inflated. Give both runs the same data.split "
            "and data.limit_per_class, or start this run from a run on another dataset")
    if cfg.model.weights:
        try:
            check_same_split(load_checkpoint_file(cfg.model.weights), split.dataset, split.digest, cfg.model.weights)
        except CheckpointError as err:
            raise StudyError(f"{where}: model.weights: {err}") from None
