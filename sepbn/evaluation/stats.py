"""Statistics for comparing runs over seeds (``sepbn study table``): pure functions over numbers.

Two training runs with the same seed see the same data order and augmentation draws, so a variant
is compared with the baseline *paired*, seed by seed:
    d_s = metric(variant, seed s) - metric(baseline, seed s),   s = 1..n
    mean d = 1/n sum_s d_s,   sd = sqrt(1/(n-1) sum_s (d_s - mean d)^2),   se = sd / sqrt(n)
    95 % CI = mean d -+ t_{0.975, n-1} * se,   t = mean d / se,   p = 2 P(T_{n-1} > |t|)

(Student's paired t-test). With few seeds it has little power, so the faces themselves give a
second test: each face's NME averaged over the seeds of the variant, against the same average of
the baseline, goes into a Wilcoxon signed-rank test (one pair per face, so no face counts once per
seed; zero differences are dropped). It answers "are the faces' errors shifted?", not "would
another seed agree?"; the seed-level t-test is the one that speaks for reproducibility.

Power: ``seeds_for_power`` is the smallest number of seeds at which the paired t-test at level
alpha detects a true difference ``effect`` (fixed in advance, not the observed one) with the given
probability, taking the sd of the paired differences as measured. Under the alternative,
``t = mean d / (sd / sqrt n)`` follows a non-central t with n - 1 degrees of freedom and
non-centrality ``effect / (sd / sqrt n)``.

Degenerate cases are explicit: fewer than two pairs give NaN for sd, CI and p; identical
differences give a zero-width CI and p = 1 when they are all zero, p = 0 otherwise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from scipy import stats

__all__ = ["mean_sd", "PairedT", "paired_t", "Wilcoxon", "paired_wilcoxon", "t_power", "seeds_for_power"]


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1 in the denominator); NaN where undefined."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan


@dataclass(frozen=True)
class PairedT:
    """Paired difference ``a - b`` over ``n`` pairs: mean, sd, ``confidence`` CI and two-sided p."""

    n: int
    mean: float
    sd: float
    ci_low: float
    ci_high: float
    p: float
    confidence: float = 0.95

    def to_dict(self) -> dict:
        return asdict(self)


def _pairs(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples need two 1-D arrays of one length, got shapes {a.shape} and {b.shape}")
    return a - b


def paired_t(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> PairedT:
    """Student's paired t-test of ``a`` against ``b`` (the module doc gives the formulas)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    d = _pairs(a, b)
    n = int(d.size)
    if n == 0:
        return PairedT(0, math.nan, math.nan, math.nan, math.nan, math.nan, confidence)
    mean, sd = mean_sd(d)
    if n < 2:
        return PairedT(n, mean, sd, math.nan, math.nan, math.nan, confidence)
    if sd == 0:  # every pair differs by the same amount: no spread to test against
        return PairedT(n, mean, 0.0, mean, mean, 1.0 if mean == 0 else 0.0, confidence)
    se = sd / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * se
    p = float(2 * stats.t.sf(abs(mean / se), n - 1))
    return PairedT(n, mean, sd, mean - half, mean + half, p, confidence)


@dataclass(frozen=True)
class Wilcoxon:
    """Wilcoxon signed-rank test of paired differences ``a - b``: pairs used (non-zero), median, p."""

    n: int
    median: float
    statistic: float
    p: float

    def to_dict(self) -> dict:
        return asdict(self)


def paired_wilcoxon(a: Sequence[float], b: Sequence[float]) -> Wilcoxon:
    """Two-sided Wilcoxon signed-rank test of ``a`` against ``b`` (zero differences dropped).

    scipy chooses the exact null distribution for small samples without ties and the normal
    approximation otherwise.
    """
    d = _pairs(a, b)
    median = float(np.median(d)) if d.size else math.nan
    nonzero = d[d != 0]
    if nonzero.size == 0:
        return Wilcoxon(0, median, math.nan, 1.0 if d.size else math.nan)
    res = stats.wilcoxon(nonzero, zero_method="wilcox", alternative="two-sided")
    return Wilcoxon(int(nonzero.size), median, float(res.statistic), float(res.pvalue))


def t_power(n: int, effect: float, sd: float, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test with ``n`` pairs for a true mean difference ``effect``.

    >>> round(t_power(10, 1.0, 1.0), 3)  # textbook value for d = 1, n = 10: 0.803
    0.803
    """
    if n < 2 or not sd > 0:
        return math.nan
    crit = float(stats.t.ppf(1 - alpha / 2, n - 1))
    nc = abs(effect) / (sd / math.sqrt(n))
    return float(stats.nct.sf(crit, n - 1, nc) + stats.nct.cdf(-crit, n - 1, nc))


def seeds_for_power(effect: float, sd: float, power: float = 0.8, alpha: float = 0.05,
                    max_seeds: int = 1000) -> int | None:
    """Smallest n >= 2 with ``t_power(n, effect, sd, alpha) >= power``; None beyond ``max_seeds``.

    >>> seeds_for_power(1.0, 1.0)
    10
    """
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power}")
    if not sd > 0 or effect == 0:
        return None
    for n in range(2, max_seeds + 1):
        if t_power(n, effect, sd, alpha) >= power:
            return n
    return None
