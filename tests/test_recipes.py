"""Training recipes: optimizers, schedules, early stopping, augmentation policies, imbalance, EMA.
Runs that do not use them keep their fingerprint and their numbers (pinned against cnnstudy 0.4)."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cnnstudy.config import AugmentConfig, RunConfig, StudyError, TrainConfig
from cnnstudy.data.policies import apply_policy, draw_epoch, erase, mix
from cnnstudy.fileio import read_json, read_jsonl
from cnnstudy.models.checkpoint import load_checkpoint_file
from cnnstudy.runner.planning.fingerprint import differences
from cnnstudy.runner.study import run_study
from cnnstudy.training.recipe import (build_schedule, build_optimizer, class_weight_tensor, make_recipe, track,
                                      parameter_groups, step_schedule)

from helpers import make_image_folder, run_quiet_study, write_study

GOLDEN = Path(__file__).parent / "data" / "seed_recipe_history.json"
SEED_RECIPES = """
  - name: p
    runs:
      - {name: plain, model: cnn_baseline, train: {precision: fp32}}
      - {name: seedaug, model: cnn_regularized, augment: seed, train: {precision: fp32}}
      - {name: pil, model: cnn_slim, augment: seed, data: {loader: torchvision}, train: {precision: fp32}}
"""


def test_runs_without_the_new_keys_keep_their_fingerprint_and_numbers(tmp_path):
    golden = json.loads(GOLDEN.read_text())
    _, study = run_quiet_study(tmp_path, SEED_RECIPES, ["train.epochs=3", "train.lr=0.0002"], seed=3)
    for run in ("plain", "seedaug", "pil"):
        config = read_json(study / "p" / run / "fingerprint.json")["config"]
        config["data"].pop("dataset")
        assert config == golden[run]["config"], run
        rows = read_jsonl(study / "p" / run / "history.jsonl")
        for old, new in zip(golden[run]["history"], rows, strict=True):
            for key, value in old.items():  # fp32: only the last bits may differ between CPU kinds and
                # thread counts, which can tip one borderline image of these 18 or 6 (an accuracy step)
                tolerance = {"abs": 0.06} if key.endswith("acc") else {"rel": 1e-3}
                assert new[key] == pytest.approx(value, **tolerance), (run, old["epoch"], key)


def _run(**train) -> RunConfig:
    return RunConfig(name="r", phase="p", model="cnn_baseline", data={"dataset": "x"}, train=train)


@pytest.mark.parametrize("train, words", [
    ({"optimizer": "lion"}, "train.optimizer"),
    ({"momentum": 0.9}, "momentum does nothing with optimizer adam"),
    ({"schedule": "onecycle"}, "set train.epochs"),
    ({"early_stopping": {"metric": "val_f1"}}, "train.early_stopping.metric"),
    ({"ema": 1.0}, "train.ema"),
    ({"ema": 0}, "train.ema"),
    ({"gamma": 0.5}, "gamma does nothing with schedule constant"),
    ({"schedule": "onecycle", "epochs": 4, "warmup_epochs": 3}, "warmup_epochs at most epochs - 2"),
    ({"optimizer": "sgd", "momentum": 0, "nesterov": True}, "nesterov needs momentum above 0"),
    ({"warmup_epochs": 10, "epochs": 10}, "warmup_epochs (10) must be fewer than epochs"),
])
def test_bad_recipes_are_refused_naming_the_key(train, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        _run(**train)


def test_bad_augment_and_class_weights_are_named(tmp_path):
    from cnnstudy.runner.planning.studyfile import problem_lines
    from pydantic import ValidationError
    with pytest.raises(ValidationError) as err:
        RunConfig(name="r", phase="p", model="cnn_baseline", data={"dataset": "x"}, augment={"polcy": "rand"})
    assert problem_lines(err.value, RunConfig) == ["unknown key augment.polcy (did you mean augment.policy?)"]
    data = make_image_folder(tmp_path / "colors", per_class=6)
    study = write_study(tmp_path / "s.yaml", data, """
  - name: p
    runs:
      - {name: weighted, model: cnn_baseline, train: {class_weights: [1, 2]}}
