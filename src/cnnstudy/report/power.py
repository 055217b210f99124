"""The smallest difference a comparison could have detected: for a "no clear difference", how large a
true difference would have had to be for the same test, at its family's level, to say "better" in
80 % of studies like this one (docs/comparisons.md, "What would settle it").

- McNemar's exact test on n paired images: the images on which the two runs disagree are held at the
  observed share psi = (b + c) / n, and A wins a share pi of them, so the true difference is
  psi (2 pi - 1). The power is exact: over every discordant count d ~ Binomial(n, psi), the chance that
  A's wins reach the exact test's rejection bound for d (Miettinen 1968; Connor 1987 gives the normal
  approximation of the same design). Some differences are out of reach: with few disagreements even
  pi = 1 may not reject often enough, and the answer is None.
- The paired t-test over repeats: the noncentral t with the observed spread of the differences, exact
  for normal differences (Cohen 1988).
- Welch's t-test: with few repeats its degrees of freedom are themselves estimated, and the noncentral
  t with the expected ones overstates the power (56 % instead of 80 % at 3 repeats each). So its power
  is averaged over the sample variances (20,000 chi-square draws of a fixed seed), with the mean
  difference normal given them, taking the observed spreads for the true ones.

Only the side that would say "better" counts: a two-sided test rejecting the wrong way is not power.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import optimize
from scipy import stats as st

POWER = 0.8


def mcnemar_bounds(discordant: np.ndarray, alpha: float) -> np.ndarray:
    """For each discordant count d: the fewest wins of A that McNemar's exact two-sided test rejects
    at `alpha` (2 P(X <= d - wins) < alpha, X ~ Binomial(d, 1/2)); d + 1 where no count does."""
    bounds = np.empty_like(discordant)
    for i, d in enumerate(discordant):
        # the largest j with 2 * cdf(j) < alpha: the losses A may have and still be called better
        tails = 2 * st.binom.cdf(np.arange(d // 2 + 1), d, 0.5)
        allowed = np.flatnonzero(tails < alpha)
        bounds[i] = d - allowed[-1] if allowed.size else d + 1
    return bounds


def mcnemar_power_curve(n: int, psi: float, alpha: float):
    """pi -> P(McNemar's exact test at `alpha` calls A better) on n images, when the runs disagree on
    each image with probability psi and A wins each disagreement with probability pi."""
    discordant = np.arange(n + 1)
    weights = st.binom.pmf(discordant, n, psi)
    keep = weights > 1e-12  # the counts that matter; the rest add nothing a float can hold
    discordant, weights = discordant[keep], weights[keep]
    bounds = mcnemar_bounds(discordant, alpha)  # fixed by d and alpha: computed once for every pi
    return lambda pi: float(np.sum(weights * st.binom.sf(bounds - 1, discordant, pi)))


def mcnemar_power(n: int, psi: float, pi: float, alpha: float) -> float:
    return mcnemar_power_curve(n, psi, alpha)(pi)


def detectable_mcnemar(psi: float, n: int, level: float, power: float = POWER) -> float | None:
    """The smallest true difference (a fraction) that McNemar's exact test at 1 - `level` calls
    "better" with probability `power` on n images, the runs disagreeing on a share psi of them; None
    if no difference can."""
    if psi <= 0 or not n:
        return None
    curve = mcnemar_power_curve(n, psi, 1 - level)
    if curve(1.0) < power:
        return None
    pi = optimize.brentq(lambda p: curve(p) - power, 0.5, 1.0, xtol=1e-6)
    return psi * (2 * pi - 1)


def t_power(shift: float, se: float, df: float, alpha: float) -> float:
    """P(a two-sided t-test at `alpha` rejects on the upper side) when the true difference is `shift`."""
    return float(st.nct.sf(st.t.ppf(1 - alpha / 2, df), df, shift / se))


def detectable_t(se: float, df: float, level: float, power: float = POWER) -> float | None:
    """The smallest true difference a t-test with this standard error and these degrees of freedom
    calls "better" with probability `power` at 1 - `level`."""
    if not se > 0 or not df > 0:
        return None
    alpha = 1 - level
    high = se * 10
    while t_power(high, se, df, alpha) < power:  # a few degrees of freedom: a wide interval
        high *= 4
    return optimize.brentq(lambda shift: t_power(shift, se, df, alpha) - power, 0.0, high, xtol=se * 1e-6)


def welch_power_curve(var_a: float, var_b: float, n_a: int, n_b: int, alpha: float, draws: int = 20_000):
    """shift -> P(Welch's two-sided test at `alpha` says A is better) for normal repeats with these
    variances: over the sample variances' chi-square draws, the normal chance that the observed mean
    difference clears the test's own bound."""
    rng = np.random.default_rng(0)  # fixed: the same answer every time the report is built
    s_a = var_a * rng.chisquare(n_a - 1, draws) / (n_a - 1)
    s_b = var_b * rng.chisquare(n_b - 1, draws) / (n_b - 1)
    parts_a, parts_b = s_a / n_a, s_b / n_b
    se_hat = np.sqrt(parts_a + parts_b)
    df_hat = (parts_a + parts_b) ** 2 / (parts_a ** 2 / (n_a - 1) + parts_b ** 2 / (n_b - 1))
    bound = st.t.ppf(1 - alpha / 2, df_hat) * se_hat
    spread = math.sqrt(var_a / n_a + var_b / n_b)
    return lambda shift: float(np.mean(st.norm.cdf((shift - bound) / spread)))


def detectable_welch(values_a: list[float], values_b: list[float], level: float, repeats: int | None = None,
                     power: float = POWER) -> float | None:
    """The smallest true difference Welch's test at 1 - `level` calls "better" with probability `power`,
    with the observed variances and `repeats` repeats each (the observed counts if None)."""
    var_a, var_b = float(np.var(values_a, ddof=1)), float(np.var(values_b, ddof=1))
    if var_a + var_b == 0:
        return None
    n_a, n_b = (repeats, repeats) if repeats else (len(values_a), len(values_b))
    curve = welch_power_curve(var_a, var_b, n_a, n_b, 1 - level)
    high = math.sqrt(var_a / n_a + var_b / n_b) * 10
    while curve(high) < power:
        high *= 4
    return optimize.brentq(lambda shift: curve(shift) - power, 0.0, high, xtol=high * 1e-7)


def paired_spread(values_a: list[float], values_b: list[float], repeats: int | None = None) -> tuple[float, float]:
    """(standard error, degrees of freedom) of the mean paired difference, with `repeats` pairs."""
    diffs = np.asarray(values_a, float) - np.asarray(values_b, float)
    count = repeats or diffs.size
    return float(np.std(diffs, ddof=1) / math.sqrt(count)), float(count - 1)


def detectable(test: dict, level: float, images: int | None = None, repeats: int | None = None) -> float | None:
    """The detectable difference of a comparison's test (compare.py's "test"); `images` or `repeats`:
    what it would be with that many test images (the same share of disagreements) or repeats each."""
    if "mcnemar" in test:
        b, c, n = test["mcnemar"]
        return detectable_mcnemar((b + c) / n if n else 0.0, images or n, level)
    if "welch" in test:
        return detectable_welch(*test["welch"], level, repeats)
    return detectable_t(*paired_spread(*test["paired_t"], repeats), level)
