"""What a run was made from, recorded in its folder and compared before its results are reused.

A run's fingerprint is its resolved config, the split it trained and was scored on (the dataset
and the digest of its file lists), and the SHA-256 of every checkpoint it starts from (init_from's
best.pt, weights:, a timm model's pretrained weights). A finished run is reused only when all of them match; otherwise `differences`
says, key by key, what changed.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

from ...config import RunConfig, TrainConfig, augment_settings
from ...data.splits import Split
from ...fileio import read_json, file_digest, write_json
from ...models.weights import pretrained_input

FILE = "fingerprint.json"
# Keys a fingerprint written by an older cnnstudy may lack, each with the value such a run was made with: a
# fingerprint without the key reads as having that value. (verdict.min_learned judges a finished run's history,
# not its training: a run made before 0.4 is judged again with it when read, runner/results/records.rejudged.)
ADDED_KEYS = {"data.classes": None, "sweep": None, "calibrate": False, "verdict.min_learned": 0.1,
              "data.split.folds": None}
# The training recipe's settings, left out of a fingerprint while at their default: a config that does not
# use them has the fingerprint it would have without them, so runs made before 0.5 are not stale.
RECIPE_DEFAULTS = {key: field.default for key, field in TrainConfig.model_fields.items()
                   if key not in ("epochs", "batch_size", "lr", "weight_decay", "precision")}
# Data settings left out of a fingerprint while at their default, so that runs made before them keep
# theirs (what they change shows in the split's digest).
DATA_DEFAULTS = {"conflicts": "leave_out", "exclude": None}
OMITTED = {**{f"train.{key}": value for key, value in RECIPE_DEFAULTS.items()},
           **{f"data.{key}": value for key, value in DATA_DEFAULTS.items()}}
# Marks a run with weight decay, which spares normalization layers and biases: a fingerprint without the mark
# (a run made before 0.5, which decayed every parameter) differs, so that run is trained again.
DECAY_KEY = "decay_spares"
# Behaviours that follow the references (docs/references.md), marked in the fingerprint of a run that uses
# them: a run made before 0.6 has no mark, so it is trained again rather than reused with numbers its
# config does not make (behaviour_marks).
BEHAVIOUR_KEY = "follows"


def make_fingerprint(cfg: RunConfig, split: Split, inputs: dict[str, dict], data: str | None) -> dict[str, Any]:
    """`data`: the digest of the split's files as they are on disk (size, modification time)."""
    # The number of sibling repeats does not change a repeat's numbers: adding repeats keeps them.
    config = cfg.model_dump(mode="json", exclude={"repeats"})
    config["train"] = {key: value for key, value in config["train"].items()
                       if key not in RECIPE_DEFAULTS or value != RECIPE_DEFAULTS[key]}
    if cfg.train.weight_decay > 0:
        config["train"][DECAY_KEY] = "normalization and biases"
    if marks := behaviour_marks(cfg):
        config["train"][BEHAVIOUR_KEY] = marks
    if cfg.data.split.folds is None:  # no folds key: a single-split run's fingerprint matches one made before folds
        config["data"]["split"].pop("folds")
    return {"config": without_data_defaults(config),
            "split": {"dataset": split.dataset, "digest": split.digest, "data": data},
            "inputs": inputs}


def behaviour_marks(cfg: RunConfig) -> list[str]:
    """The marked behaviours (BEHAVIOUR_KEY) this run's recipe uses: timm's no_weight_decay() names
    spared, the EMA's warmup, min_delta choosing best.pt, class weights normalised over soft targets,
    crop and erase boxes drawn as torchvision's get_params, a pretrained timm model evaluated with its
    crop_pct."""
    train, augment = cfg.train, augment_settings(cfg.augment)
    uses = {"timm no_weight_decay": train.weight_decay > 0 and cfg.model.name.startswith("timm/"),
            "ema warmup": train.ema is not None,
            "min_delta best": train.early_stopping is not None and train.early_stopping.min_delta > 0,
            "soft class weights": train.class_weights != "none" and augment.mixes,
            "torchvision boxes": augment.crop != "none" or augment.erase > 0,
            "timm eval crop": cfg.model.pretrained and cfg.model.name.startswith("timm/")}
    return [mark for mark, used in uses.items() if used]


