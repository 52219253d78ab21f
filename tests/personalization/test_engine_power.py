"""Unit tests of personalization.engine.power: no database, no Django settings.

Run: .venv/bin/python -m pytest tests/personalization/test_engine_power.py -q -p no:django --noconftest

Reference figures (statsmodels is not installed in this project's virtualenv, so they
are the published values of the formulas the docstrings below write out):

- two proportions, Fleiss, Levin & Paik (ch. 4) without continuity correction,
  ``n = (z_{.975} sqrt(2 pbar qbar) + z_{.8} sqrt(p1 q1 + p2 q2))^2 / (p2 - p1)^2``:
  p1 = 0.10, p2 = 0.12, pbar = 0.11:
  ``(1.959964 * sqrt(0.1958) + 0.841621 * sqrt(0.1956))^2 / 0.0004
  = (0.867270 + 0.372221)^2 / 0.0004 = 3840.85`` -> 3,841 per arm.
- two means, Student/Welch with equal spreads and arms: Cohen's d = 0.5 needs 63.77 users
  per arm, d = 0.2 needs 393.41 (``statsmodels.stats.power.TTestIndPower().solve_power``
  gives 63.7656 and 393.4057; R's ``power.t.test(delta=0.5, sd=1, power=0.8)`` 63.77;
  Cohen 1988 Table 2.4.1 rounds them to 64 and 393).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from personalization.engine.analysis import VariantSummary, analyse_experiment
from personalization.engine.power import (
    days_to_reach,
    mde_two_proportions,
    mde_welch,
    power_estimates,
    power_two_proportions,
    power_welch,
    sample_size_two_proportions,
    sample_size_welch,
    simulate_power_checks,
)
from personalization.engine.stats import two_proportion_test


class TestTwoProportions:
    def test_classic_sample_size(self):
        n = sample_size_two_proportions(0.10, 0.12, alpha=0.05, power=0.8)
        assert math.ceil(n) == 3841
        # Hand-computed from the formula in the module docstring, to the second decimal.
        za, zb = stats.norm.ppf(0.975), stats.norm.ppf(0.8)
        hand = (za * math.sqrt(2 * 0.11 * 0.89) + zb * math.sqrt(0.09 + 0.12 * 0.88)) ** 2
        assert n == pytest.approx(hand / 0.02**2, rel=1e-12)

    def test_sample_size_moves_the_right_way(self):
        base = sample_size_two_proportions(0.10, 0.12)
        assert sample_size_two_proportions(0.10, 0.13) < base  # larger effect, fewer users
        assert sample_size_two_proportions(0.10, 0.12, power=0.9) > base
        assert sample_size_two_proportions(0.10, 0.12, alpha=0.01) > base
        # Near 0.5 the variance barely moves with the rate: half the effect, 4x the users.
        half = sample_size_two_proportions(0.5, 0.502)
        assert half == pytest.approx(4 * sample_size_two_proportions(0.5, 0.504), rel=0.01)

    def test_the_planned_size_reaches_the_planned_power(self):
        for p1, p2, ratio in [(0.10, 0.12, 1.0), (0.03, 0.036, 1.0), (0.5, 0.45, 3.0)]:
            n = sample_size_two_proportions(p1, p2, ratio=ratio)
            assert power_two_proportions(p1, p2, n, ratio * n, alpha=0.05) == pytest.approx(
                0.8, abs=1e-4
            )

    def test_power_matches_the_rejection_rate_of_the_analysis_test(self):
        # 20,000 simulated experiments at the planned size, analysed with the very z-test
        # the results use: the share that rejects is the power (s.e. 0.003).
        rng = np.random.default_rng(7)
        n = math.ceil(sample_size_two_proportions(0.10, 0.12))
        reps = 20_000
        c = rng.binomial(n, 0.10, reps)
        t = rng.binomial(n, 0.12, reps)
        pooled = (c + t) / (2 * n)
        z = (t - c) / n / np.sqrt(pooled * (1 - pooled) * 2 / n)
        rejected = np.mean(2 * stats.norm.sf(np.abs(z)) < 0.05)
        assert rejected == pytest.approx(0.8, abs=0.012)
        # and that vectorised test is the analysis test
        ref = two_proportion_test(int(c[0]), n, int(t[0]), n)
        assert ref.statistic == pytest.approx(z[0])

    def test_no_effect_has_power_alpha(self):
        assert power_two_proportions(0.1, 0.1, 1000, 1000, alpha=0.05) == pytest.approx(0.05)

    def test_mde_inverts_the_sample_size(self):
        for p1, delta in [(0.10, 0.02), (0.02, 0.004), (0.6, 0.05)]:
            n = sample_size_two_proportions(p1, p1 + delta)
            assert mde_two_proportions(p1, n, n) == pytest.approx(delta, rel=1e-3)

    def test_mde_shrinks_like_one_over_root_n(self):
        small, large = mde_two_proportions(0.1, 1000, 1000), mde_two_proportions(0.1, 4000, 4000)
        assert large == pytest.approx(small / 2, rel=0.05) and large < small / 1.9

    def test_a_handful_of_users_finds_nothing(self):
        assert math.isnan(mde_two_proportions(0.5, 2, 2))

    def test_bad_input(self):
        with pytest.raises(ValueError):
            sample_size_two_proportions(0.1, 0.1)
        with pytest.raises(ValueError):
            sample_size_two_proportions(0.0, 0.1)
        with pytest.raises(ValueError):
            power_two_proportions(0.1, 0.2, 0, 10, alpha=0.05)


class TestWelch:
    @pytest.mark.parametrize(("d", "published"), [(0.5, 63.7656), (0.2, 393.4057)])
    def test_equal_arms_match_student_power(self, d, published):
        assert sample_size_welch(d, 1.0, 1.0) == pytest.approx(published, abs=2e-3)
        # Scale-free: a difference of 5 with spreads of 10 is the same d = 0.5 problem.
        assert sample_size_welch(10 * d, 10.0, 10.0) == pytest.approx(published, abs=2e-3)

    def test_power_is_exact_not_the_normal_approximation(self):
        # The normal approximation (z_a + z_b)^2 2 / d^2 = 62.79 is short of 63.77 by the
        # t distribution's heavier tails; the exact noncentral t power is checked by
        # simulating Welch's test itself (s.e. 0.003).
        normal = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) ** 2 * 2 / 0.25
        assert sample_size_welch(0.5, 1.0, 1.0) > normal + 0.9
        rng = np.random.default_rng(11)
        a = rng.normal(0.0, 1.0, (20_000, 30))
        b = rng.normal(0.6, 2.0, (20_000, 45))
        p = stats.ttest_ind(b, a, axis=1, equal_var=False).pvalue
        expected = power_welch(0.6, 1.0, 2.0, 30, 45, alpha=0.05)
        assert np.mean(p < 0.05) == pytest.approx(expected, abs=0.012)

    def test_mde_inverts_the_sample_size(self):
        n = sample_size_welch(0.3, 1.0, 1.5, ratio=2.0)
        assert mde_welch(1.0, 1.5, n, 2 * n) == pytest.approx(0.3, rel=1e-4)

    def test_unequal_split_needs_more_users_in_total(self):
        even = sample_size_welch(0.5, 1.0, 1.0)
        uneven = sample_size_welch(0.5, 1.0, 1.0, ratio=3.0)
        assert uneven < even  # the control is smaller ...
        assert uneven * 4 > even * 2  # ... but the total is larger than the 50/50 one

    def test_large_noncentrality_stays_a_probability(self):
        # SciPy's noncentral t returns NaN for some far tails; power must stay in [0, 1].
        assert power_welch(10.0, 5.0, 6.0, 1000, 1000, alpha=0.05) == pytest.approx(1.0)
        assert 0 < mde_welch(5.0, 6.0, 1000, 1000) < 1.0


def test_days_to_reach():
    assert days_to_reach(1000, 400, 100.0) == pytest.approx(6.0)
    assert days_to_reach(1000, 1200, 100.0) == 0.0
    assert days_to_reach(1000, 400, None) is None
    assert days_to_reach(1000, 400, 0.0) is None


class TestPowerEstimates:
    def test_conversion_figures_follow_the_formulas(self):
        (est,) = power_estimates(
            [("control", 2000, 0.10, 0.0), ("b", 2000, 0.11, 0.0)],
            weights=[1, 1], metric_kind="conversion", alpha=0.05, target_relative=0.2,
            exposures_per_day=400.0,
        )  # fmt: skip
        assert est.variant == "b" and est.method == "two-proportion"
        assert est.target_absolute == pytest.approx(0.02)
        assert est.users_needed_control == est.users_needed_treatment == 3841
        assert est.users_needed_total == 2 * 3841
        assert est.days_remaining == pytest.approx((2 * 3841 - 4000) / 400.0)
        assert est.mde_absolute == pytest.approx(mde_two_proportions(0.10, 2000, 2000))
        assert est.mde_relative == pytest.approx(est.mde_absolute / 0.10)
        # Fewer users than planned: the MDE is above the target and power below 0.8.
        assert est.mde_absolute > 0.02 and est.power_at_target < 0.8
        assert not est.note

    def test_weights_set_the_split_of_the_plan(self):
        # 20% control, two treatments at 40% each: treatments get twice the control.
        ests = power_estimates(
            [("control", 500, 5.0, 2.0), ("b", 1000, 5.2, 2.1), ("c", 1000, 5.1, 2.0)],
            weights=[20, 40, 40], metric_kind="mean", alpha=0.05, target_relative=0.05,
        )  # fmt: skip
        for est in ests:
            need = sample_size_welch(0.25, 2.0, 2.0, ratio=2.0)
            assert est.users_needed_control == math.ceil(need)
            assert est.users_needed_treatment == math.ceil(2 * need)
            assert est.users_needed_total == math.ceil(math.ceil(need) / 0.2)
            assert est.days_remaining is None  # no exposure rate given
        assert ests[0].mde_absolute == pytest.approx(mde_welch(2.0, 2.1, 500, 1000))

    def test_reached_plan_needs_no_more_days(self):
        (est,) = power_estimates(
            [("control", 50_000, 0.10, 0.0), ("b", 50_000, 0.10, 0.0)],
            weights=[1, 1], metric_kind="conversion", alpha=0.05, target_relative=0.1,
            exposures_per_day=10.0,
        )  # fmt: skip
        assert est.days_remaining == 0.0 and est.power_at_target > 0.8
        assert est.mde_relative < 0.1

    def test_undefined_figures_are_none_with_a_note(self):
        (zero,) = power_estimates(
            [("control", 100, 0.0, 0.0), ("b", 100, 0.02, 0.0)],
            weights=[1, 1], metric_kind="conversion", alpha=0.05, target_relative=0.1,
        )  # fmt: skip
        assert zero.users_needed_control is None and zero.mde_relative is None
        assert zero.mde_absolute > 0 and "no conversion" in zero.note
        (flat,) = power_estimates(
            [("control", 10, 3.0, 0.0), ("b", 10, 3.0, 0.0)],
            weights=[1, 1], metric_kind="mean", alpha=0.05, target_relative=0.1,
        )  # fmt: skip
        assert flat.mde_absolute is None and "variation" in flat.note
        (all_converted,) = power_estimates(
            [("control", 10, 1.0, 0.0), ("b", 10, 0.9, 0.0)],
            weights=[1, 1], metric_kind="conversion", alpha=0.05, target_relative=0.1,
        )  # fmt: skip
        assert all_converted.mde_absolute is None and all_converted.users_needed_total is None
        (few,) = power_estimates(
            [("control", 3, 1 / 3, 0.0), ("b", 3, 0.0, 0.0)],
            weights=[1, 1], metric_kind="conversion", alpha=0.05, target_relative=0.1,
        )  # fmt: skip
        assert few.mde_absolute is None and "too few users" in few.note
        assert few.users_needed_control is not None  # the plan itself is defined
        (capped,) = power_estimates(
            [("control", 100, 0.9, 0.0), ("b", 100, 0.9, 0.0)],
            weights=[1, 1], metric_kind="conversion", alpha=0.05, target_relative=0.2,
        )  # fmt: skip
        assert capped.users_needed_total is None and "above" in capped.note

    def test_bad_input(self):
        arms = [("control", 10, 0.1, 0.0), ("b", 10, 0.1, 0.0)]
        with pytest.raises(ValueError):
            power_estimates(arms, weights=[1, 1], metric_kind="median", alpha=0.05,
                            target_relative=0.1)  # fmt: skip
        with pytest.raises(ValueError):
            power_estimates(arms, weights=[1, 1], metric_kind="conversion", alpha=0.05,
                            target_relative=0.0)  # fmt: skip
        with pytest.raises(ValueError):
            power_estimates(arms[:1], weights=[1], metric_kind="conversion", alpha=0.05,
                            target_relative=0.1)  # fmt: skip


def test_the_analysis_carries_the_power_figures_when_given_a_minimum_effect():
    summaries = [VariantSummary("control", 3000, 300.0), VariantSummary("b", 3000, 330.0)]
    plain = analyse_experiment(summaries, weights=[1, 1], metric_kind="conversion")
    assert plain.power == [] and plain.to_dict()["power"] == []
    planned = analyse_experiment(
        summaries, weights=[1, 1], metric_kind="conversion", minimum_effect=0.2,
        exposures_per_day=1000.0,
    )  # fmt: skip
    (est,) = planned.power
    assert est.users_needed_control == 3841 and est.days_remaining == pytest.approx(
        (2 * 3841 - 6000) / 1000
    )
    stored = planned.to_dict()["power"][0]
    assert stored["variant"] == "b" and stored["mde_relative"] == pytest.approx(est.mde_relative)
    # A mean metric plans with the control's own spread.
    means = [VariantSummary("control", 100, 500.0, 3500.0), VariantSummary("b", 100, 520.0, 3800.0)]
    (m,) = analyse_experiment(means, weights=[1, 1], metric_kind="mean", minimum_effect=0.1).power
    sd_c = float(np.sqrt(means[0].variance))
    assert m.users_needed_control == math.ceil(sample_size_welch(0.5, sd_c, sd_c))


def test_simulated_checks_agree_with_the_plan():
    # The evaluation command's engine: every design's simulated rejection rate is within
    # about three binomial standard errors of its planned power (2,000 rate experiments,
    # 500 mean ones).
    checks = simulate_power_checks(experiments=2000, seed=3)
    assert len(checks) == 6
    for check in checks:
        se = np.sqrt(check.planned_power * (1 - check.planned_power) / check.experiments)
        assert abs(check.simulated_power - check.planned_power) < 3.5 * se, check
    assert checks[0].users_control == 3841
