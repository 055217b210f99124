"""The statistics and the words that follow them."""
import numpy as np
import pytest
from scipy import stats as st

from cnnstudy.report.compare import Group, compare, comparisons
from cnnstudy.report.findings import findings
from cnnstudy.training.metrics import overfitting_verdict
from cnnstudy.runner.records import RunRecord
from cnnstudy.report.stats import bootstrap_diff_ci, exact_binomial_two_sided, mcnemar_exact, mean_std_ci, welch, words


def test_mcnemar_equals_scipys_exact_binomial_on_fixed_predictions():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 500)
    preds_a = np.where(rng.random(500) < 0.8, truth, (truth + 1) % 3)
    preds_b = np.where(rng.random(500) < 0.7, truth, (truth + 2) % 3)
    result = mcnemar_exact(preds_a == truth, preds_b == truth)
    b = int(((preds_a == truth) & (preds_b != truth)).sum())
    c = int(((preds_a != truth) & (preds_b == truth)).sum())
    assert (result["b"], result["c"]) == (b, c)
    assert result["p"] == pytest.approx(st.binomtest(min(b, c), b + c, 0.5).pvalue, rel=1e-12)
    for k, n in [(0, 1), (3, 20), (10, 20), (40, 100), (1, 2500)]:
        assert exact_binomial_two_sided(k, n) == pytest.approx(st.binomtest(k, n, 0.5).pvalue, rel=1e-12)
    assert mcnemar_exact(preds_a == truth, preds_a == truth)["p"] == 1.0


def test_mean_std_ci_is_numpys_with_a_t_interval():
    values = [0.81, 0.78, 0.84]
    result = mean_std_ci(values)
    assert result["mean"] == pytest.approx(np.mean(values)) and result["std"] == pytest.approx(np.std(values, ddof=1))
    half = st.t.ppf(0.975, 2) * np.std(values, ddof=1) / np.sqrt(3)
    assert result["ci95"] == pytest.approx([np.mean(values) - half, np.mean(values) + half])
    assert mean_std_ci([0.5]) == {"n": 1, "mean": 0.5, "std": None, "ci95": None}


def test_bootstrap_interval_contains_the_difference_and_welch_matches_scipy():
    rng = np.random.default_rng(1)
    a, b = rng.random(400) < 0.8, rng.random(400) < 0.6
    low, high = bootstrap_diff_ci(a, b)
    assert low < a.mean() - b.mean() < high and high - low < 0.2
    result = welch([0.80, 0.82, 0.81], [0.70, 0.73, 0.69])
    assert result["p"] == pytest.approx(st.ttest_ind([0.80, 0.82, 0.81], [0.70, 0.73, 0.69], equal_var=False).pvalue)
    assert result["ci95"][0] < result["diff"] < result["ci95"][1]


def make_group(tmp_path, run_id, correct_per_repeat, verdict="fits well", init="scratch", dataset="/d/colors"):
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
        metrics = {"run": run_id, "model": "m", "init": init, "dataset": dataset, "scored_on": "test",
                   "split": {"digest": "same"}, "test": scores, "best_val_acc": correct.mean(),
                   "best_train_acc": 1.0, "seconds_per_epoch": 1.0, "seed": k,
                   "verdict": {"verdict": verdict, "gap": 0.2 if verdict == "overfit" else 0.01}}
        records.append(RunRecord(run_id, k, run_dir, {}, metrics, None))
    return Group(run_id, run_id.split("/")[0], records)


def test_words_follow_the_numbers(tmp_path):
    rng = np.random.default_rng(2)
    base = rng.random(400) < 0.6
    clearly_better = base | (rng.random(400) < 0.6)
    same = make_group(tmp_path, "p1/a", [base])
    twin = make_group(tmp_path, "p2/b", [base.copy()])
    better = make_group(tmp_path, "p3/c", [clearly_better])
    assert compare(twin, same)["words"] == "no clear difference (p = 1.00)"
    result = compare(better, twin)
    assert result["words"] == "better" and result["diff"] > 0.1 and result["p"] < 1e-6
    assert compare(twin, better)["words"] == "worse"
    text = " ".join(findings([same, twin, better], comparisons([same, twin, better])))
    assert "p2/b vs p1/a (previous phase, 400 colors test images): +0.0 points" in text
    assert "no clear difference (p = 1.00)" in text and "p3/c vs p2/b" in text and ": better (p = " in text


def test_repeated_runs_are_compared_over_their_repeats(tmp_path):
    rng = np.random.default_rng(3)
    low = make_group(tmp_path, "p1/low", [rng.random(300) < 0.60 for _ in range(3)], verdict="overfit")
    high = make_group(tmp_path, "p2/high", [rng.random(300) < 0.80 for _ in range(3)])
    result = compare(high, low)
    assert result["method"].startswith("Welch") and result["words"] == "better"
    text = " ".join(findings([low, high], comparisons([low, high])))
    assert "Overfit by the verdict: p1/low (train-validation gap 20.0 points, in 3 of 3 repeats)" in text
    assert "p2/high closed the overfitting gap of p1/low" in text


def test_transfer_without_a_scratch_run_says_so(tmp_path):
    lite = make_group(tmp_path, "p4/lite", [np.ones(50, bool)], init="ImageNet", dataset="/d/bees")
    assert "has no run trained from scratch on the same bees test images" in " ".join(findings([lite], []))


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


def test_holm_adjusts_step_down_and_the_words_follow_the_adjusted_p(tmp_path):
    from cnnstudy.report.stats import holm

    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == [1.0, 1.0] and holm([0.01, 0.02]) == [0.02, 0.02] and holm([]) == []
    rng = np.random.default_rng(5)
    base = rng.random(300) < 0.6
    runs = [make_group(tmp_path, f"p{k}/r", [base | (rng.random(300) < 0.05 * k)]) for k in range(1, 5)]
    found = comparisons(runs)
    assert len(found) >= 4
    raw = [c["p_raw"] for c in found]
    assert [c["p"] for c in found] == pytest.approx(holm(raw))
    for c in found:
        assert c["p"] >= c["p_raw"] and c["words"] == words(c["diff"], c["p"])


def test_worse_calibrated_is_said_once_per_pair_of_whole_runs(tmp_path):
    from cnnstudy.report.findings import calibration

    a = make_group(tmp_path, "p2/a", [np.ones(50, bool)])
    b = make_group(tmp_path, "p1/b", [np.ones(50, bool)])
    a.metrics[0]["test"]["ece"], b.metrics[0]["test"]["ece"] = 0.08, 0.02
    row = {"a": "p2/a", "b": "p1/b", "diff": 0.1, "p": 0.001, "words": "better"}
    found = [{**row, "kind": "previous phase"}, {**row, "kind": "best run"},
             {**row, "kind": "by class", "class": "x"}, {**row, "kind": "by class", "class": "y", "words": "better"}]
    assert len(calibration([a, b], found)) == 1
    assert calibration([a, b], [{**row, "kind": "by class", "class": "x"}]) == []
