"""The statistics behind "better", "worse" and "no clear difference".

Every test here comes with the interval that inverts it, so that an interval excludes zero exactly
when the test rejects at the same level: a sentence can never pair one with words the other denies.

- `mean_std_ci`: mean, sample standard deviation and a 95 % t-interval over repeats;
- `mcnemar_exact`: McNemar's exact test on two classifiers' paired predictions for the same test
  images: of the images exactly one of them gets right, are the two kinds of disagreement as
  likely as a fair coin would make them (two-sided exact binomial, p = 0.5)?
- `paired_interval`: the interval of the accuracy difference that matches it (Clopper-Pearson for
  the share of disagreements won by A, widened over the Clopper-Pearson range of the disagreement rate);
- `welch`: the difference of two repeated runs' means, with Welch's t-test and its interval;
- `paired_t`: the same for repeats paired by seed (a sweep's confirmation and its base setting);
- `bonferroni`: p-values adjusted for the size of their family, with the matching interval level;
- `wilson`: a single run's accuracy on n images, with Wilson's interval.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats as st

ALPHA = 0.05


def mean_std_ci(values: list[float]) -> dict:
    """Mean, std (ddof=1) and 95 % t-interval of the mean; std and interval are None for one value."""
    array = np.asarray(values, dtype=float)
    result = {"n": int(array.size), "mean": float(array.mean()), "std": None, "ci95": None}
    if array.size > 1:
        std = float(array.std(ddof=1))
        half = float(st.t.ppf(0.975, array.size - 1)) * std / math.sqrt(array.size)
        result.update(std=std, ci95=[result["mean"] - half, result["mean"] + half])
    return result


def exact_binomial_two_sided(k: int, n: int) -> float:
    """P(X <= k or X >= n - k) for X ~ Binomial(n, 1/2), with k <= n/2: McNemar's exact p-value."""
    if n == 0:
        return 1.0
    k = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, 2 * tail / 2**n)  # integer arithmetic, then one correctly rounded division


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """b: images only A gets right; c: images only B gets right; n: images; p: exact two-sided p-value."""
    correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    b, c = int((correct_a & ~correct_b).sum()), int((~correct_a & correct_b).sum())
    return {"b": b, "c": c, "n": int(correct_a.size), "p": exact_binomial_two_sided(min(b, c), b + c)}


def clopper_pearson(k: int, n: int, level: float) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a proportion: k of n, at confidence `level`."""
    tail = (1 - level) / 2
    low = 0.0 if k == 0 else float(st.beta.ppf(tail, k, n - k + 1))
    high = 1.0 if k == n else float(st.beta.ppf(1 - tail, k + 1, n - k))
    return low, high


def paired_interval(b: int, c: int, n: int, level: float) -> list[float]:
    """Interval of accuracy(A) - accuracy(B) = psi * (2 pi - 1) on n paired images, where psi is the
    share of images on which the two disagree (b + c of n) and pi the share of those that A wins (b).

    pi's Clopper-Pearson interval excludes 1/2 exactly when McNemar's exact test rejects at
    1 - level, and each end of the difference takes the least favourable psi of its own
    Clopper-Pearson interval: conservative, and never contradicting the test (zero is inside
    exactly when p >= 1 - level). With no disagreement at all it is +-psi's upper end, not a point."""
    psi_low, psi_high = clopper_pearson(b + c, n, level) if n else (0.0, 1.0)
    if b + c == 0:
        return [-psi_high, psi_high]
    pi_low, pi_high = clopper_pearson(b, b + c, level)
    low, high = 2 * pi_low - 1, 2 * pi_high - 1
    return [low * (psi_high if low < 0 else psi_low), high * (psi_high if high > 0 else psi_low)]


def welch(values_a: list[float], values_b: list[float]) -> dict:
    """mean(A) - mean(B) over repeats with Welch's two-sided p-value; p is None where neither side
    varies (every repeat of both scored the same): then there is nothing to test against."""
    diff = float(np.mean(values_a) - np.mean(values_b))
    if np.ptp(values_a) == 0 and np.ptp(values_b) == 0:
        return {"diff": diff, "p": None}
    with warnings.catch_warnings():  # scipy's "nearly identical data" notice: the p it gives is still right
        warnings.simplefilter("ignore", RuntimeWarning)
        return {"diff": diff, "p": float(st.ttest_ind(values_a, values_b, equal_var=False).pvalue)}


def welch_interval(values_a: list[float], values_b: list[float], level: float) -> list[float]:
    """Welch's interval of mean(A) - mean(B) at `level`: the inversion of the same t-test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        interval = st.ttest_ind(values_a, values_b, equal_var=False).confidence_interval(level)
    return [float(interval.low), float(interval.high)]


def paired_t(values_a: list[float], values_b: list[float]) -> dict:
    """mean(A - B) over repeats paired by seed, with the paired t-test's p; None where every
    difference is the same (nothing to test against)."""
    diffs = np.asarray(values_a, float) - np.asarray(values_b, float)
    if np.ptp(diffs) == 0:
        return {"diff": float(diffs.mean()), "p": None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {"diff": float(diffs.mean()), "p": float(st.ttest_rel(values_a, values_b).pvalue)}


def paired_t_interval(values_a: list[float], values_b: list[float], level: float) -> list[float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        interval = st.ttest_rel(values_a, values_b).confidence_interval(level)
    return [float(interval.low), float(interval.high)]


def bonferroni(pvalues: list[float | None]) -> tuple[list[float | None], float]:
    """Each p times the number of tests in the family (capped at 1), and the confidence level of
    intervals that agree with them: 1 - ALPHA / m. Untestable comparisons (None) do not count."""
    tested = sum(p is not None for p in pvalues)
    adjusted = [None if p is None else min(1.0, p * tested) for p in pvalues]
    return adjusted, 1 - ALPHA / max(tested, 1)


def format_p(p: float) -> str:
    """0.41, 0.023 or 2.3e-05; near the 0.05 line as many digits as it takes to tell which side
    (0.04996 and 0.0502, never "0.050" for both)."""
    text = f"{p:.2f}" if p >= 0.1 else f"{p:.3f}" if p >= 0.01 else f"{p:.2g}"
    if float(text) == ALPHA and p != ALPHA:
        text = f"{p:.6g}"
    return text


def words(diff: float, p: float | None) -> str:
    """What the numbers allow one to say."""
    if p is None:
        return "cannot be tested (neither run varies over its repeats)"
    if p < ALPHA:
        return "better" if diff > 0 else "worse"
    return f"no clear difference (p = {format_p(p)})"


def wilson(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson's 95 % score interval of a proportion: a single run's test accuracy on n images. It
    always holds the observed proportion, with exact ends at 0 and 100 %."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if successes == 0 else min(p, max(0.0, centre - half))
    high = 1.0 if successes == n else max(p, min(1.0, centre + half))
    return low, high
