"""k-fold cross-validation, pooled: once every fold of a run (of one repeat) has finished, its folder
gets the out-of-fold predictions of every image (each from the fold model that never saw it), a
metrics.json computed from them and label_issues.csv (cleanlab's likely mislabels from those
predictions), beside f0 ... f<k-1>. To the report the folder is then a run like
any other, scored on all N images; the per-fold numbers are kept under "folds".

The pooled fingerprint.json lists the digest of every fold's own fingerprint, and the records check
them (runner/results/records.py), so pooled numbers are never shown for folds that changed since.
"""
from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from ...data.labels import rank_label_issues, write_label_issues
from ...data.splits import Split, folds_digest
from ...fileio import read_json, write_json
from ...training.calibration import ece, nll, softmax
from ...training.metrics import classification_metrics
from .artifacts import add_calibration, save_predictions, write_plots
from ..planning.fingerprint import fingerprint_digest, read_fingerprint, without_data_defaults, write_fingerprint


def pool_runs(plans: list) -> None:
    """Pool every repeat of the folded runs among `plans` (RunPlans) whose folds have all finished."""
    by_folder: dict[Path, list] = {}
    for plan in plans:
        if plan.fold is not None and plan.trial is None:
            by_folder.setdefault(plan.run_dir.parent, []).append(plan)
    for folder, fold_plans in by_folder.items():
        if all((plan.run_dir / "metrics.json").exists() for plan in fold_plans):
            pool_folder(folder, sorted(fold_plans, key=lambda plan: plan.fold))


def read_fold(folder: Path) -> tuple[dict, dict | None]:
    metrics = read_json(folder / "metrics.json")
    if metrics.get("scored_on") is None:
        return metrics, None
    with np.load(folder / "predictions.npz") as arrays:
        return metrics, {key: arrays[f"test_{key}"] for key in ("ids", "probs", "logits", "targets")}


def pool_folder(folder: Path, plans: list) -> dict:
    """Write the pooled results of `folder`'s folds (plans in fold order); returns its metrics."""
    cfg, k = plans[0].cfg, len(plans)
    folds = [read_fold(plan.run_dir) for plan in plans]
    fingerprint = {"config": without_data_defaults(cfg.model_dump(mode="json", exclude={"repeats"})),
                   "split": {"dataset": plans[0].data.split.dataset,
                             "digest": folds_digest([plan.data.split.digest for plan in plans])},
                   "folds": [fingerprint_digest(read_fingerprint(plan.run_dir) or {}) for plan in plans]}
    metrics = pooled_metrics([m for m, _ in folds], [p for _, p in folds], fingerprint)
    write_fingerprint(folder, fingerprint)
    if (plans[0].run_dir / "model.txt").exists():
        shutil.copyfile(plans[0].run_dir / "model.txt", folder / "model.txt")
    if metrics["scored_on"] is not None:
        outputs = {"test": pooled_outputs([p for _, p in folds])}
        pooled = outputs["test"]
        split = Split(metrics["dataset"], metrics["classes"], [], [],
                      list(zip(pooled["ids"].tolist(), pooled["targets"].tolist())))
        if metrics.get("calibration"):
            scaled = scaled_pool([p for _, p in folds], metrics["calibration"]["per_fold"])
            pooled["scaled_probs"] = softmax(scaled["logits"], 1.0)
        save_predictions(folder / "predictions.npz", outputs, split)
        write_label_issues(folder / "label_issues.csv", rank_label_issues(
            pooled["probs"], pooled["targets"], pooled["ids"].tolist(), metrics["classes"]))
        write_plots(folder, cfg, [], metrics, outputs, split, plans[0].data.source)
    write_json(folder / "metrics.json", metrics)
    return metrics


def pooled_outputs(predictions: list[dict]) -> dict:
    """Every fold's test predictions in one set, ordered by file id so that two runs pair by image."""
    ids = np.concatenate([p["ids"] for p in predictions])
    order = np.argsort(ids, kind="stable")
    return {"ids": ids[order], "probs": np.concatenate([p["probs"] for p in predictions])[order],
            "logits": np.concatenate([p["logits"] for p in predictions])[order],
            "targets": np.concatenate([p["targets"] for p in predictions])[order],
            "indices": np.arange(len(ids))}


def scaled_pool(predictions: list[dict], temperatures: list[float]) -> dict:
    """calibrate: true: each fold's logits divided by that fold's own temperature, then pooled."""
    return pooled_outputs([{**p, "logits": p["logits"] / t} for p, t in zip(predictions, temperatures)])


