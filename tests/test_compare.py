"""Which runs are compared, with what, and the words that follow the numbers."""
import numpy as np
import pytest

from cnnstudy.report.compare import comparisons, compare_pair
from cnnstudy.report.answer import answer
from cnnstudy.report.findings import calibration_notes
from cnnstudy.report.groups import Group
from cnnstudy.training.metrics import overfitting_verdict
from cnnstudy.runner.results.records import RunRecord
from cnnstudy.report.stats import words

PREVIOUS = {"p1": ["previous"], "p2": ["previous"], "p3": ["previous"], "p4": ["previous"]}


def test_welch_matches_scipy():
    from scipy import stats as st
    from cnnstudy.report.stats import welch

    result = welch([0.80, 0.82, 0.81], [0.70, 0.73, 0.69])
    assert result["p"] == pytest.approx(st.ttest_ind([0.80, 0.82, 0.81], [0.70, 0.73, 0.69], equal_var=False).pvalue)


EXPLAINED = {  # as training.metrics.overfitting_verdict words them
    "did not learn": "train accuracy 50.0% (eval mode, 64 un-augmented training images) is near chance (50.0%, the "
                     "commonest class; below 55.0%, 10% of the way to 100%): the model learned nothing of the training set",
    "overfit": "train accuracy 90.0% (eval mode, 64 un-augmented training images) vs validation 70.0%: gap 20.0 "
               "points (limit 10)",
    "fits well": "train accuracy 90.0% (eval mode, 64 un-augmented training images) vs validation 89.0%: gap 1.0 "
                 "points (limit 10); validation loss 0.400 against its minimum 0.390 at epoch 2 (+3%, +0.010; "
                 "overfit above +20% and +0.05)"}


def make_group(tmp_path, run_id, correct_per_repeat, verdict="fits well", init="scratch", dataset="/d/colors",
               model="m", val=None):
    records = []
    for k, correct in enumerate(correct_per_repeat):
        run_dir = tmp_path / run_id / f"r{k}"
        run_dir.mkdir(parents=True)
        correct = np.asarray(correct, bool)
        targets = np.zeros(len(correct), int)
        probs = np.where(correct[:, None], [[0.9, 0.1]], [[0.1, 0.9]])
        np.savez(run_dir / "predictions.npz", test_probs=probs, test_targets=targets,
                 test_ids=np.array([f"img{i}" for i in range(len(correct))]))
        scores = {"accuracy": correct.mean(), "f1_macro": correct.mean(), "precision_macro": 0.5,
                  "recall_macro": 0.5, "auc_macro": 0.5, "n": len(correct)}
        metrics = {"run": run_id, "model": model, "init": init, "dataset": dataset, "scored_on": "test",
                   "split": {"digest": "same"}, "test": scores, "best_val_acc": correct.mean() if val is None else val,
                   "best_train_acc": 1.0, "seconds_per_epoch": 1.0, "seed": k,
                   "verdict": {"verdict": verdict, "gap": 0.2 if verdict == "overfit" else 0.01,
                               "train_acc_used": 0.9, "explanation": EXPLAINED[verdict]}}
        records.append(RunRecord(run_id, k, run_dir, {}, metrics, None))
    return Group(run_id, run_id.split("/")[0], records)


def said(answered) -> str:
    """The answer's takeaway and items as one text."""
    lead, items = answered
    return " ".join([lead or "", *items])


def phases(*names, compare=None):
    return [{"name": name, "title": "", "compare": (compare or {}).get(name, "previous"), "runs": []} for name in names]


def test_words_follow_the_numbers_and_each_pair_is_stated_once(tmp_path):
    rng = np.random.default_rng(2)
    base = rng.random(400) < 0.6
    clearly_better = base | (rng.random(400) < 0.6)
    same = make_group(tmp_path, "p1/a", [base])
    twin = make_group(tmp_path, "p2/b", [base.copy()])
    better = make_group(tmp_path, "p3/c", [clearly_better])
    assert compare_pair(twin, same)["p"] == 1.0
    found = comparisons([same, twin, better], PREVIOUS)
    confirmatory = [c for c in found if c["family"] == "confirmatory"]
    assert [(c["a"], c["b"]) for c in confirmatory] == [("p2/b", "p1/a"), ("p3/c", "p2/b")]
    assert confirmatory[1]["words"] == "better" and confirmatory[1]["ci"][0] > 0 and confirmatory[1]["level"] == 0.975
    text = said(answer([same, twin, better], found, phases("p1", "p2", "p3"), [], []))
    assert "b against p1/a: +0.0 points (97.5% CI " in text and "no clear difference (p = 1.00)" in text
    assert "c against p2/b: +" in text and ": better (p = " in text


