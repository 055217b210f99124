"""A run's own section of the report: its settings, scores, curves and plots; a repeated run's
repeats side by side."""
from __future__ import annotations

import numpy as np

from .captions import RUN_PLOTS
from .groups import Group, verdict_counts
from .weights import weights_blocks
from ..runner.results.records import RunRecord

Blocks = list[tuple[str, object]]


def _settings(cfg: dict, metrics: dict | None = None) -> str:
    if metrics and metrics.get("recipe"):
        return (f"Recipe: {metrics['recipe']}. Epochs {cfg['train']['epochs']}, batch {cfg['train']['batch_size']}, "
                f"image {cfg['data']['image_size']} px, freeze {cfg['model']['freeze']}, dataset "
                f"{cfg['data']['dataset']}, seed {cfg['seed']}.")
    return (f"Hyper-parameters: epochs {cfg['train']['epochs']}, batch {cfg['train']['batch_size']}, "
            f"lr {cfg['train']['lr']}, image {cfg['data']['image_size']} px, augment {cfg['augment']}, "
            f"freeze {cfg['model']['freeze']}, dataset {cfg['data']['dataset']}, seed {cfg['seed']}.")


def fold_line(metrics: dict) -> str:
    folds, test = metrics["folds"], metrics["test"]
    accs = [f"{a * 100:.1f}" for a in folds["test_acc"]]
    return (f"{folds['k']}-fold cross-validation, every one of the {test['n']} images tested once: accuracy "
            f"{test['accuracy'] * 100:.2f}%, macro F1 {test['f1_macro'] * 100:.2f}% (pooled out-of-fold predictions); "
            f"per fold {', '.join(accs)}% ({np.mean(folds['test_acc']) * 100:.1f} ± "
            f"{np.std(folds['test_acc'], ddof=1) * 100:.1f}); validation {metrics['best_val_acc'] * 100:.2f}% "
            f"(the folds' mean, at their best epochs {', '.join(map(str, folds['best_epoch']))}). The folds' models, "
            "curves and explanations are in f0 ... f" + f"{folds['k'] - 1}.")


def _scores(metrics: dict) -> Blocks:
    scored = metrics["scored_on"]
    line = (f"Best epoch {metrics['best_epoch']}: val accuracy {metrics['best_val_acc'] * 100:.2f}%; "
            f"{scored} accuracy {metrics[scored]['accuracy'] * 100:.2f}%, macro F1 "
            f"{metrics[scored]['f1_macro'] * 100:.2f}%.") if "folds" not in metrics else fold_line(metrics)
    stopped = metrics.get("stopped", {})
    if stopped.get("reason") == "early_stopping":
        line += (f" Early stopping ended training at epoch {stopped['epoch']}; best.pt is epoch "
                 f"{stopped['best_epoch']}, the best by {stopped['metric']}.")
    origin = metrics["split"]["origin"]
    split = "Split: " + "; ".join(f"{part} {metrics['split']['sizes'][part]} images ({origin[part]})"
                                  for part in origin) + "."
    blocks: Blocks = [("p", line), ("p", split)]
    if "ece" in metrics[scored]:
        blocks.append(("p", calibration_words(metrics)))
    if scored != "test":
        blocks.append(("p", "**No held-out test split**: these scores are on the validation images that chose "
                            "best.pt, so they are optimistic (split.test is 0)."))
    return blocks


def calibration_words(metrics: dict) -> str:
    scored = metrics["scored_on"]
    words = (f"Calibration on {scored}: expected calibration error {metrics[scored]['ece'] * 100:.1f}% (15 bins, "
             f"top label), negative log-likelihood {metrics[scored]['nll']:.3f}.")
    fitted = metrics.get("calibration")
    if fitted and scored in fitted:
        fitted_words = f"Temperature {fitted['temperature']:.2f} (fitted on validation) brings" \
            if "per_fold" not in fitted else \
            f"Each fold's own temperature ({', '.join(f'{t:.2f}' for t in fitted['per_fold'])}, fitted on its validation) brings"
        words += (f" {fitted_words} them to "
                  f"{fitted[scored]['ece_scaled'] * 100:.1f}% and {fitted[scored]['nll_scaled']:.3f}; predict and "
                  "export use it.")
        if fitted.get("at_bound"):
            words += " **The temperature stopped at the end of its search range**: the best one lies beyond it."
    return words


def run_blocks(record: RunRecord, model_name: str, title: str = "") -> Blocks:
    """A run's section, from its own folder: settings from its fingerprint, scores from its metrics."""
    name = record.label.split("/", 1)[1]
    if record.metrics is None:
        return [("h3", f"{name} ({model_name})"), ("p", f"No results: {record.problem}.")]
    metrics, run_dir = record.metrics, record.run_dir
    verdict = metrics["verdict"]
    blocks: Blocks = [
        ("h3", f"{name} — {metrics['model']} ({metrics['init']}){title}"),
        ("p", f"Parameters: {metrics['total_params']:,} ({metrics['trainable_params']:,} trainable). "
              + _settings(record.config, metrics)),
        *weights_blocks(metrics, record.config), ("pre", metrics["final_epoch_line"]), *_scores(metrics),
        ("p", f"Verdict: **{verdict['verdict']}** — {verdict['explanation']}."),
        ("details", (run_dir / "model.txt").read_text(encoding="utf-8"))]
    blocks += [("img", run_dir / "plots" / png) for png in RUN_PLOTS if (run_dir / "plots" / png).exists()]
    if metrics["skipped_images"]:
        blocks.append(("p", f"{len(metrics['skipped_images'])} unreadable image(s) were left out "
                            "(listed in metrics.json)."))
    return blocks


def repeated_blocks(records: list[RunRecord], group: Group | None, model_name: str) -> Blocks:
    """A repeated run: the repeats in one line, then the detail of its best repeat."""
    if group is None:
        return [("h3", f"{records[0].run_id.split('/')[1]} ({model_name})"), ("p", "No repeat has finished yet.")]
    best = group.records[group.representative]
    counts = verdict_counts(group)
    stats = group.summary("test_acc")
    low, high = np.clip(stats["ci95"], 0.0, 1.0) if stats["ci95"] else (None, None)
    interval = f" (95% CI {low * 100:.1f}–{high * 100:.1f})" if stats["ci95"] else ""
    seeds = ", ".join(str(m["seed"]) for m in group.metrics)
    line = (f"Over {len(group.records)} of {len(records)} repeats (seeds {seeds}): test accuracy "
            f"{group.mean_std_text('test_acc')}%{interval}, macro F1 {group.mean_std_text('f1')}%, "
            f"verdicts: {counts}.")
    return run_blocks(best, model_name, f", repeat r{best.repeat}: the best by validation accuracy") + [("p", line)]