""")
    with pytest.raises(StudyError, match=r"train.class_weights has 2 weights, but .* has 3 classes \(blue, green, red\)"):
        run_study(study, out_dir=tmp_path / "runs", log=lambda _: None)
    assert not (tmp_path / "runs" / "tiny" / "p").exists()


def test_weight_decay_spares_normalization_and_biases():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    decay, spared = parameter_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and spared["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[3].weight)}
    assert len(spared["params"]) == 4  # conv and linear biases, BatchNorm weight and bias
    (single,) = parameter_groups(model, 0.0)  # no decay: one group in the model's order (old last.pt files)
    assert [id(p) for p in single["params"]] == [id(p) for p in model.parameters()]


def test_warmup_then_cosine_follows_its_formula_and_steps_once_per_epoch():
    train = TrainConfig(epochs=6, lr=0.1, schedule="cosine", warmup_epochs=2, min_lr=0.001)
    optimizer = build_optimizer(nn.Linear(2, 2), train)
    schedule = build_schedule(optimizer, train)
    seen = []
    for epoch in range(1, 7):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        step_schedule(schedule, None, epoch, 6, 0.0)
    warm = [0.1 * (0.01 + 0.99 * k / 2) for k in range(2)]
    cosine = [0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * k / 4)) / 2 for k in range(4)]
    assert seen == pytest.approx(warm + cosine)


def test_early_stopping_counts_patience_after_the_best_epoch():
    from cnnstudy.config import EarlyStopping
    rows = [{"epoch": e, "val_loss": loss, "val_acc": 0.5} for e, loss in enumerate([1.0, 0.8, 0.81, 0.79, 0.9, 0.95], 1)]
    assert track(rows, "val_loss", EarlyStopping(patience=2)).stop_epoch == 6
    assert track(rows, "val_loss", EarlyStopping(patience=2, min_delta=0.05)).stop_epoch == 4  # 0.79: no real gain
    assert track(rows, "val_loss", EarlyStopping(patience=5)).stop_epoch is None
    assert track(rows, "val_loss").stop_epoch is None


def test_min_delta_decides_the_best_epoch_as_it_decides_stopping():
    """Keras' EarlyStopping(min_delta, restore_best_weights): the restored epoch is the last one the
    rule counted as an improvement, not the lowest value."""
    from cnnstudy.config import EarlyStopping
    rows = [{"epoch": e, "val_loss": loss, "val_acc": 0.5} for e, loss in enumerate([1.0, 0.998, 0.996, 0.994], 1)]
    assert track(rows, "val_loss", EarlyStopping(metric="val_loss", patience=3, min_delta=0.01)) == (1, 4)
    assert track(rows, "val_loss", EarlyStopping(metric="val_loss", patience=3)) == (4, None)
    ties = [{"epoch": e, "val_acc": acc} for e, acc in enumerate([0.5, 0.7, 0.7, 0.6], 1)]
    assert track(ties).best_epoch == 2  # the first of equal epochs


def test_fit_keeps_the_epoch_the_stopping_rule_counts_as_best(tmp_path, monkeypatch):
    from cnnstudy.training import engine

    losses = iter([1.0, 0.998, 0.996, 0.994, 0.992])
    monkeypatch.setattr(engine, "_measure", lambda model, loaders, loop: {"val_loss": next(losses), "val_acc": 0.5})

    class Batches(list):
        def set_epoch(self, epoch):
            pass

    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    train = TrainConfig(epochs=5, precision="fp32", early_stopping={"metric": "val_loss", "patience": 3,
                                                                    "min_delta": 0.01})
    optimizer, recipe = make_recipe(train, model, [0, 1], 2, torch.device("cpu"))
    loaders = {"train": Batches([(torch.rand(2, 3, 4, 4), torch.tensor([0, 1]), torch.tensor([0, 1]))])}
    loop = engine.Loop(torch.device("cpu"), 5, log=lambda _: None, progress=False)
    state = engine.fit(model, optimizer, loaders, tmp_path, {"class_names": ["a", "b"]}, loop, recipe)
    assert (state.epoch, state.best_epoch, state.stopped["epoch"], state.stopped["best_epoch"]) == (4, 1, 4, 1)
    assert load_checkpoint_file(tmp_path / "best.pt")["epoch"] == 1


def test_adamw_decays_nothing_unless_asked():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    for optimizer in ("adam", "adamw", "sgd", "rmsprop"):
        groups = build_optimizer(model, TrainConfig(optimizer=optimizer)).param_groups
        assert [group["weight_decay"] for group in groups] == [0.0], optimizer


def test_onecycle_peaks_after_the_warmup_like_the_other_schedules():
    for warmup in (0, 1, 2):
        train = TrainConfig(epochs=6, lr=0.1, schedule="onecycle", warmup_epochs=warmup)
        optimizer = build_optimizer(nn.Linear(2, 2), train)
        schedule, seen = build_schedule(optimizer, train), []
        for epoch in range(1, 7):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            step_schedule(schedule, None, epoch, 6, 0.0)
        peak = max(range(6), key=seen.__getitem__)
        assert peak == (warmup or 2) and seen[peak] == pytest.approx(0.1), seen  # default: 30 % of 6 epochs


def test_the_recipe_line_shows_every_part_set():
    from cnnstudy.training.recipe import recipe_line
    line = recipe_line(TrainConfig(schedule="cosine", min_lr=1e-4, early_stopping={"patience": 3, "min_delta": 0.01}),
                       AugmentConfig(policy="trivialaugment", flip=False))
    assert line == ("adam lr 0.001, cosine schedule to 0.0001, early stopping on val_loss (patience 3, min_delta 0.01); "
                    "augment trivialaugment, flip false")


def test_balanced_class_weights_are_scikit_learns():
    weights = class_weight_tensor(TrainConfig(class_weights="balanced"), [0] * 90 + [1] * 10, 2)
    assert weights.tolist() == pytest.approx([100 / (2 * 90), 100 / (2 * 10)])


@pytest.mark.parametrize("policy", ["trivialaugment", "randaugment", "autoaugment"])
def test_policies_draw_per_image_and_repeat_with_the_seed(policy):
    settings = AugmentConfig(policy=policy)
    images = torch.rand(1, 3, 32, 32).mul(255).floor().expand(64, 3, 32, 32).contiguous()
    draws = draw_epoch(settings, seed=1, epoch=2, count=64, size=32, batches=1)
    again = draw_epoch(settings, seed=1, epoch=2, count=64, size=32, batches=1)
    out = apply_policy(images, draws["policy"])
    distinct = {tuple(row.flatten()[:200].tolist()) for row in out}
    assert len(distinct) > 16, "one batch of identical images should come out in many different ways"
    assert torch.equal(out, apply_policy(images, again["policy"]))
    assert out.min() >= 0 and out.max() <= 255
    other = draw_epoch(settings, seed=1, epoch=3, count=64, size=32, batches=1)
    assert not torch.equal(out, apply_policy(images, other["policy"]))


def test_cutmix_labels_carry_the_area_each_image_keeps():
    settings = AugmentConfig(cutmix=1.0)
    draws = draw_epoch(settings, seed=0, epoch=1, count=8, size=16, batches=4)["mix"]
    images = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 3, 16, 16).contiguous()
    for batch in range(4):
        mixed, soft = mix(images, torch.tensor([0, 1, 2, 3]), draws, batch, 4)
        assert soft.sum(1).tolist() == pytest.approx([1.0] * 4)
        partner = int(soft[0, 1:].argmax()) + 1  # never itself
        kept = (mixed[0] == 0).float().mean().item()  # image 0's own pixels; the rest came from its partner
        assert soft[0, 0].item() == pytest.approx(kept) and soft[0, partner].item() == pytest.approx(1 - kept)
        assert set(mixed[0].unique().tolist()) <= {0.0, float(partner)}


def test_mixing_partners_are_random_not_neighbours():
    from cnnstudy.data.policies import partners
    pairs = [partners(32, seed) for seed in range(200)]
    assert all((p != torch.arange(32)).all() and sorted(p.tolist()) == list(range(32)) for p in pairs)
    neighbours = np.mean([((p - torch.arange(32)).abs() == 1).float().mean().item() for p in pairs])
    assert neighbours < 0.15  # a batch is read in class order: neighbours would mostly share a class


def test_erasing_clears_a_box_of_the_chosen_images_only():
    draws = draw_epoch(AugmentConfig(erase=0.5), seed=0, epoch=1, count=200, size=16, batches=1)["erase"]
    out = erase(torch.ones(200, 3, 16, 16), draws, torch.arange(200))
    cleared = (out == 0).flatten(1).any(1).numpy()
    assert (cleared == draws["on"]).all() and 60 < cleared.sum() < 140


def test_balanced_sampler_draws_each_class_equally(tmp_path):
    from cnnstudy.data.loaders import CachedLoader
    labels = [0] * 90 + [1] * 10
    loader = CachedLoader(np.zeros((100, 4, 4, 3), np.uint8), labels, 25, ((0,) * 3, (1,) * 3), torch.device("cpu"),
                          shuffle=True, balanced=True, num_classes=2)
    drawn = []
    for epoch in range(1, 6):
        loader.set_epoch(epoch)
        drawn += [label for _, batch, _ in loader for label in batch.tolist()]
    assert len(drawn) == 500 and 0.4 < np.mean(drawn) < 0.6  # 10 % of the images, about half the draws


RECIPE = """
  - name: p
    runs:
      - {name: modern, model: cnn_regularized,
         augment: {policy: trivialaugment, crop: random-resized, erase: 0.25, mixup: 0.2, cutmix: 1.0},
         train: {precision: fp32, epochs: 4, optimizer: adamw, weight_decay: 0.05, schedule: cosine,
                 warmup_epochs: 1, label_smoothing: 0.1, ema: 0.9, grad_clip: 5.0}}