def pooled_metrics(fold_metrics: list[dict], predictions: list[dict | None], fingerprint: dict) -> dict:
    """metrics.json of the pooled folder: fold 0's description of the run, scores from all N images."""
    first, k = fold_metrics[0], len(fold_metrics)
    per_fold = {"k": k, "test_acc": [m["test"]["accuracy"] if m.get("test") else None for m in fold_metrics],
                "val_acc": [m.get("best_val_acc") for m in fold_metrics],
                "best_epoch": [m.get("best_epoch") for m in fold_metrics],
                "test_n": [m["test"]["n"] if m.get("test") else 0 for m in fold_metrics],
                "verdicts": [m["verdict"]["verdict"] for m in fold_metrics]}
    keep = ("run", "model", "total_params", "trainable_params", "device", "precision", "repeat", "seed",
            "processes", "resample", "crop_pct", "weights", "classes", "init", "dataset", "skipped_images", "cnnstudy_version",
            "recipe")
    metrics = {key: first[key] for key in keep if key in first}
    metrics.update(fingerprint=fingerprint_digest(fingerprint), folds=per_fold, verdict=pooled_verdict(fold_metrics),
                   epochs=max(m.get("epochs") or 0 for m in fold_metrics))
    failed = [f"f{j}" for j, p in enumerate(predictions) if p is None]
    if failed:
        metrics.update(scored_on=None, best_val_acc=None, verdict={
            "verdict": "diverged", "explanation": f"fold(s) {', '.join(failed)} diverged before their first "
                                                  "checkpoint, so their images have no out-of-fold predictions"})
        return metrics
    n = sum(per_fold["test_n"])
    sizes = {part: round(float(np.mean([m["split"]["sizes"][part] for m in fold_metrics]))) for part in ("train", "val")}
    metrics.update(
        scored_on="test", best_val_acc=float(np.mean(per_fold["val_acc"])),
        best_train_acc=float(np.mean([m["best_train_acc"] for m in fold_metrics])),
        best_epoch=round(float(np.mean(per_fold["best_epoch"]))),
        seconds_per_epoch=float(np.mean([m["seconds_per_epoch"] for m in fold_metrics])),
        final_epoch_line="\n".join(f"f{j}: {m['final_epoch_line']}" for j, m in enumerate(fold_metrics)),
        split={"digest": fingerprint["split"]["digest"], "sizes": {**sizes, "test": n},
               "origin": {"train": f"each fold's model: {'the other fold' if k == 2 else f'the other {k - 1} folds'}, "
                                   "less validation (mean size)",
                          "val": first["split"]["origin"]["val"] + " (mean size)",
                          "test": f"{k}-fold cross-validation, every one of the {n} images tested once, by the "
                                  "fold model that never saw it"}})
    outputs = {"test": pooled_outputs(predictions)}
    metrics["test"] = classification_metrics(outputs["test"]["probs"], outputs["test"]["targets"], metrics["classes"])
    add_calibration(metrics, outputs, fit=False)
    scaled = pooled_calibration(fold_metrics, predictions)
    if scaled:
        metrics["calibration"] = {**scaled, "test": {**scaled["test"], "ece": metrics["test"]["ece"],
                                                    "nll": metrics["test"]["nll"]}}
    return metrics


def pooled_calibration(fold_metrics: list[dict], predictions: list[dict]) -> dict | None:
    """calibrate: true: each fold's logits divided by that fold's own temperature (fitted on its own
    validation images), then pooled; None where the folds fitted none."""
    temperatures = [m.get("calibration", {}).get("temperature") for m in fold_metrics]
    if any(t is None for t in temperatures):
        return None
    pooled = scaled_pool(predictions, temperatures)
    return {"temperature": float(np.mean(temperatures)), "per_fold": temperatures, "fitted_on": "val",
            "at_bound": any(m["calibration"].get("at_bound") for m in fold_metrics),
            "test": {"ece_scaled": ece(softmax(pooled["logits"], 1.0), pooled["targets"]),
                     "nll_scaled": nll(pooled["logits"], pooled["targets"])}}


def pooled_verdict(fold_metrics: list[dict]) -> dict:
    """The verdict most folds got (the first such on a tie), its numbers the folds' means."""
    verdicts = [m["verdict"] for m in fold_metrics]
    words = [v["verdict"] for v in verdicts]
    common = max(dict.fromkeys(words), key=words.count)
    example = next(j for j, word in enumerate(words) if word == common)
    listing = ", ".join(f"f{j} {word}" for j, word in enumerate(words))
    # The numbers are the example fold's, so that the sentence built from them agrees with its rule.
    return {**verdicts[example], "verdict": common, "per_fold": dict(Counter(words)),
            "explanation": f"{words.count(common)} of {len(words)} folds: {common} ({listing}); f{example}'s numbers: "
                           f"{verdicts[example]['explanation']}"}
