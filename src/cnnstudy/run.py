"""One run of a study: build the model, train it, evaluate the best checkpoint, write every artefact."""
from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import numpy as np
import torch
import yaml

from . import plots
from .augment import CachedLoader
from .cache import cached_images
from .checkpoint import CheckpointError, load_checkpoint_file, load_matching_state
from .config import RunConfig, StudyError
from .engine import epoch_line, evaluate, fit, read_history, resolve_device, use_bf16
from .fileio import atomic_write_bytes, atomic_write_text, read_json, write_json
from .freeze import apply_freeze
from .loaders import ImageListDataset, eval_transform, make_loader, train_transform
from .metrics import classification_metrics, overfitting_verdict, roc_curves
from .models import Stats, count_parameters, create_model, normalization
from .splits import Split

GRID_SIZE = 16


def prepare_run_dir(run_dir: Path, cfg: RunConfig, force: bool) -> None:
    """Create the folder, or check that an existing one was made by this same config."""
    wanted = yaml.safe_dump(cfg.model_dump(), sort_keys=False)
    existing = run_dir / "config.yaml"
    if force and run_dir.exists():
        shutil.rmtree(run_dir)
    elif existing.exists() and existing.read_text(encoding="utf-8") != wanted:
        raise StudyError(f"{run_dir} was made with another config; add --force to start that run again, "
                         f"or give the run another name (compare {existing})")
    atomic_write_text(existing, wanted)


def init_checkpoint(cfg: RunConfig, study_dir: Path) -> dict | None:
    if not cfg.model.init_from:
        return None
    path = study_dir / cfg.model.init_from / "best.pt"
    ckpt = load_checkpoint_file(path)
    if ckpt.get("model_name") != cfg.model.name:
        raise CheckpointError(f"{path} holds a {ckpt.get('model_name')!r} model, but run {cfg.run_id} "
                              f"builds {cfg.model.name!r}; set model.name: {ckpt.get('model_name')}")
    return ckpt


def build_model(cfg: RunConfig, num_classes: int, study_dir: Path) -> tuple[torch.nn.Module, list[str], Stats]:
    """The run's model, its trainable parameter names, and the input normalization it expects."""
    model = create_model(cfg.model.name, num_classes, pretrained=cfg.model.pretrained,
                         weights=cfg.model.weights, image_size=cfg.data.image_size)
    stats = normalization(cfg.model.name, cfg.model.pretrained)
    ckpt = init_checkpoint(cfg, study_dir)
    if ckpt is not None:
        load_matching_state(model, ckpt["model"], source=f"{cfg.model.init_from}/best.pt")
        # A model carried from a pretrained run keeps the inputs it was trained on.
        stats = tuple(map(tuple, ckpt.get("normalization", stats)))
    return model, apply_freeze(model, cfg.model.freeze), stats


def build_loaders(cfg: RunConfig, split: Split, source, device: torch.device, stats: Stats) -> dict:
    """Loaders of train (shuffled, seeded) and of val/test where the split has them."""
    size, batch = cfg.data.image_size, cfg.train.batch_size
    generator = torch.Generator().manual_seed(cfg.seed)
    parts = {name: getattr(split, name) for name in ("train", "val", "test") if getattr(split, name)}
    if cfg.data.loader == "cached":
        return {name: CachedLoader(cached_images(source, [item for item, _ in items], size),
                                   [label for _, label in items], batch, name == "train", stats, device,
                                   augment=name == "train" and cfg.augment == "seed",
                                   generator=generator if name == "train" else None)
                for name, items in parts.items()}
    transforms = {"train": train_transform(size, cfg.augment, stats)}
    return {name: make_loader(ImageListDataset(items, source, transforms.get(name, eval_transform(size, stats))),
                              batch, name == "train", cfg.data.num_workers,
                              generator if name == "train" else None)
            for name, items in parts.items()}


def execute_run(cfg: RunConfig, study_dir: Path, split: Split, source, force: bool = False,
                log=print) -> dict:
    """Train and evaluate one run; a run whose metrics.json exists is already done and is skipped."""
    run_dir = study_dir / cfg.phase / cfg.name
    if (run_dir / "metrics.json").exists() and not force:
        log(f"skip {cfg.run_id}: already finished ({run_dir / 'metrics.json'})")
        return read_json(run_dir / "metrics.json")
    prepare_run_dir(run_dir, cfg, force)
    split.save(run_dir / "split.json")
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model, trainable, stats = build_model(cfg, len(split.classes), study_dir)
    model = model.to(device).to(memory_format=torch.channels_last)
    atomic_write_text(run_dir / "model.txt", f"{model}\n")
    params = {"total_params": count_parameters(model),
              "trainable_params": count_parameters(model, trainable_only=True), "trainable_names": trainable}
    bf16 = use_bf16(device, cfg.train.precision)
    log(f"== {cfg.run_id}: {cfg.model.name}, {params['trainable_params']:,} of {params['total_params']:,} "
        f"parameters trainable, {len(split.train)}/{len(split.val)}/{len(split.test)} images on {device}"
        f"{', bf16 autocast' if bf16 else ''}")
    loaders = build_loaders(cfg, split, source, device, stats)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr,
                                 weight_decay=cfg.train.weight_decay)
    meta = {"model_name": cfg.model.name, "class_names": split.classes, "config": cfg.model_dump(),
            "trainable_names": trainable, "normalization": [list(stats[0]), list(stats[1])]}
    fit(model, optimizer, loaders["train"], loaders["val"], device, cfg.train.epochs, run_dir, meta,
        cfg.seed, log, bf16)
    return finish_run(cfg, run_dir, model, loaders, split, source, device, params, bf16)


