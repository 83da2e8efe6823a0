"""Paired statistics against values computed by hand (explicit arithmetic, not the same scipy calls)."""

import math

import numpy as np
import pytest

from sepbn.evaluation.stats import mean_sd, paired_t, paired_wilcoxon


def test_mean_sd_by_hand():
    m, sd = mean_sd([2.0, 4.0, 9.0])
    assert m == pytest.approx(5.0)
    assert sd == pytest.approx(math.sqrt(((2 - 5) ** 2 + (4 - 5) ** 2 + (9 - 5) ** 2) / 2))
    assert math.isnan(mean_sd([1.0])[1]) and math.isnan(mean_sd([])[0])


def test_paired_t_three_pairs_by_hand():
    a, b = [3.0, 5.0, 7.0], [2.0, 3.0, 4.0]  # differences 1, 2, 3
    r = paired_t(a, b)
    mean, sd = 2.0, 1.0  # sd = sqrt(((1-2)^2 + 0 + (3-2)^2) / 2)
    se = sd / math.sqrt(3)
    t_crit = 4.302652729911275  # t_{0.975, 2} from a printed t table
    assert (r.n, r.mean, r.sd) == (3, pytest.approx(mean), pytest.approx(sd))
    assert r.ci_low == pytest.approx(mean - t_crit * se) and r.ci_high == pytest.approx(mean + t_crit * se)
    # with 2 degrees of freedom the t distribution has a closed form: P(|T| > t) = 1 - t / sqrt(2 + t^2)
    t = mean / se
    assert r.p == pytest.approx(1 - t / math.sqrt(2 + t * t))
    flipped = paired_t(b, a)  # the difference reads a - b
    assert flipped.mean == pytest.approx(-2.0) and flipped.p == pytest.approx(r.p)


def test_paired_t_degenerate_cases():
    one = paired_t([1.0], [0.5])
    assert one.n == 1 and one.mean == pytest.approx(0.5) and math.isnan(one.p) and math.isnan(one.ci_low)
    same = paired_t([1.0, 2.0], [1.0, 2.0])
    assert (same.mean, same.ci_low, same.ci_high, same.p) == (0.0, 0.0, 0.0, 1.0)
    shift = paired_t([2.0, 3.0], [1.0, 2.0])
    assert shift.p == 0.0 and shift.ci_low == pytest.approx(1.0)
    with pytest.raises(ValueError, match="one length"):
        paired_t([1.0, 2.0], [1.0])


def test_wilcoxon_exact_by_hand():
    a = np.array([1.0, 2.0, -3.0, 4.0, 5.0])  # differences against 0: ranks 1..5, W- = 3
    r = paired_wilcoxon(a, np.zeros(5))
    # exact null: of the 2^5 sign patterns, those with a rank sum <= 3 are {}, {1}, {2}, {3}, {1,2}
    assert r.n == 5 and r.statistic == pytest.approx(3.0)
    assert r.p == pytest.approx(2 * 5 / 32)
    assert r.median == pytest.approx(2.0)


def test_wilcoxon_drops_zero_differences():
    r = paired_wilcoxon([1.0, 2.0, -3.0, 4.0, 5.0, 7.0], [0.0, 0.0, 0.0, 0.0, 0.0, 7.0])
    assert r.n == 5 and r.p == pytest.approx(2 * 5 / 32)
    none = paired_wilcoxon([1.0, 2.0], [1.0, 2.0])
    assert none.n == 0 and none.p == 1.0


def test_power_against_simulation():
    """t_power agrees with the rejection rate of scipy's paired t-test on simulated differences."""
    from scipy import stats as st

    from sepbn.evaluation.stats import seeds_for_power, t_power

    rng = np.random.default_rng(0)
    d = rng.normal(0.5, 1.0, size=(20000, 8))
    rate = float((st.ttest_1samp(d, 0.0, axis=1).pvalue < 0.05).mean())
    assert abs(t_power(8, 0.5, 1.0) - rate) < 0.015
    n = seeds_for_power(0.5, 1.0)
    assert t_power(n, 0.5, 1.0) >= 0.8 > t_power(n - 1, 0.5, 1.0)
    assert seeds_for_power(0.0, 1.0) is None and seeds_for_power(1e-6, 1.0, max_seeds=50) is None