def test_a_phase_compares_with_what_it_says_it_builds_on(tmp_path):
    rng = np.random.default_rng(4)
    base = make_group(tmp_path, "p1/base", [rng.random(300) < 0.6], verdict="overfit")
    slim = make_group(tmp_path, "p2/slim", [rng.random(300) < 0.6])
    reg = make_group(tmp_path, "p3/reg", [rng.random(300) < 0.8])
    found = comparisons([base, slim, reg], {"p1": ["previous"], "p2": ["previous"], "p3": ["p1"]})
    kinds = {(c["a"], c["b"]): c["kind"] for c in found if c["family"] == "confirmatory"}
    assert kinds == {("p2/slim", "p1/base"): "previous phase", ("p3/reg", "p1/base"): "against phase p1"}
    text = said(answer([base, slim, reg], found, phases("p1", "p2", "p3", compare={"p3": "p1"}), [], []))
    assert "reg against p1/base: +" in text and "the overfitting is gone (gap 1.0 vs 20.0 points)" in text
    # the rule that fired, with the table's gap; no validation figure other than the table's
    assert "base overfits (train-validation gap 20.0 points, limit 10)" in text


def test_repeated_runs_are_compared_over_their_repeats(tmp_path):
    rng = np.random.default_rng(3)
    low = make_group(tmp_path, "p1/low", [rng.random(300) < 0.60 for _ in range(3)], verdict="overfit")
    high = make_group(tmp_path, "p2/high", [rng.random(300) < 0.80 for _ in range(3)])
    result = compare_pair(high, low)
    assert result["method"].startswith("Welch")
    found = comparisons([low, high], PREVIOUS)
    assert found[0]["words"] == "better"
    text = said(answer([low, high], found, phases("p1", "p2"), [], []))
    assert "high against p1/low: +" in text and "the overfitting is gone" in text


def test_a_repeated_run_against_a_single_one_is_its_first_repeat_not_its_best(tmp_path):
    rng = np.random.default_rng(6)
    single = make_group(tmp_path, "p1/one", [rng.random(200) < 0.7])
    repeats = [rng.random(200) < 0.5, rng.random(200) < 0.9]  # r1 is the best by validation
    many = make_group(tmp_path, "p2/many", repeats)
    result = compare_pair(many, single)
    assert result["diff"] == pytest.approx(repeats[0].mean() - single.test_predictions(0)[2].mean())
    assert "p2/many r0 vs p1/one" in result["method"]


def test_against_scratch_pairs_one_architecture_or_names_the_confound(tmp_path):
    rng = np.random.default_rng(7)
    truth = rng.random(100) < 0.7
    scratch = make_group(tmp_path, "p4/r50_scratch", [truth], model="resnet50", dataset="/d/pets")
    lite = make_group(tmp_path, "p4/lite", [truth | (rng.random(100) < 0.5)], init="ImageNet", model="lite0",
                      dataset="/d/pets")
    found = comparisons([scratch, lite], {"p4": ["previous"]})
    assert found[0]["kind"] == "against scratch" and found[0]["note"] == \
        "lite0 vs resnet50: another architecture, not ImageNet pretraining alone"
    same = make_group(tmp_path, "p4/lite_scratch", [truth], model="lite0", dataset="/d/pets")
    found = comparisons([scratch, same, lite], {"p4": ["previous"]})
    assert comparisons([scratch, same, lite], {"p4": ["none"]}) == []  # none: the phase asks nothing
    assert [(c["a"], c["b"], c["note"]) for c in found if c["family"] == "confirmatory"] == \
        [("p4/lite", "p4/lite_scratch", "")]


def test_the_best_is_chosen_on_validation_not_on_test(tmp_path):
    rng = np.random.default_rng(8)
    lucky = make_group(tmp_path, "p4/lucky", [rng.random(100) < 0.9], val=0.60)  # best on test, not on val
    chosen = make_group(tmp_path, "p4/chosen", [rng.random(100) < 0.7], val=0.80)
    found = comparisons([lucky, chosen], {"p4": ["best"]})
    assert [(c["kind"], c["a"], c["b"]) for c in found if c["family"] == "confirmatory"] == \
        [("best by validation", "p4/chosen", "p4/lucky")]
    text = said(answer([lucky, chosen], found, phases("p4", compare={"p4": "best"}), [], []))
    assert "chosen, the best by validation on colors (80.0%), against lucky: -28.0 points" in text
    assert text.startswith("The one stated comparison is clear: p4/chosen trails p4/lucky by 28.0 points")
    assert "Best by validation accuracy" not in text  # the phase's own item named it: not said twice


