"""The statistics behind "better", "worse" and "no clear difference".

- `mean_std_ci`: mean, sample standard deviation and a 95 % t-interval over repeats;
- `mcnemar_exact`: McNemar's exact test on two classifiers' paired predictions for the same test
  images: of the images exactly one of them gets right, are the two kinds of disagreement as
  likely as a fair coin would make them (two-sided exact binomial, p = 0.5)?
- `bootstrap_diff_ci`: a seeded percentile bootstrap interval of the accuracy difference on paired images;
- `welch`: the difference of two repeated runs' means, with Welch's t-test and interval;
- `holm`: p-values adjusted for the number of comparisons one report states (Holm's step-down).
"""
from __future__ import annotations

import math

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
    """b: images only A gets right; c: images only B gets right; p: exact two-sided p-value."""
    correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    b, c = int((correct_a & ~correct_b).sum()), int((~correct_a & correct_b).sum())
    return {"b": b, "c": c, "p": exact_binomial_two_sided(min(b, c), b + c)}


def bootstrap_diff_ci(correct_a: np.ndarray, correct_b: np.ndarray, resamples: int = 2000,
                      seed: int = 0) -> list[float]:
    """95 % percentile interval of accuracy(A) - accuracy(B), resampling the paired test images."""
    diff = np.asarray(correct_a, float) - np.asarray(correct_b, float)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(diff), size=(resamples, len(diff)))
    means = diff[picks].mean(1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def welch(values_a: list[float], values_b: list[float]) -> dict:
    """mean(A) - mean(B) over repeats, Welch's two-sided p-value and 95 % interval."""
    diff = float(np.mean(values_a) - np.mean(values_b))
    if np.std(values_a) == 0 and np.std(values_b) == 0:  # no spread at all: Welch is undefined
        return {"diff": diff, "p": 1.0 if diff == 0 else 0.0, "ci95": [diff, diff]}
    result = st.ttest_ind(values_a, values_b, equal_var=False)
    interval = result.confidence_interval(0.95)
    return {"diff": diff, "p": float(result.pvalue), "ci95": [float(interval.low), float(interval.high)]}


def format_p(p: float) -> str:
    """0.41, or three decimals near the 0.05 line (so 0.0502 does not read "0.05"), or 2.3e-05."""
    return f"{p:.2f}" if p >= 0.1 else f"{p:.3f}" if p >= 0.01 else f"{p:.2g}"


def words(diff: float, p: float) -> str:
    """What the numbers allow one to say."""
    if p < ALPHA:
        return "better" if diff > 0 else "worse"
    return f"no clear difference (p = {format_p(p)})"


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment: the k-th smallest p times (m - k + 1), kept monotone, capped at 1.
    The family-wise error rate stays at ALPHA however many comparisons a report makes."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def wilson(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson's 95 % score interval of a proportion: a single run's test accuracy on n images."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
