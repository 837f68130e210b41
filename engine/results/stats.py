"""Small statistical building blocks: intervals, sample sizes, tests.

Kept free of the store so each can be checked against arithmetic done by hand.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

Z95 = 1.959963984540054  # two-sided 95%


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for successes/n; fractional successes are allowed
    (a "likely" vote counts 0.75). None when there are no votes."""
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_mean(values, n_boot: int = 2000, seed: int = 0, level: float = 0.95):
    """Percentile bootstrap interval of a mean, resampling votes with replacement."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return None
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return (float(lo), float(hi))


def votes_needed(p: float | None, p0: float = 0.5, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Votes for a two-sided one-sample test of rate p against p0 to reach ``power``.

    Normal approximation: n = ((z_{1-a/2}·sqrt(p0(1-p0)) + z_{power}·sqrt(p(1-p))) / (p - p0))²,
    rounded up. None when p equals p0 (no number of votes separates them).
    """
    if p is None or abs(p - p0) < 1e-12:
        return None
    za = sps.norm.ppf(1 - alpha / 2)
    zb = sps.norm.ppf(power)
    n = ((za * math.sqrt(p0 * (1 - p0)) + zb * math.sqrt(p * (1 - p))) / (p - p0)) ** 2
    return int(math.ceil(n - 1e-9))


def z_test_half(mean: float, n: int) -> float | None:
    """Two-sided p-value of mean against 0.5 with the null's variance 0.25/n (normal approx.)."""
    if n <= 0:
        return None
    z = (mean - 0.5) / math.sqrt(0.25 / n)
    return float(2 * sps.norm.sf(abs(z)))


def binom_two_sided(k: int, n: int, p: float = 0.5) -> float | None:
    """Exact two-sided binomial test p-value (scipy's binomtest)."""
    if n <= 0:
        return None
    return float(sps.binomtest(k, n, p).pvalue)


def rounded(x, digits: int = 4):
    """Round floats (and tuples of them) for JSON; None stays None."""
    if x is None:
        return None
    if isinstance(x, (tuple, list)):
        return [rounded(v, digits) for v in x]
    return round(float(x), digits)