"""


def test_a_modern_recipe_runs_and_records_its_lr_and_recipe(tmp_path):
    _, study = run_quiet_study(tmp_path, RECIPE, [], seed=0)
    run = study / "p" / "modern"
    rows = read_jsonl(run / "history.jsonl")
    assert [row["lr"] for row in rows] == pytest.approx([0.002 * 0.01, 0.002, 0.0015, 0.0005])
    metrics = read_json(run / "metrics.json")
    assert metrics["stopped"] == {"reason": "epochs", "epoch": 4, "best_epoch": metrics["best_epoch"]}
    assert metrics["recipe"].startswith("adamw lr 0.002, weight decay 0.05, cosine schedule after 1 warmup")
    last = load_checkpoint_file(run / "last.pt")
    assert {"schedule", "ema"} <= last.keys()
    best = load_checkpoint_file(run / "best.pt")
    averaged = {k.removeprefix("module."): v for k, v in last["ema"].items() if k.startswith("module.")}
    if best["epoch"] == 4:  # best.pt holds the averaged weights, which are what was evaluated
        assert all(torch.equal(best["model"][k], averaged[k]) for k in averaged)


def noise_folder(root: Path, per_class: int = 20) -> Path:
    """Three classes of the same random noise: nothing to learn, so validation loss soon rises."""
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def test_early_stopping_ends_the_run_and_scores_the_restored_best_epoch(tmp_path):
    study = write_study(tmp_path / "s.yaml", noise_folder(tmp_path / "noise"), """
  - name: p
    runs:
      - {name: stop, model: cnn_baseline, train: {precision: fp32, epochs: 15, lr: 0.003,
         early_stopping: {metric: val_loss, patience: 2}}}