def finish_run(cfg: RunConfig, run_dir: Path, model, loaders: dict, split: Split, source, device,
               params: dict, bf16: bool) -> dict:
    """Evaluate best.pt on val and test, then write predictions, plots and, last, metrics.json."""
    model.load_state_dict(load_checkpoint_file(run_dir / "best.pt")["model"])
    outputs = {name: evaluate(model, loaders[name], device, bf16) for name in ("val", "test") if name in loaders}
    save_predictions(run_dir / "predictions.npz", outputs, split)
    history = read_history(run_dir)
    best = max(history, key=lambda row: row["val_acc"])
    metrics = {"run": cfg.run_id, "model": cfg.model.name, **params, "classes": split.classes,
               "init": describe_init(cfg), "epochs": len(history), "best_epoch": best["epoch"],
               "best_train_acc": best["train_acc"], "best_val_acc": best["val_acc"],
               "final_epoch_line": epoch_line(history[-1], cfg.train.epochs),
               "seconds_per_epoch": float(np.mean([row["seconds"] for row in history])),
               "verdict": overfitting_verdict(history, **cfg.verdict.model_dump()),
               "skipped_images": split.skipped}
    for name, out in outputs.items():
        metrics[name] = classification_metrics(out["probs"], out["targets"], split.classes)
    write_plots(run_dir, cfg, history, metrics, outputs, split, source)
    write_json(run_dir / "metrics.json", metrics)
    return metrics


def describe_init(cfg: RunConfig) -> str:
    if cfg.model.init_from:
        return f"from {cfg.model.init_from}"
    if cfg.model.weights:
        return f"weights {Path(cfg.model.weights).name}"
    return "ImageNet" if cfg.model.pretrained else "scratch"


def save_predictions(path: Path, outputs: dict, split: Split) -> None:
    arrays = {}
    for name, out in outputs.items():
        items = getattr(split, name)
        arrays[f"{name}_probs"] = out["probs"]
        arrays[f"{name}_targets"] = out["targets"]
        arrays[f"{name}_ids"] = np.array([items[i][0] for i in out["indices"]])
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def write_plots(run_dir: Path, cfg: RunConfig, history: list[dict], metrics: dict, outputs: dict,
                split: Split, source) -> None:
    plot_dir = run_dir / "plots"
    plots.plot_curves(history, plot_dir / "curves.png", title=f"{cfg.run_id} ({cfg.model.name})")
    name = "test" if "test" in outputs else "val"
    out, classes = outputs[name], split.classes
    aucs = [metrics[name]["per_class"][c]["auc"] for c in classes]
    plots.plot_roc(roc_curves(out["probs"], out["targets"], len(classes)), aucs, classes,
                   plot_dir / "roc.png", title=f"One-vs-rest ROC ({name})")
    plots.plot_confusion(metrics[name]["confusion_matrix"], classes, plot_dir / "confusion.png",
                         title=f"Confusion matrix ({name}, {metrics[name]['n']} images)")
    items = getattr(split, name)
    preds = out["probs"].argmax(1)
    # Evenly spaced through the (class-sorted) split, so the grid shows every class.
    shown = np.unique(np.linspace(0, len(items) - 1, min(GRID_SIZE, len(items))).astype(int)).tolist()
    images = [source.open(items[out["indices"][i]][0]).resize((cfg.data.image_size,) * 2) for i in shown]
    plots.plot_prediction_grid(images, [classes[out["targets"][i]] for i in shown],
                               [classes[preds[i]] for i in shown], plot_dir / "predictions.png")
    write_misclassified(run_dir / "misclassified.csv", name, items, out, classes)


def write_misclassified(path: Path, split_name: str, items, out: dict, classes: list[str]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["split", "file", "true", "predicted", "confidence"])
    for row, index in enumerate(out["indices"]):
        pred = int(out["probs"][row].argmax())
        if pred != out["targets"][row]:
            writer.writerow([split_name, items[index][0], classes[out["targets"][row]], classes[pred],
                             f"{out['probs'][row, pred]:.4f}"])
    atomic_write_text(path, buffer.getvalue())
