"""Unit tests of personalization.engine.cuped: no database, no Django settings.

Run: .venv/bin/python -m pytest tests/personalization/test_engine_cuped.py -q -p no:django --noconftest

The known answers: with a pre-exposure covariate X correlated rho with the metric Y,
the adjusted estimate of the effect is unbiased and its variance is (1 - rho^2) times
the unadjusted one (Deng et al. 2013, section 3.2); the adjusted difference equals the
treatment coefficient of the least-squares regression Y ~ 1 + arm + X.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from personalization.engine.cuped import cuped_analysis, cuped_theta, simulate_cuped_checks
from personalization.engine.stats import welch_test


def _correlated(rng, n, rho, effect, *, arms=2):
    """Per arm: X ~ N(5, 2), Y = 10 + rho (X - 5) / 2 * 3 + sqrt(1 - rho^2) * 3 * e + effect."""
    ys, xs = [], []
    for arm in range(arms):
        x = rng.normal(5.0, 2.0, n)
        e = rng.normal(0.0, 1.0, n)
        y = 10.0 + 3.0 * (rho * (x - 5.0) / 2.0 + np.sqrt(1 - rho**2) * e) + effect * (arm > 0)
        ys.append(y)
        xs.append(x)
    return ys, xs


def test_adjusted_difference_is_the_ancova_coefficient():
    rng = np.random.default_rng(1)
    ys, xs = _correlated(rng, 500, 0.7, 0.4)
    result = cuped_analysis(["control", "b"], ys, xs)
    y, x = np.concatenate(ys), np.concatenate(xs)
    arm = np.r_[np.zeros(500), np.ones(500)]
    coef, *_ = np.linalg.lstsq(np.c_[np.ones_like(y), arm, x], y, rcond=None)
    (comparison,) = result.comparisons
    assert comparison.difference == pytest.approx(coef[1], rel=1e-9)
    assert result.theta == pytest.approx(coef[2], rel=1e-9)
    # Welch on the adjusted values, beside the plain Welch on the raw ones.
    plain = welch_test(ys[0].mean(), ys[0].var(ddof=1), 500, ys[1].mean(), ys[1].var(ddof=1), 500)
    assert comparison.unadjusted_difference == pytest.approx(plain.difference)
    assert comparison.unadjusted_ci.lower == pytest.approx(plain.difference_ci.lower)


def test_variance_falls_by_rho_squared_and_the_estimate_stays_unbiased():
    rng = np.random.default_rng(2)
    rho, effect, n, runs = 0.6, 0.3, 400, 600
    adjusted, unadjusted, reductions, covered = [], [], [], 0
    for _ in range(runs):
        ys, xs = _correlated(rng, n, rho, effect)
        (c,) = cuped_analysis(["control", "b"], ys, xs).comparisons
        adjusted.append(c.difference)
        unadjusted.append(c.unadjusted_difference)
        reductions.append(c.variance_reduction)
        covered += c.difference_ci.contains(effect)
    adjusted, unadjusted = np.array(adjusted), np.array(unadjusted)
    # Unbiased: the mean adjusted estimate is the true effect within 3 standard errors.
    assert abs(adjusted.mean() - effect) < 3 * adjusted.std(ddof=1) / np.sqrt(runs)
    # Variance of the estimate across experiments: ratio ~ 1 - rho^2 = 0.64. With 600
    # runs the ratio of two sample variances has a relative s.e. of about 0.06.
    ratio = adjusted.var(ddof=1) / unadjusted.var(ddof=1)
    assert ratio == pytest.approx(1 - rho**2, rel=0.15)
    # The reduction each experiment reports is about rho^2, and the interval covers.
    assert np.mean(reductions) == pytest.approx(rho**2, abs=0.02)
    assert covered / runs == pytest.approx(0.95, abs=0.03)


def test_an_uncorrelated_covariate_changes_next_to_nothing():
    rng = np.random.default_rng(3)
    ys, xs = _correlated(rng, 2000, 0.0, 0.5)
    result = cuped_analysis(["control", "b"], ys, xs)
    (c,) = result.comparisons
    assert abs(result.correlation) < 0.1 and abs(c.variance_reduction) < 0.01
    assert c.difference == pytest.approx(c.unadjusted_difference, abs=0.05)


def test_a_binary_metric_with_a_binary_covariate():
    # Users who converted before convert again more often: the rate difference keeps its
    # expectation and its p-value drops.
    rng = np.random.default_rng(4)
    n, ys, xs = 5000, [], []
    for lift in (0.0, 0.03):
        before = rng.random(n) < 0.3
        y = rng.random(n) < np.where(before, 0.5, 0.1) + lift
        ys.append(y.astype(float))
        xs.append(before.astype(float))
    result = cuped_analysis(["control", "b"], ys, xs)
    (c,) = result.comparisons
    assert c.variance_reduction > 0.1
    assert c.variance_reduction == pytest.approx(result.correlation**2, abs=0.02)
    plain = welch_test(ys[0].mean(), ys[0].var(ddof=1), n, ys[1].mean(), ys[1].var(ddof=1), n)
    assert c.p_value < plain.p_value
    assert result.users_with_covariate == int(sum(x.sum() for x in xs))


def test_holm_across_treatments():
    rng = np.random.default_rng(5)
    ys, xs = _correlated(rng, 300, 0.8, 0.2, arms=3)
    result = cuped_analysis(["control", "b", "c"], ys, xs)
    p = [c.p_value for c in result.comparisons]
    expected = np.minimum(np.maximum.accumulate(np.sort(p) * [2, 1]), 1)
    assert sorted(c.p_value_holm for c in result.comparisons) == pytest.approx(expected)


def test_without_pre_exposure_data_there_is_no_adjustment():
    ys = [np.array([1.0, 0.0, 2.0]), np.array([0.0, 3.0, 1.0])]
    zeros = [np.zeros(3), np.zeros(3)]
    assert cuped_analysis(["control", "b"], ys, zeros) is None
    assert np.isnan(cuped_theta(ys, zeros)[0])
    assert cuped_analysis(["control", "b"], [ys[0], ys[1][:1]], [zeros[0], zeros[1][:1]]) is None
    with pytest.raises(ValueError):
        cuped_analysis(["control", "b"], ys, [np.zeros(3), np.zeros(2)])


def test_theta_matches_scipy_regression_within_one_arm():
    rng = np.random.default_rng(6)
    x = rng.normal(size=300)
    y = 2.5 * x + rng.normal(size=300)
    theta, corr = cuped_theta([y], [x])
    fit = stats.linregress(x, y)
    assert theta == pytest.approx(fit.slope) and corr == pytest.approx(fit.rvalue)


def test_simulated_checks_report_rho_squared():
    # The evaluation command's engine, small: 800 experiments of 100 users per arm.
    (check,) = simulate_cuped_checks(rhos=(0.8,), experiments=800, users_per_arm=100, seed=9)
    assert check.reported_reduction == pytest.approx(0.64, abs=0.02)
    assert check.variance_ratio == pytest.approx(0.36, rel=0.2)
    assert abs(check.mean_adjusted - check.effect) < 3.5 * check.se_mean_adjusted
    assert 0.92 <= check.coverage <= 0.98
