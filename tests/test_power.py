"""The detectable difference (report/power.py) checked against simulated studies: with that true
difference, the report's own test at the family's level says "better" about 80 % of the time."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cnnstudy.report.power import POWER, detectable, detectable_mcnemar, mcnemar_power
from cnnstudy.report.stats import bonferroni, mcnemar_exact, paired_t, welch, words

FAMILY = 8
LEVEL = bonferroni([0.5] * FAMILY)[1]  # 1 - 0.05 / 8, as the report's family of 8


def says_better(diff: float, p: float) -> bool:
    return words(diff, min(1.0, p * FAMILY)) == "better"


def simulated_mcnemar(n: int, psi: float, shift: float, studies: int, rng) -> float:
    pi = (shift / psi + 1) / 2  # the share of disagreements A wins for that difference
    hits = 0
    for _ in range(studies):
        split, won = rng.random(n) < psi, rng.random(n) < pi
        right_a, right_b = ~(split & ~won), ~(split & won)
        hits += says_better(right_a.mean() - right_b.mean(), mcnemar_exact(right_a, right_b)["p"])
    return hits / studies


@pytest.mark.parametrize("b, c, n", [(11, 13, 150), (16, 10, 45), (16, 3, 77)])
def test_the_detectable_difference_is_called_better_80_percent_of_the_time_mcnemar(b, c, n):
    shift = detectable({"mcnemar": [b, c, n]}, LEVEL)
    share = simulated_mcnemar(n, (b + c) / n, shift, 2000, np.random.default_rng(n))
    assert share == pytest.approx(POWER, abs=0.04)  # 2000 studies: one standard error is 0.009


def test_the_detectable_difference_is_called_better_80_percent_of_the_time_over_repeats():
    rng = np.random.default_rng(0)
    a, b = [0.60, 0.65, 0.62], [0.66, 0.63, 0.67]
    shift = detectable({"welch": [a, b]}, LEVEL)
    hits = [welch(list(rng.normal(shift, np.std(a, ddof=1), 3)), list(rng.normal(0, np.std(b, ddof=1), 3)))
            for _ in range(2000)]
    assert np.mean([says_better(r["diff"], r["p"]) for r in hits]) == pytest.approx(POWER, abs=0.04)
    shift = detectable({"paired_t": [a, b]}, LEVEL)
    spread = np.std(np.subtract(a, b), ddof=1)
    pairs = [(base + rng.normal(shift, spread, 3), base) for base in rng.normal(0.6, 0.05, (2000, 3))]
    results = [paired_t(list(x), list(y)) for x, y in pairs]
    assert np.mean([says_better(r["diff"], r["p"]) for r in results]) == pytest.approx(POWER, abs=0.04)


def test_what_cannot_be_detected_is_none():
    assert detectable({"mcnemar": [0, 0, 100]}, LEVEL) is None  # the runs are right on the same images
    assert detectable({"mcnemar": [1, 1, 100]}, LEVEL) is None  # two disagreements can never reach p < 0.006
    assert detectable({"welch": [[0.5, 0.5], [0.6, 0.6]]}, LEVEL) is None  # no spread: nothing to test


@settings(max_examples=25, deadline=None)
@given(n=st.integers(40, 400), share=st.floats(0.1, 0.6), more=st.integers(2, 5))
def test_more_images_or_fewer_tests_detect_smaller_differences(n, share, more):
    here = detectable_mcnemar(share, n, LEVEL)
    larger = detectable_mcnemar(share, n * more, LEVEL)
    if here is not None:  # what this test set can detect, a larger one detects, and smaller
        assert larger is not None and larger < here
    if larger is not None:
        assert detectable_mcnemar(share, n * more, 0.95) <= larger  # a family of one tests at 95 %
        assert larger <= share  # a difference can never exceed the share of images the two split


def test_the_power_rises_with_the_share_a_wins():
    powers = [mcnemar_power(100, 0.3, pi, 0.05) for pi in (0.5, 0.6, 0.7, 0.8, 0.9)]
    assert powers == sorted(powers) and powers[0] < 0.05 and powers[-1] > 0.95