def history(train_eval, val, val_losses, train=None):
    return [{"epoch": i + 1, "train_acc": (train or train_eval)[i], "train_eval_acc": train_eval[i],
             "train_eval_n": 500, "val_acc": val[i], "val_loss": val_losses[i]} for i in range(len(val))]


def test_tiny_losses_moving_by_noise_are_not_overfitting():
    lite0 = history([0.990, 0.996, 0.997], [0.990, 0.995, 0.996], [0.035, 0.021, 0.046])
    verdict = overfitting_verdict(lite0)
    assert verdict["verdict"] == "fits well"
    assert "eval mode, 500 un-augmented training images" in verdict["explanation"]
    assert "+0.025" in verdict["explanation"] and verdict["val_loss_rise"] > 1  # +119 %, but only 0.025
    real_rise = history([0.9, 0.95, 0.97], [0.85, 0.86, 0.86], [0.40, 0.30, 0.45])
    assert overfitting_verdict(real_rise)["verdict"] == "overfit"


def test_train_accuracy_is_judged_in_eval_mode_not_on_augmented_images():
    # Phase-3 CNN at 224 px: 63.5 % on augmented images in training mode, 74 % in eval mode.
    cnn = history([0.60, 0.74], [0.50, 0.70], [1.0, 0.8], train=[0.55, 0.635])
    verdict = overfitting_verdict(cnn)
    assert verdict["verdict"] == "fits well" and verdict["train_measured"] == "eval"
    assert verdict["gap"] == pytest.approx(0.04)
    old = [{k: v for k, v in row.items() if not k.startswith("train_eval")} for row in cnn]
    fallback = overfitting_verdict(old)
    assert fallback["verdict"] == "underfit" and "measured while training" in fallback["explanation"]


def test_worse_calibrated_is_said_once_per_stated_pair(tmp_path):
    a = make_group(tmp_path, "p2/a", [np.ones(50, bool)])
    b = make_group(tmp_path, "p1/b", [np.ones(50, bool)])
    a.metrics[0]["test"]["ece"], b.metrics[0]["test"]["ece"] = 0.08, 0.02
    row = {"a": "p2/a", "b": "p1/b", "diff": 0.1, "p": 0.001, "words": "better"}
    found = [{**row, "kind": "previous phase", "family": "confirmatory"},
             {**row, "kind": "by class", "class": "x", "family": "exploratory"}]
    assert len(calibration_notes([a, b], found)) == 1
    assert calibration_notes([a, b], found[1:]) == []


def test_a_model_at_chance_did_not_learn_and_is_never_called_overfit():
    # mobilenet_v2 from scratch on 3 classes: one class predicted, validation loss rising after epoch 1.
    stuck = history([0.333, 0.334, 0.333], [0.333, 0.333, 0.333], [1.18, 1.6, 2.05])
    verdict = overfitting_verdict(stuck, chance=1 / 3)
    assert verdict["verdict"] == "did not learn" and "near chance (33.3%" in verdict["explanation"]
    assert overfitting_verdict(stuck)["verdict"] == "overfit"  # what it was called without the chance level
    learning = history([0.5, 0.6], [0.45, 0.5], [1.0, 0.9])  # 3 classes, 60 %: learned something, underfit
    assert overfitting_verdict(learning, chance=1 / 3)["verdict"] == "underfit"


def test_a_tied_verdict_reads_the_same_in_the_words_and_the_gap_sentence():
    """Two repeats, one "overfit" and one "fits well": the run's verdict (the first on a tie) is what
    both the run's sentence and the "closes the gap" logic read."""
    from pathlib import Path

    from cnnstudy.report.findings import gap_words, state
    from cnnstudy.report.groups import Group, overfits
    from cnnstudy.runner.results.records import RunRecord

    def group(run_id, verdicts, gap):
        metrics = [{"verdict": {"verdict": v, "gap": gap, "train_acc_used": 0.9}, "scored_on": "val",
                    "best_val_acc": 0.8, "dataset": "d", "split": {"digest": "x"}, "val": {"accuracy": 0.8}}
                   for v in verdicts]
        return Group(run_id, "p", [RunRecord(run_id, k, Path("."), {}, m, None) for k, m in enumerate(metrics)])

    tied, fixed = group("p/plain", ["overfit", "fits well"], 0.15), group("p/reg", ["fits well", "fits well"], 0.02)
    assert overfits(tied) and tied.verdict == "overfit"
    assert state(tied).startswith("plain overfits in 1 of 2 repeats (")
    assert gap_words(fixed, tied) == "; the overfitting is gone (gap 2.0 vs 15.0 points)"
    assert "repeats" not in state(fixed)


