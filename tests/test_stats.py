"""The statistics at their edges, property by property (Hypothesis): every interval holds what it
estimates, agrees with its own test, and no input (0 %, 100 %, n = 1, ties, no spread) breaks a
number, a sentence or a plot."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as hs
from scipy import stats as st

from cnnstudy.report.compare import adjust
from cnnstudy.report.findings import describe, points
from cnnstudy.report.stats import (ALPHA, bonferroni, clopper_pearson, exact_binomial_two_sided, mcnemar_exact,
                                   mean_std_ci, paired_interval, paired_t, welch, welch_interval, wilson, words)

LEVELS = hs.sampled_from([0.95, 0.99, 1 - ALPHA / 3, 1 - ALPHA / 7, 1 - ALPHA / 33])


@hs.composite
def successes(draw, max_n=3000):
    n = draw(hs.integers(0, max_n))
    return draw(hs.integers(0, n)), n


@given(successes())
def test_wilson_holds_the_observed_share_with_exact_ends(kn):
    k, n = kn
    low, high = wilson(k, n)
    share = k / n if n else 0.5
    assert 0.0 <= low <= share <= high <= 1.0
    assert (low == 0.0) == (k == 0 or n == 0) and (high == 1.0) == (k == n)


def test_wilson_at_ten_of_ten_is_exactly_one_not_a_hair_below():
    assert wilson(10, 10)[1] == 1.0 and wilson(0, 3)[0] == 0.0  # was 0.9999999999999999 and 5.55e-17


@given(successes(max_n=500), LEVELS)
def test_clopper_pearson_holds_the_share(kn, level):
    k, n = kn
    assume(n > 0)
    low, high = clopper_pearson(k, n, level)
    assert 0.0 <= low <= k / n <= high <= 1.0


@hs.composite
def paired_counts(draw):
    b, c = draw(hs.integers(0, 60)), draw(hs.integers(0, 60))
    return b, c, b + c + draw(hs.integers(0, 400))


@given(paired_counts(), LEVELS)
@settings(max_examples=300)
def test_the_paired_interval_excludes_zero_exactly_when_mcnemar_rejects(bcn, level):
    b, c, n = bcn
    assume(n > 0)
    low, high = paired_interval(b, c, n, level)
    p = exact_binomial_two_sided(min(b, c), b + c)
    assert -1.0 <= low <= (b - c) / n <= high <= 1.0
    assert (low > 0 or high < 0) == (p < 1 - level)
    assert low < high  # never a point: even two runs that agree everywhere have an uncertain difference


def test_mcnemar_is_scipys_exact_binomial_and_ties_give_one():
    for k, n in [(0, 1), (3, 20), (10, 20), (40, 100), (1, 2500)]:
        assert exact_binomial_two_sided(k, n) == pytest.approx(st.binomtest(k, n, 0.5).pvalue, rel=1e-12)
    same = np.array([True, False, True])
    assert mcnemar_exact(same, same) == {"b": 0, "c": 0, "n": 3, "p": 1.0}


def test_the_paired_interval_covers_the_true_difference_at_least_as_often_as_it_says():
    rng = np.random.default_rng(0)
    for n, q12, q21 in [(45, 0.15, 0.15), (150, 0.05, 0.05), (150, 0.3, 0.1), (45, 0.02, 0.0)]:
        draws = rng.multinomial(n, [q12, q21, 1 - q12 - q21], size=400)
        hits = [paired_interval(d[0], d[1], n, 0.95) for d in draws]
        coverage = np.mean([low <= q12 - q21 <= high for low, high in hits])
        assert coverage >= 0.93, (n, q12, q21, coverage)  # measured 0.957-1.000 over 2000 draws each


accuracies = hs.lists(hs.integers(0, 200).map(lambda k: k / 200), min_size=2, max_size=8)


@given(accuracies, accuracies, LEVELS)
@settings(max_examples=200)
def test_welch_interval_agrees_with_welch_p_and_no_spread_cannot_be_tested(a, b, level):
    result = welch(a, b)
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        assert result["p"] is None and words(result["diff"], None).startswith("cannot be tested")
        return
    assume(abs(result["p"] - (1 - level)) > 1e-9)  # no float coin-flip at the boundary
    low, high = welch_interval(a, b, level)
    assert low <= result["diff"] <= high
    assert (low > 0 or high < 0) == (result["p"] < 1 - level)


@given(hs.lists(hs.one_of(hs.none(), hs.floats(0, 1)), max_size=40))
def test_bonferroni_counts_only_what_was_tested(pvalues):
    adjusted, level = bonferroni(pvalues)
    tested = sum(p is not None for p in pvalues)
    assert level == pytest.approx(1 - ALPHA / max(tested, 1))
    for raw, p in zip(pvalues, adjusted):
        assert (raw is None) == (p is None)
        if raw is not None:
            assert raw <= p <= 1.0 and p == pytest.approx(min(1.0, raw * tested))


@hs.composite
def comparisons_to_state(draw):
    """Comparisons as compare.py makes them: McNemar counts on n images, or repeats' accuracies."""
    found = []
    for _ in range(draw(hs.integers(1, 12))):
        kind = draw(hs.sampled_from(["mcnemar", "welch", "paired_t"]))
        if kind == "mcnemar":
            b, c, n = draw(paired_counts())
            assume(n > 0)
            found.append({"a": "p2/x", "b": "p1/y", "diff": (b - c) / n,
                          "p": exact_binomial_two_sided(min(b, c), b + c), "test": {"mcnemar": [b, c, n]}})
        else:
            a = draw(accuracies)
            other = draw(hs.lists(hs.integers(0, 200).map(lambda k: k / 200), min_size=len(a), max_size=len(a)))
            result = welch(a, other) if kind == "welch" else paired_t(a, other)
            found.append({"a": "p2/x", "b": "p1/y", **result, "test": {kind: [a, other]}})
    return found