def without_data_defaults(config: dict) -> dict:
    """A dumped config without the data settings at their defaults (DATA_DEFAULTS)."""
    data = {key: value for key, value in config["data"].items() if DATA_DEFAULTS.get(key, object()) != value}
    return {**config, "data": data}


def fingerprint_digest(fingerprint: dict) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def checkpoint_inputs(cfg: RunConfig, study_dir: Path, source_checkpoint: Path | None) -> dict[str, dict]:
    """The checkpoints a run starts from, by SHA-256. `source_checkpoint` is the init_from run's
    best.pt, or None when that run trains again first (its checkpoint is not known yet)."""
    inputs: dict[str, dict] = {}
    if cfg.model.init_from:
        known = source_checkpoint is not None
        inputs["init_from"] = {"run": cfg.model.init_from,
                               "file": source_checkpoint.relative_to(study_dir).as_posix() if known else None,
                               "sha256": file_digest(source_checkpoint) if known else None}
    if cfg.model.weights:
        inputs["weights"] = {"file": cfg.model.weights, "sha256": file_digest(cfg.model.weights)}
    pretrained = pretrained_input(cfg)  # timm's Hub weights; torchvision's carry their hash in their name
    if pretrained:
        inputs["pretrained"] = pretrained
    return inputs


def read_fingerprint(run_dir: Path) -> dict | None:
    path = run_dir / FILE
    try:
        return read_json(path) if path.exists() else None
    except ValueError:
        return None  # unreadable counts as unknown: the run cannot be vouched for


def write_fingerprint(run_dir: Path, fingerprint: dict) -> None:
    write_json(run_dir / FILE, fingerprint)


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 0.1}} -> {"train.lr": 0.1}: the config's keys as the study file names them."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def differences(old: dict | None, new: dict, data_change: Callable[[str | None], str] | None = None) -> list[str]:
    """Every way the recorded fingerprint `old` differs from `new`, one readable line each.
    `data_change` says how the images differ from the ones a recorded data digest stands for."""
    if old is None:
        return [f"no {FILE}: made by an older cnnstudy or by hand, so what it was made from is unknown"]
    lines = []
    before = {**ADDED_KEYS, **OMITTED, **flatten(old.get("config", {}))}
    after = {**OMITTED, **flatten(new["config"])}
    for key in sorted(set(before) | set(after)):
        if key == f"train.{BEHAVIOUR_KEY}" and before.get(key) != after.get(key):
            changed = sorted(set(after.get(key) or []) - set(before.get(key) or [])) or before.get(key)
            lines.append(f"cnnstudy 0.6 trains this recipe as the references do ({', '.join(changed)}; "
                         "docs/references.md), and this run was made before")
        elif before.get(key) != after.get(key):
            lines.append(f"{key}: {before.get(key, '(unset)')!r} -> {after.get(key, '(unset)')!r}")
    old_split, new_split = old.get("split", {}), new["split"]
    if old_split.get("dataset") != new_split["dataset"]:
        lines.append(f"dataset folder: {old_split.get('dataset')} -> {new_split['dataset']}")
    elif old_split.get("digest") != new_split["digest"]:
        lines.append(f"split: other images in train/val/test ({str(old_split.get('digest'))[:12]} -> "
                     f"{new_split['digest'][:12]})")
    elif old_split.get("data") != new_split.get("data"):
        change = data_change(old_split.get("data")) if data_change else \
            f"data: the images of {new_split['dataset']} changed since this run used them"
        lines += [change] if change else []  # None: the same bytes, only their modification times moved
    lines += _input_differences(old.get("inputs", {}), new["inputs"])
    return lines


def _input_differences(before: dict, after: dict) -> list[str]:
    lines = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if new and new.get("run") and new.get("sha256") is None:
            lines.append(f"init_from {new['run']} trains again first, so the checkpoint this run "
                         "starts from will change")
        elif old and new and old.get("file") != new.get("file") and new.get("run"):
            lines.append(f"init_from {new['run']}: it now starts from {new['file']} (was {old.get('file')}), "
                         "its best repeat")
        elif old != new:
            what = f"init_from {new['run']}: its best.pt" if new and new.get("run") else \
                f"pretrained weights {(new or old)['file']}" if name == "pretrained" else f"{name} file"
            lines.append(f"{what} changed since this run started from it")
    return lines