def test_a_folded_run_is_said_with_the_rule_that_fired_and_the_tables_numbers(tmp_path):
    from cnnstudy.report.findings import best_runs, state

    group = make_group(tmp_path, "p1/folded", [np.ones(20, bool)], verdict="overfit")
    group.first["verdict"]["explanation"] = (
        "3 of 5 folds: overfit (f0 overfit, f1 fits well, f2 overfit, f3 overfit, f4 fits well); f0's numbers: "
        "validation loss 1.016 against its minimum 0.657 at epoch 2 (+55%, +0.359; overfit above +20% and +0.05)")
    said = state(group)
    assert "overfits (f0: validation loss 1.016 against its minimum 0.657 at epoch 2 (+55%))" in said
    assert "validation 6" not in said and "gap" not in said  # only the rule that fired, no other validation figure
    assert best_runs([group], set()) is None  # "best by validation" is never said of the only run on its images


def test_each_lever_is_one_the_study_can_pull_with_a_number_behind_it(tmp_path):
    from cnnstudy.report.settle import lever

    rng = np.random.default_rng(9)
    a = make_group(tmp_path, "p2/a", [rng.random(60) < 0.6])
    b = make_group(tmp_path, "p1/b", [rng.random(60) < 0.6])
    carved = {"digest": "same", "sizes": {"train": 240, "val": 60, "test": 60},
              "origin": {"test": "carved from class folders: 15% of each class, seed 0"}}
    for group in (a, b):
        group.first["split"].update(carved)
    c = comparisons([b, a], PREVIOUS)[0]
    assert "5-fold cross-validation would test all 360 images instead of 60, detectable from about" in lever(c, a, b)
    assert "`--set p1/b:data.split.folds=5 --set p2/a:data.split.folds=5`" in lever(c, a, b)
    for group in (a, b):  # a dataset's own test/ folder: k-fold would refuse it, so it is not offered
        group.first["split"]["origin"]["test"] = "test/"
    assert lever(c, a, b) == "Only more test images than these 60 could narrow it"
    same = make_group(tmp_path, "p3/same", [a.test_predictions(0)[2]])  # right on the same images as a
    same.first["split"].update(carved)
    a.first["split"].update(carved)
    tie = comparisons([a, same], {"p2": ["previous"], "p3": ["previous"]})[0]
    assert lever(tie, same, a) == "Only more test images than these 60 could narrow it"  # nothing to project


def test_more_repeats_are_asked_of_a_swept_run_through_its_sweep(tmp_path):
    from cnnstudy.report.settle import repeat_keys

    rng = np.random.default_rng(10)
    swept = make_group(tmp_path, "p4/head", [rng.random(50) < 0.6 for _ in range(3)])
    swept.records[0].config["sweep"] = {"params": {"train.lr": {}}}
    base = make_group(tmp_path, "p4/head.base", [rng.random(50) < 0.6 for _ in range(3)])
    plain = make_group(tmp_path, "p4/conv", [rng.random(50) < 0.6 for _ in range(3)])
    assert repeat_keys([base, swept], 10) == "--set p4/head:sweep.confirm=10"
    assert repeat_keys([swept, plain], 10) == "--set p4/head:sweep.confirm=10 --set p4/conv:repeats=10"


def test_a_run_that_did_not_learn_is_named_even_when_its_comparison_is_only_counted(tmp_path):
    rng = np.random.default_rng(11)
    lucky = make_group(tmp_path, "p4/lucky", [rng.random(100) < 0.9], val=0.60)
    chosen = make_group(tmp_path, "p4/chosen", [rng.random(100) < 0.7], val=0.80)
    flat = make_group(tmp_path, "p4/flat", [rng.random(100) < 0.5], val=0.50, verdict="did not learn")
    found = comparisons([lucky, chosen, flat], {"p4": ["best"]})
    lead, items = answer([lucky, chosen, flat], found, phases("p4", compare={"p4": "best"}), [], [])
    assert items[0].startswith("**p4.** chosen, the best by validation on colors (80.0%), against lucky")
    assert "Its other comparison (" in items[0] and "flat" not in items[0]  # counted, drawn in the forest plot
    assert items[1] == "Did not learn: p4/flat (train accuracy 50.0%, near chance (50.0%))."
    from cnnstudy.report.settle import settle_items
    said = " ".join(settle_items(found, {g.run_id: g for g in (lucky, chosen, flat)}))
    assert "(+14.0 points on 100 colors test images" in said and "p4/flat did not learn: its training comes first" in said