@given(comparisons_to_state())
@settings(max_examples=200, suppress_health_check=[HealthCheck.filter_too_much])
def test_every_sentence_agrees_with_its_interval(found):
    for c in adjust(found, "confirmatory"):
        text = describe(c)
        if c["p"] is None:
            assert "cannot be tested" in text and c["ci"] is None
            continue
        assume(abs(c["p_raw"] - (1 - c["level"])) > 1e-9 or "mcnemar" in c["test"])
        low, high = c["ci"]
        if c["words"] == "better":
            assert low > 0 and c["diff"] > 0
        elif c["words"] == "worse":
            assert high < 0 and c["diff"] < 0
        else:
            assert low <= 0 <= high and "no clear difference" in text


def test_points_and_p_never_hide_which_side_of_zero_or_0_05_they_are_on():
    assert points(0.0004) == "+0.04" and points(-0.0001) == "-0.01" and points(0.0) == "+0.0"
    assert points(4.8e-7) == "+4.8e-05" and points(0.127) == "+12.7"
    from cnnstudy.report.stats import format_p

    assert format_p(0.04996) == "0.04996" and format_p(0.0502) == "0.0502" and format_p(0.05) == "0.050"
    assert format_p(0.41) == "0.41" and format_p(0.023) == "0.023" and format_p(2.3e-5) == "2.3e-05"


@given(hs.lists(hs.floats(0, 1), min_size=1, max_size=6))
def test_mean_std_ci_of_one_value_has_no_spread_and_of_equal_values_none(values):
    result = mean_std_ci(values)
    assert result["n"] == len(values) and math.isclose(result["mean"], np.mean(values))
    if len(values) == 1:
        assert result["std"] is None and result["ci95"] is None
    else:
        assert result["ci95"][0] <= result["mean"] + 1e-12 and result["mean"] <= result["ci95"][1] + 1e-12


@hs.composite
def panels(draw):
    """Test sets as the report plots them: runs at 0 %, 100 % or between, single (Wilson) or repeated."""
    found = []
    for _ in range(draw(hs.integers(1, 3))):
        n, runs = draw(hs.integers(1, 60)), draw(hs.integers(1, 4))
        acc, single = [], []
        for _ in range(runs):
            k = draw(hs.integers(0, n))
            repeated = draw(hs.booleans())
            spread = draw(hs.sampled_from([0.0, 0.01, 0.3]))  # none, a little, more than the bar
            interval = (k / n - spread, k / n + spread) if repeated else wilson(k, n)
            acc.append((k / n, *np.clip(interval, 0, 1)))
            single.append(not repeated)
        found.append({"title": f"{n} images", "runs": [f"p1/r{i}" for i in range(runs)], "acc": acc,
                      "f1": [a for a, _, _ in acc], "wilson": single, "chance": 1 / draw(hs.integers(2, 10))})
    return found


@given(panels())
@settings(max_examples=12, deadline=None)
def test_the_comparison_plot_draws_every_edge(tmp_path_factory, found):
    from cnnstudy.report.plots import plot_comparison_panels

    path = plot_comparison_panels(found, tmp_path_factory.mktemp("plots") / "comparison.png")
    assert path.stat().st_size > 0


@given(hs.lists(hs.lists(hs.floats(0, 1), min_size=1, max_size=4), min_size=1, max_size=3),
       hs.sampled_from([1, 2, 15]))
@settings(max_examples=10, deadline=None)
def test_the_curve_and_reliability_plots_take_one_epoch_one_repeat_and_one_full_bin(tmp_path_factory, runs, k):
    from cnnstudy.report.plots import plot_reliability, plot_val_curves
    from cnnstudy.training.calibration import reliability_bins

    folder = tmp_path_factory.mktemp("plots")
    assert plot_val_curves({"p1/a": runs, "p2/b": [runs[0]]}, folder / "val.png").stat().st_size > 0
    probs = np.tile(np.array([[1.0, 0.0]], np.float32), (k, 1))  # every confidence exactly 1.0
    bins = reliability_bins(probs, np.zeros(k, int))
    assert plot_reliability({"as trained": bins}, folder / "rel.png").stat().st_size > 0
