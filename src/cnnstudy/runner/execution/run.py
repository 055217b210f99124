"""One run of a study, as planned: assemble the model and loaders, train, evaluate the best
checkpoint, write every artefact. Each run folder records what it was made from first
(config.yaml, split.json, fingerprint.json) and marks itself finished last (metrics.json)."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import torch
import yaml

from ..results.artifacts import add_calibration, diverged_metrics, run_metrics, write_explanations, write_run_artifacts
from ...models.checkpoint import FitState, check_same_split, load_checkpoint_file
from ...config import RunConfig, StudyError
from ...data.loaders import build_loaders
from ...data.prepare import data_change
from ...data.splits import Split
from ...data.transforms import Stats
from ...training.devices import choose_precision
from ...training.distributed import SINGLE, Dist
from ...training.engine import Loop, diverged_words, evaluate, fit, read_history
from ...training.recipe import make_recipe, recipe_line
from ...fileio import atomic_write_text, read_json, write_json
from ..planning.fingerprint import checkpoint_inputs, differences, fingerprint_digest, make_fingerprint, \
    read_fingerprint, write_fingerprint
from ...models.freeze import apply_freeze
from ...models.registry import count_parameters, create_model, load_matching_state, model_state, normalization, \
    eval_crop, resize_filter
from ...models.weights import weights_facts
from ..planning.force import MARK
from ..planning.plan import RunPlan, check_removable
from ..planning.repeats import source_checkpoint
from ...seeds import derive_seed
from .tracking import Tracking


def remove_run_dir(run_dir: Path, study_dir: Path) -> None:
    """Empty a run folder for a fresh start; the mark of the forced start it belongs to stays (force.py)."""
    mark = run_dir / MARK
    kept = mark.read_text(encoding="utf-8") if mark.is_file() else None
    shutil.rmtree(check_removable(run_dir, study_dir))
    if kept is not None:
        run_dir.mkdir(parents=True)
        atomic_write_text(mark, kept)


def prepare_run_dir(plan: RunPlan, study_dir: Path, fingerprint: dict) -> None:
    """A fresh folder for train/redo; for resume, the recorded fingerprint must still match."""
    run_dir = plan.run_dir
    if plan.action == "resume":
        diffs = differences(read_fingerprint(run_dir), fingerprint, data_change(study_dir, plan.data))
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
                ) -> tuple[torch.nn.Module, list[str], Stats, dict]:
    """The run's model, its trainable parameter names, and the input normalization and resizing it
    expects ({"resample": filter, "crop_pct": evaluation's centre crop or None})."""
    torch.manual_seed(derive_seed(cfg.seed, "init"))
    model = create_model(cfg.model.name, len(split.classes), pretrained=cfg.model.pretrained,
                         image_size=cfg.data.image_size)
    stats = normalization(cfg.model.name, cfg.model.pretrained)
    resizing = {"resample": resize_filter(cfg.model.name, cfg.model.pretrained),
                "crop_pct": eval_crop(cfg.model.name, cfg.model.pretrained)}
    for ckpt, source in start_checkpoints(cfg, source_ckpt):
        check_same_split(ckpt, split.dataset, split.digest, source)
        load_matching_state(model, model_state(ckpt), source=source)
        if "normalization" in ckpt:  # a carried model keeps the inputs it was trained on
            stats = tuple(map(tuple, ckpt["normalization"]))
            resizing = {"resample": ckpt.get("resample", "bilinear"), "crop_pct": ckpt.get("crop_pct")}
    return model, apply_freeze(model, cfg.model.freeze), stats, resizing


def execute_run(plan: RunPlan, study_dir: Path, log=print, tracking: Tracking | None = None,
                dist: Dist = SINGLE, progress: bool = True, watch: Callable[[dict], None] | None = None) -> dict:
    """Carry out one planned run; a finished, matching run is only read back (and tracked, if it
    never was). Under data parallelism every rank trains; rank 0 alone writes. `watch` sees every
    epoch's row once its files are written (a sweep's pruning); `progress`: per-batch bars."""
    cfg, split = plan.cfg, plan.data.split
    tracking = tracking if tracking is not None and tracking.enabled and dist.main else None
    if plan.action == "skip":
        log(f"skip {plan.label}: already finished with this config, split and inputs")
        metrics = read_json(plan.run_dir / "metrics.json")
        if tracking and tracking.untracked(plan.run_dir):
            tracking.track_finished(plan.run_dir, plan.label, cfg.model_dump(mode="json"), metrics)
        return metrics
    source_ckpt = source_checkpoint(study_dir, plan.source, plan.fold, split.digest) if plan.source else None
    fingerprint = make_fingerprint(cfg, split, checkpoint_inputs(cfg, study_dir, source_ckpt), plan.data.data_digest)
    dist.on_main(lambda: prepare_run_dir(plan, study_dir, fingerprint))
    device = dist.device(cfg.device)
    loop = Loop(device, cfg.train.epochs, choose_precision(device, cfg.train.precision), cfg.seed, dist, log,
                progress=progress)
    model, trainable, stats, resizing = build_model(cfg, split, source_ckpt)
    model = model.to(device).to(memory_format=torch.channels_last)
    facts = {"total_params": count_parameters(model), "trainable_params": count_parameters(model, True),
             "trainable_names": trainable, "device": str(device), "precision": loop.precision,
             "fingerprint": fingerprint_digest(fingerprint), "repeat": plan.repeat, "seed": cfg.seed,
             "processes": dist.world, **resizing, "fold": plan.fold}
    if weights_facts(cfg):
        facts["weights"] = weights_facts(cfg)
    dist.on_main(lambda: atomic_write_text(plan.run_dir / "model.txt", f"{model}\n"))
    log(start_line(plan, facts, dist))
    # Rank 0 fills the decode-once cache; the others then read it.
    loaders = dist.main_first(lambda: build_loaders(cfg, split, plan.data.source, device, stats, dist.rank,
                                                    dist.world, parts=("train", *plan.scored), progress=progress,
                                                    **resizing))
    optimizer, recipe = make_recipe(cfg.train, model, [label for _, label in split.train], len(split.classes), device)
    meta = {"model_name": cfg.model.name, "class_names": split.classes, "config": cfg.model_dump(mode="json"),
            "trainable_names": trainable, "normalization": [list(stats[0]), list(stats[1])], **resizing,
            "dataset": split.dataset, "split_digest": split.digest, "fingerprint": facts["fingerprint"]}
    trackers = tracking.open(plan.run_dir, plan.label, meta["config"]) if tracking else None
    loop.on_epoch = chain(trackers.epoch if trackers else None, watch)
    state = fit(wrap(model, device, dist), optimizer, loaders, plan.run_dir, meta, loop, recipe)
    metrics = finish_run(plan, model, loaders, loop, facts, stats, state)
    if trackers and metrics.get("scored_on"):
        trackers.finish(metrics, meta["config"], plan.run_dir)
    return metrics


def chain(*hooks: Callable[[dict], None] | None) -> Callable[[dict], None] | None:
    """One epoch hook calling each given hook in order (None when there is none)."""
    present = [hook for hook in hooks if hook is not None]
    if not present:
        return None

    def call_each(row: dict) -> None:
        for hook in present:
            hook(row)
    return call_each


def start_line(plan: RunPlan, facts: dict, dist: Dist) -> str:
    split, cfg = plan.data.split, plan.cfg
    line = (f"== {plan.label}: {cfg.model.name}, {facts['trainable_params']:,} of {facts['total_params']:,} "
            f"parameters trainable, {len(split.train)}/{len(split.val)}/{len(split.test)} images on "
            f"{facts['device']}, {facts['precision']}")
    if dist.enabled:
        line += (f", {dist.world} processes (DistributedDataParallel), global batch {cfg.train.batch_size} = "
                 f"{cfg.train.batch_size // dist.world} per process")
    return line


def wrap(model: torch.nn.Module, device: torch.device, dist: Dist) -> torch.nn.Module:
    """DistributedDataParallel under torchrun (gradients averaged over ranks), the model itself otherwise."""
    if not dist.enabled:
        return model
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)


def finish_run(plan: RunPlan, model, loaders: dict, loop: Loop, facts: dict, stats: Stats, state: FitState) -> dict:
    """Evaluate best.pt on val and test (every rank its shard), then rank 0 writes predictions,
    plots and, last, metrics.json. A diverged run is scored from its best checkpoint, from before
    it diverged; without one (epoch 1 diverged) its metrics.json says so and holds no scores."""
    cfg, split, diverged = plan.cfg, plan.data.split, state.diverged
    if diverged is not None and not (plan.run_dir / "best.pt").exists():
        metrics = diverged_metrics(cfg, split, facts, diverged)
        loop.dist.on_main(lambda: write_json(plan.run_dir / "metrics.json", metrics))
        return metrics
    model.load_state_dict(load_checkpoint_file(plan.run_dir / "best.pt")["model"])
    outputs = {name: evaluate(model, loaders[name], loop.device, loop.precision, loop.dist)
               for name in plan.scored if name in loaders}
    history = read_history(plan.run_dir)
    metrics = run_metrics(cfg, history, outputs, split, facts, state.best_epoch)
    metrics["recipe"] = recipe_line(cfg.train, cfg.augment)
    metrics["stopped"] = state.stopped or {"reason": "diverged" if diverged else "epochs", "epoch": len(history),
                                           "best_epoch": state.best_epoch}
    add_calibration(metrics, outputs, cfg.calibrate)
    if metrics.get("calibration", {}).get("warning"):
        loop.log(f"warning: {plan.label}: {metrics['calibration']['warning']}")
    if plan.trial is None:  # a sweep's trials are compared by their metric only
        loop.dist.on_main(lambda: write_explanations(plan.run_dir, model, cfg, metrics, outputs, split,
                                                     plan.data.source, stats, loop.device, loop.precision,
                                                     facts["resample"], facts["crop_pct"]))
        if metrics.get("explanations"):
            loop.log(f"note: {plan.label}: no Grad-CAM maps: {metrics['explanations'][6:]}")
    if diverged is not None:
        metrics["diverged"] = diverged
        metrics["verdict"] = {**metrics["verdict"], "verdict": "diverged", "explanation": (
            f"{diverged_words(diverged)}; the scores are best.pt's (epoch {metrics['best_epoch']}), from before "
            "it diverged")}
    loop.dist.on_main(lambda: write_run_artifacts(plan.run_dir, cfg, history, metrics, outputs, split,
                                                  plan.data.source))
    loop.dist.barrier()
    return metrics