""")
    study_dir = run_study(study, out_dir=tmp_path / "runs", log=lambda _: None)
    run = study_dir / "p" / "stop"
    rows, metrics = read_jsonl(run / "history.jsonl"), read_json(run / "metrics.json")
    stopped = metrics["stopped"]
    assert stopped["reason"] == "early_stopping" and stopped["epoch"] == len(rows) < 15
    best = min(rows, key=lambda row: row["val_loss"])
    assert stopped["best_epoch"] == best["epoch"] == metrics["best_epoch"] == load_checkpoint_file(run / "best.pt")["epoch"]
    assert rows[-1]["stopped"] == "early_stopping" and len(rows) - best["epoch"] == 2
    assert metrics["val"]["accuracy"] == pytest.approx(best["val_acc"])  # scored from the restored epoch


def test_a_recipe_key_changes_the_fingerprint_and_says_which():
    base = _run()
    from cnnstudy.runner.planning.fingerprint import make_fingerprint

    class FakeSplit:
        dataset, digest = "d", "x"
    old = make_fingerprint(base, FakeSplit, {}, None)
    new = make_fingerprint(_run(optimizer="sgd"), FakeSplit, {}, None)
    assert "optimizer" not in old["config"]["train"]
    assert differences(old, new) == ["train.optimizer: 'adam' -> 'sgd'"]
    decayed = make_fingerprint(_run(weight_decay=0.01), FakeSplit, {}, None)
    before = json.loads(json.dumps(decayed))
    before["config"]["train"].pop("decay_spares")  # as cnnstudy 0.4 recorded it: every parameter decayed
    assert differences(before, decayed) == ["train.decay_spares: '(unset)' -> 'normalization and biases'"]


def test_recipe_keys_and_augment_parts_can_be_swept():
    from cnnstudy.runner.search.sweep import check_sweep, trial_config
    cfg = RunConfig(name="r", phase="p", model="cnn_baseline", data={"dataset": "x"}, augment="seed",
                    sweep={"params": {"train.optimizer": ["adam", "adamw"], "train.schedule": ["constant", "cosine"],
                                      "augment.policy": ["seed", "trivialaugment"], "train.label_smoothing":
                                      {"low": 0.0, "high": 0.2}}})
    assert len(check_sweep(cfg, "run p/r")) == 8
    trial = trial_config(cfg, {"augment.policy": "trivialaugment", "train.schedule": "cosine"})
    assert trial.augment.policy == "trivialaugment" and trial.train.schedule == "cosine"
    cycle = cfg.model_copy(update={"sweep": cfg.sweep.model_copy(update={"params": {"train.schedule": ["onecycle"]}})})
    with pytest.raises(StudyError, match="schedule onecycle spans train.epochs, which is not set"):
        check_sweep(cycle, "run p/r")
    swept_epochs = cfg.model_copy(update={"sweep": cfg.sweep.model_copy(
        update={"params": {"train.schedule": ["cosine", "onecycle"], "train.epochs": [5, 10]}})})
    assert len(check_sweep(swept_epochs, "run p/r")) == 4  # every trial sets the epochs onecycle needs
    wrong = cfg.model_copy(update={"sweep": cfg.sweep.model_copy(update={"params": {"train.momentum": [0.8, 0.9]}})})
    with pytest.raises(StudyError, match="sweep.params.train.momentum value 0.8: train: momentum does nothing with "
                                         "optimizer adam"):
        check_sweep(wrong, "run p/r")


def test_weight_decay_spares_what_a_timm_model_lists_as_timm_does():
    """timm's `param_groups_weight_decay` (with the model's no_weight_decay() names) is the reference."""
    timm = pytest.importorskip("timm")
    from timm.optim import param_groups_weight_decay

    model = timm.create_model("vit_tiny_patch16_224", img_size=32, num_classes=3)
    assert {"pos_embed", "cls_token"} <= set(model.no_weight_decay())
    ours = parameter_groups(model, 0.05)
    theirs = param_groups_weight_decay(model, 0.05, no_weight_decay_list=model.no_weight_decay())
    by_decay = {group["weight_decay"]: {id(p) for p in group["params"]} for group in ours}
    assert by_decay == {group["weight_decay"]: {id(p) for p in group["params"]} for group in theirs}
    assert id(model.pos_embed) in by_decay[0.0] and id(model.cls_token) in by_decay[0.0]


def test_weight_decay_reads_no_weight_decay_patterns():
    class Listed(nn.Module):
        def __init__(self):
            super().__init__()
            self.table = nn.Parameter(torch.zeros(2, 2))
            self.relative_bias_table = nn.Parameter(torch.zeros(2, 2))  # a name ending in "bias_table" decays
            self.proj = nn.Linear(2, 2)

        def no_weight_decay(self):
            return {"tab*"}

    model = Listed()
    decay, spared = parameter_groups(model, 0.1)
    assert [id(p) for p in decay["params"]] == [id(model.relative_bias_table), id(model.proj.weight)]
    assert [id(p) for p in spared["params"]] == [id(model.table), id(model.proj.bias)]


@pytest.mark.parametrize("train, judged", [({"early_stopping": {"metric": "val_loss", "patience": 3}}, 2),
                                           ({"ema": 0.9}, 2), ({}, 5)])
def test_the_verdict_reads_the_epoch_a_run_is_scored_on(train, judged):
    """Early stopping waits out its patience past the best epoch and an EMA run hands on best.pt's
    average: both are judged where they are scored. A plain run is judged at its last epoch."""
    from types import SimpleNamespace

    from cnnstudy.runner.results.artifacts import run_metrics

    rows = [{"epoch": e, "train_loss": 0.5, "train_acc": t, "train_eval_acc": t, "val_acc": v, "val_loss": loss, "seconds": 1.0}
            for e, (t, v, loss) in enumerate([(0.80, 0.78, 0.60), (0.86, 0.84, 0.45), (0.93, 0.80, 0.55),
                                              (0.97, 0.79, 0.62), (0.99, 0.78, 0.70)], 1)]
    split = SimpleNamespace(dataset="d", digest="x", origin="made", skipped=[], classes=["a", "b"],
                            train=[("i", 0), ("j", 1)], val=[], test=[])
    metrics = run_metrics(_run(epochs=5, **train), rows, {}, split, {}, best_epoch=2)
    assert metrics["verdict"]["epoch"] == judged
    assert metrics["verdict"]["verdict"] == ("fits well" if judged == 2 else "overfit")
    assert metrics["verdict"]["explanation"].endswith("(at epoch 2, the scored one)") == (judged == 2)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_class_weights_give_one_hot_probabilities_the_loss_of_their_labels(smoothing):
    """Mixup/cutmix hand the loss probabilities: one-hot rows must cost what their labels cost."""
    from cnnstudy.training.recipe import build_criterion

    train = TrainConfig(class_weights=[1.0, 2.0, 4.0], label_smoothing=smoothing)
    criterion = build_criterion(train, [0, 1, 2], 3, torch.device("cpu"))
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 0, 0, 1, 2, 2])
    hard, soft = criterion(logits, labels), criterion(logits, nn.functional.one_hot(labels, 3).float())
    assert soft.item() == pytest.approx(hard.item(), rel=1e-6)
    mixed = 0.3 * nn.functional.one_hot(labels, 3).float() + 0.7 * nn.functional.one_hot(labels.flip(0), 3).float()
    weights = torch.tensor([1.0, 2.0, 4.0])
    expected = (0.3 * nn.functional.cross_entropy(logits, labels, weight=weights, reduction="sum",
                                                  label_smoothing=smoothing)
                + 0.7 * nn.functional.cross_entropy(logits, labels.flip(0), weight=weights, reduction="sum",
                                                    label_smoothing=smoothing)) / (mixed @ weights).sum()
    assert criterion(logits, mixed).item() == pytest.approx(expected.item(), rel=1e-6)


def test_a_run_made_before_the_reference_fixes_is_not_reused():
    """A recipe whose training changed (EMA warmup, torchvision's crop boxes, ...) marks its fingerprint:
    the same config made before the change differs, and says why; a recipe using none keeps its own."""
    from cnnstudy.runner.planning.fingerprint import make_fingerprint

    class FakeSplit:
        dataset, digest = "d", "x"
    ema = make_fingerprint(_run(ema=0.999), FakeSplit, {}, None)
    assert ema["config"]["train"]["follows"] == ["ema warmup"]
    before = {**ema, "config": {**ema["config"], "train": {k: v for k, v in ema["config"]["train"].items()
                                                          if k != "follows"}}}
    (line,) = differences(before, ema)
    assert "ema warmup" in line and "made before" in line
    assert "follows" not in make_fingerprint(_run(), FakeSplit, {}, None)["config"]["train"]


def test_the_ema_warms_up_as_timms_model_ema_v3():
    """timm's ModelEmaV3(use_warmup=True), updated with the 1-based step count, is the reference: the
    same weights after every update, so that 80 updates at decay 0.999 no longer keep 92 % of the start."""
    timm = pytest.importorskip("timm")
    from cnnstudy.training.recipe import build_ema

    model = nn.Linear(3, 2)
    ours = build_ema(model, 0.999)
    theirs = timm.utils.ModelEmaV3(model, decay=0.999, use_warmup=True, stochastic_rounding=False)
    start = model.weight.detach().clone()
    for step in range(1, 81):
        with torch.no_grad():
            model.weight.add_(1.0)
        ours.update_parameters(model)
        theirs.update(model, step=step)
        assert torch.allclose(ours.module.weight, theirs.module.weight, atol=1e-5), step
    left = ((model.weight - ours.module.weight) / (model.weight - start)).detach()  # the share still at the start
    assert float(left.mean()) < 0.2


def test_an_early_stopped_run_judged_by_an_older_cnnstudy_is_judged_again_at_its_scored_epoch(tmp_path):
    from cnnstudy.data.splits import Split
    from cnnstudy.runner.results.records import rejudged

    rows = [{"epoch": e, "train_loss": 0.5, "train_acc": t, "train_eval_acc": t, "val_acc": v, "val_loss": loss}
            for e, (t, v, loss) in enumerate([(0.80, 0.78, 0.60), (0.86, 0.84, 0.45), (0.97, 0.79, 0.62),
                                              (0.99, 0.78, 0.70)], 1)]
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    Split("d", ["a", "b"], [("i", 0), ("j", 1)], [], []).save(tmp_path / "split.json")
    old = {"best_epoch": 2, "verdict": {"verdict": "overfit", "chance": 0.5, "gap": 0.21, "explanation": "..."}}
    config = {"train": {"early_stopping": {"metric": "val_loss", "patience": 2}}}
    again = rejudged(old, tmp_path, config)["verdict"]
    assert (again["verdict"], again["epoch"]) == ("fits well", 2)
    assert again["explanation"].endswith("(at epoch 2, the scored one)")
    assert rejudged(old, tmp_path, {"train": {}}) is old  # a plain run was judged at its last epoch, as now
