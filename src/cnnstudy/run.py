"""One run of a study, as planned: assemble the model and loaders, train, evaluate the best
checkpoint, write every artefact. Each run folder records what it was made from first
(config.yaml, split.json, fingerprint.json) and marks itself finished last (metrics.json)."""
from __future__ import annotations

import shutil
from pathlib import Path

import torch
import yaml

from .artifacts import run_metrics, write_run_artifacts
from .checkpoint import check_same_split, load_checkpoint_file
from .config import RunConfig, StudyError
from .data.loaders import build_loaders
from .data.splits import Split
from .data.transforms import Stats
from .devices import choose_precision, resolve_device
from .engine import evaluate, fit, read_history
from .fileio import atomic_write_text, read_json
from .fingerprint import checkpoint_inputs, differences, fingerprint_digest, make_fingerprint, \
    read_fingerprint, write_fingerprint
from .freeze import apply_freeze
from .models import count_parameters, create_model, load_matching_state, model_state, normalization
from .plan import RunPlan, check_removable
from .repeats import source_checkpoint
from .seeds import derive_seed
from .tracking import Tracking


def remove_run_dir(run_dir: Path, study_dir: Path) -> None:
    shutil.rmtree(check_removable(run_dir, study_dir))


def prepare_run_dir(plan: RunPlan, study_dir: Path, fingerprint: dict) -> None:
    """A fresh folder for train/redo; for resume, the recorded fingerprint must still match."""
    run_dir = plan.run_dir
    if plan.action == "resume":
        diffs = differences(read_fingerprint(run_dir), fingerprint)
        if diffs:
            raise StudyError(f"cannot resume {run_dir}: " + "; ".join(diffs) + ". Add --force to start it again")
    elif plan.clear is not None and plan.clear.exists():
        remove_run_dir(plan.clear, study_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(plan.cfg.model_dump(mode="json"), sort_keys=False))
    if not (run_dir / "split.json").exists():
        plan.data.split.save(run_dir / "split.json")
    write_fingerprint(run_dir, fingerprint)


def start_checkpoints(cfg: RunConfig, source_ckpt: Path | None) -> list[tuple[dict, str]]:
    """The checkpoints a run starts from, with the name to show for each."""
    found = []
    if source_ckpt is not None:
        found.append((load_checkpoint_file(source_ckpt), f"{cfg.model.init_from} ({source_ckpt.name})"))
    if cfg.model.weights:
        found.append((load_checkpoint_file(cfg.model.weights), cfg.model.weights))
    return found


def build_model(cfg: RunConfig, split: Split, source_ckpt: Path | None = None
                ) -> tuple[torch.nn.Module, list[str], Stats]:
    """The run's model, its trainable parameter names, and the input normalization it expects."""
    torch.manual_seed(derive_seed(cfg.seed, "init"))
    model = create_model(cfg.model.name, len(split.classes), pretrained=cfg.model.pretrained,
                         image_size=cfg.data.image_size)
    stats = normalization(cfg.model.name, cfg.model.pretrained)
    for ckpt, source in start_checkpoints(cfg, source_ckpt):
        check_same_split(ckpt, split.dataset, split.digest, source)
        load_matching_state(model, model_state(ckpt), source=source)
        if "normalization" in ckpt:  # a carried model keeps the inputs it was trained on
            stats = tuple(map(tuple, ckpt["normalization"]))
    return model, apply_freeze(model, cfg.model.freeze), stats


def execute_run(plan: RunPlan, study_dir: Path, log=print, tracking: Tracking | None = None) -> dict:
    """Carry out one planned run; a finished, matching run is only read back (and tracked, if it
    never was)."""
    cfg, split, source = plan.cfg, plan.data.split, plan.data.source
    tracking = tracking if tracking is not None and tracking.enabled else None
    if plan.action == "skip":
        log(f"skip {plan.label}: already finished with this config, split and inputs")
        metrics = read_json(plan.run_dir / "metrics.json")
        if tracking and tracking.untracked(plan.run_dir):
            tracking.track_finished(plan.run_dir, plan.label, cfg.model_dump(mode="json"), metrics)
        return metrics
    source_ckpt = source_checkpoint(study_dir, plan.source) if plan.source else None
    fingerprint = make_fingerprint(cfg, split, checkpoint_inputs(cfg, study_dir, source_ckpt))
    prepare_run_dir(plan, study_dir, fingerprint)
    device = resolve_device(cfg.device)
    precision = choose_precision(device, cfg.train.precision)
    model, trainable, stats = build_model(cfg, split, source_ckpt)
    model = model.to(device).to(memory_format=torch.channels_last)
    atomic_write_text(plan.run_dir / "model.txt", f"{model}\n")
    facts = {"total_params": count_parameters(model), "trainable_params": count_parameters(model, True),
             "trainable_names": trainable, "device": str(device), "precision": precision,
             "fingerprint": fingerprint_digest(fingerprint), "repeat": plan.repeat, "seed": cfg.seed}
    log(f"== {plan.label}: {cfg.model.name}, {facts['trainable_params']:,} of {facts['total_params']:,} "
        f"parameters trainable, {len(split.train)}/{len(split.val)}/{len(split.test)} images on {device}, "
        f"{precision}")
    loaders = build_loaders(cfg, split, source, device, stats)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr,
                                 weight_decay=cfg.train.weight_decay)
    meta = {"model_name": cfg.model.name, "class_names": split.classes, "config": cfg.model_dump(mode="json"),
            "trainable_names": trainable, "normalization": [list(stats[0]), list(stats[1])],
            "dataset": split.dataset, "split_digest": split.digest, "fingerprint": facts["fingerprint"]}
    trackers = tracking.open(plan.run_dir, plan.label, meta["config"]) if tracking else None
    fit(model, optimizer, loaders["train"], loaders["val"], device, cfg.train.epochs, plan.run_dir, meta,
        cfg.seed, log, precision, loaders["train_eval"], trackers.epoch if trackers else None)
    metrics = finish_run(plan, model, loaders, device, facts)
    if trackers:
        trackers.finish(metrics, meta["config"], plan.run_dir)
    return metrics


def finish_run(plan: RunPlan, model, loaders: dict, device, facts: dict) -> dict:
    """Evaluate best.pt on val and test, then write predictions, plots and, last, metrics.json."""
    cfg, split = plan.cfg, plan.data.split
    model.load_state_dict(load_checkpoint_file(plan.run_dir / "best.pt")["model"])
    outputs = {name: evaluate(model, loaders[name], device, facts["precision"])
               for name in ("val", "test") if name in loaders}
    history = read_history(plan.run_dir)
    metrics = run_metrics(cfg, history, outputs, split, facts)
    write_run_artifacts(plan.run_dir, cfg, history, metrics, outputs, split, plan.data.source)
    return metrics
