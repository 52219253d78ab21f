"""Fixed-horizon and Bayesian statistics for A/B comparisons, from per-arm summaries.

Every function takes sufficient statistics (counts, means, variances) rather
than raw rows, so the service can aggregate in SQL and the engine stays cheap.

- :func:`two_proportion_test` -- z-test with pooled variance for the p-value (the
  textbook test, equal to Pearson's chi-square without continuity correction)
  and unpooled Wald intervals for the difference and the relative lift.
- :func:`welch_test` -- Welch's t-test (unequal variances, Welch-Satterthwaite
  degrees of freedom); identical to ``scipy.stats.ttest_ind(equal_var=False)``.
- Relative lift intervals use the delta method on log(treatment / control), so
  they are asymmetric and never cross -100%.
- :func:`chance_to_beat_control_binomial` -- exact P(p_B > p_A) under independent
  Beta posteriors (Evan Miller's closed form); :func:`chance_to_beat_control_normal`
  the normal-approximation for means.
- :func:`srm_check` -- chi-square goodness of fit of the observed arm sizes against
  the configured weights; a p-value below 0.001 means the assignment is broken and
  the results should not be trusted.
- :func:`holm_adjust` -- Holm's step-down adjustment across several variants.
- :func:`wilson_interval` and :func:`t_interval` -- each arm's own rate or mean with
  its interval (the per-variant row of an Optimizely / Statsig results table), next
  to the comparisons, so a reader sees where each arm lies and not only their gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.special import betaln

SRM_THRESHOLD = 0.001


@dataclass(frozen=True)
class Interval:
    lower: float
    upper: float

    def contains(self, value: float) -> bool:
        return self.lower <= value <= self.upper


@dataclass(frozen=True)
class FixedHorizonResult:
    control_value: float
    treatment_value: float
    difference: float
    difference_ci: Interval
    relative_lift: float
    relative_lift_ci: Interval
    statistic: float
    p_value: float
    df: float | None = None  # degrees of freedom for t-tests


def _relative_lift_ci(
    control: float, treatment: float, var_control: float, var_treatment: float, z: float
) -> tuple[float, Interval]:
    """Delta method on log(treatment/control); var_* are variances of the arm estimates."""
    if control <= 0 or treatment <= 0:
        nan = float("nan")
        return (treatment / control - 1.0 if control else nan), Interval(nan, nan)
    log_ratio = np.log(treatment / control)
    se = np.sqrt(var_control / control**2 + var_treatment / treatment**2)
    return float(treatment / control - 1.0), Interval(
        float(np.exp(log_ratio - z * se) - 1.0), float(np.exp(log_ratio + z * se) - 1.0)
    )


def two_proportion_test(
    conversions_control: int,
    n_control: int,
    conversions_treatment: int,
    n_treatment: int,
    *,
    alpha: float = 0.05,
) -> FixedHorizonResult:
    if min(n_control, n_treatment) <= 0:
        raise ValueError("each arm needs at least one user")
    p_a, p_b = conversions_control / n_control, conversions_treatment / n_treatment
    pooled = (conversions_control + conversions_treatment) / (n_control + n_treatment)
    se_pooled = np.sqrt(pooled * (1 - pooled) * (1 / n_control + 1 / n_treatment))
    z_stat = (p_b - p_a) / se_pooled if se_pooled > 0 else 0.0
    p_value = float(2 * stats.norm.sf(abs(z_stat)))
    var_a, var_b = p_a * (1 - p_a) / n_control, p_b * (1 - p_b) / n_treatment
    zq = float(stats.norm.ppf(1 - alpha / 2))
    se = np.sqrt(var_a + var_b)
    lift, lift_ci = _relative_lift_ci(p_a, p_b, var_a, var_b, zq)
    return FixedHorizonResult(
        control_value=p_a,
        treatment_value=p_b,
        difference=p_b - p_a,
        difference_ci=Interval(float(p_b - p_a - zq * se), float(p_b - p_a + zq * se)),
        relative_lift=lift,
        relative_lift_ci=lift_ci,
        statistic=float(z_stat),
        p_value=p_value,
    )


def welch_test(
    mean_control: float,
    var_control: float,
    n_control: int,
    mean_treatment: float,
    var_treatment: float,
    n_treatment: int,
    *,
    alpha: float = 0.05,
) -> FixedHorizonResult:
    """Welch's t-test from per-arm mean, sample variance (ddof=1) and size."""
    if min(n_control, n_treatment) < 2:
        raise ValueError("each arm needs at least two users for a t-test")
    va, vb = var_control / n_control, var_treatment / n_treatment
    se = np.sqrt(va + vb)
    diff = mean_treatment - mean_control
    if se == 0:
        df = float(n_control + n_treatment - 2)
        t_stat, p_value = 0.0, 1.0
    else:
        df = float((va + vb) ** 2 / (va**2 / (n_control - 1) + vb**2 / (n_treatment - 1)))
        t_stat = float(diff / se)
        p_value = float(2 * stats.t.sf(abs(t_stat), df))
    tq = float(stats.t.ppf(1 - alpha / 2, df))
    lift, lift_ci = _relative_lift_ci(mean_control, mean_treatment, va, vb, tq)
    return FixedHorizonResult(
        control_value=float(mean_control),
        treatment_value=float(mean_treatment),
        difference=float(diff),
        difference_ci=Interval(float(diff - tq * se), float(diff + tq * se)),
        relative_lift=lift,
        relative_lift_ci=lift_ci,
        statistic=t_stat,
        p_value=p_value,
        df=df,
    )


def chance_to_beat_control_binomial(
    conversions_control: int,
    n_control: int,
    conversions_treatment: int,
    n_treatment: int,
    *,
    prior: tuple[float, float] = (1.0, 1.0),
) -> float:
    """P(p_treatment > p_control) with Beta(prior + successes, prior + failures) posteriors.

    Exact closed form (Evan Miller, "Formulas for Bayesian A/B Testing"), a sum of
    ``alpha_B`` terms; above 100 000 terms the normal approximation of the two
    posteriors is used, which is indistinguishable at that size.
    """
    a_a = prior[0] + conversions_control
    b_a = prior[1] + n_control - conversions_control
    a_b = prior[0] + conversions_treatment
    b_b = prior[1] + n_treatment - conversions_treatment
    if a_b > 100_000 or not float(a_b).is_integer():
        mean_a, mean_b = a_a / (a_a + b_a), a_b / (a_b + b_b)
        var_a = a_a * b_a / ((a_a + b_a) ** 2 * (a_a + b_a + 1))
        var_b = a_b * b_b / ((a_b + b_b) ** 2 * (a_b + b_b + 1))
        return chance_to_beat_control_normal(mean_a, np.sqrt(var_a), mean_b, np.sqrt(var_b))
    i = np.arange(int(a_b), dtype=np.float64)
    terms = betaln(a_a + i, b_a + b_b) - np.log(b_b + i) - betaln(1 + i, b_b) - betaln(a_a, b_a)
    return float(np.clip(np.exp(terms).sum(), 0.0, 1.0))


def chance_to_beat_control_normal(
    mean_control: float, se_control: float, mean_treatment: float, se_treatment: float
) -> float:
    """P(mu_treatment > mu_control) when both estimates are normal (flat prior)."""
    se = float(np.hypot(se_control, se_treatment))
    if se == 0:
        return 0.5 if mean_treatment == mean_control else float(mean_treatment > mean_control)
    return float(stats.norm.cdf((mean_treatment - mean_control) / se))


@dataclass(frozen=True)
class SrmResult:
    observed: list[int]
    expected: list[float]
    statistic: float
    p_value: float
    mismatch: bool


def srm_check(
    observed: Sequence[int], weights: Sequence[float], *, threshold: float = SRM_THRESHOLD
) -> SrmResult:
    """Sample-ratio mismatch: are arm sizes consistent with the configured weights?"""
    obs = np.asarray(observed, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if obs.size != w.size or obs.size < 2:
        raise ValueError("need one observed count per weight, at least two arms")
    total = obs.sum()
    expected = w / w.sum() * total
    if total == 0:
        return SrmResult([0] * obs.size, expected.tolist(), 0.0, 1.0, False)
    result = stats.chisquare(obs, expected)
    p_value = float(result.pvalue)
    return SrmResult(
        [int(x) for x in obs], expected.tolist(), float(result.statistic), p_value,
        p_value < threshold,
    )  # fmt: skip


def holm_adjust(p_values: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values: reject H_i when adjusted p_i <= alpha.

    Controls the family-wise error rate for any dependence between the tests and
    is uniformly more powerful than Bonferroni.
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p)
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


@dataclass(frozen=True)
class ArmEstimate:
    """One arm's own value (rate or mean per user) with its confidence interval.

    ``value`` and ``ci`` are None when the arm has too few users to say anything
    (no user for a rate, fewer than two for a mean).
    """

    variant: str
    users: int
    value: float | None
    ci: Interval | None
    method: str  # "wilson" or "t"


def wilson_interval(successes: float, n: int, *, alpha: float = 0.05) -> Interval:
    """Wilson score interval for a binomial proportion (Wilson 1927, without correction).

    Why not the Wald interval ``p +/- z sqrt(p(1-p)/n)``: an arm's rate is often
    small (a 2% conversion) or its sample small (the first day), and there the Wald
    interval collapses to a zero width at 0 successes and crosses 0 or 1; its
    coverage is far below nominal (Brown, Cai & DasGupta 2001). Wilson's interval
    inverts the score test: it stays inside [0, 1], is never empty, and keeps
    close to nominal coverage down to a handful of users (Newcombe 1998 compares
    seven methods and recommends it).
    """
    if n <= 0:
        raise ValueError("a proportion needs at least one trial")
    if not 0 <= successes <= n:
        raise ValueError("successes must lie between 0 and n")
    z = float(stats.norm.ppf(1 - alpha / 2))
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * np.sqrt(p * (1 - p) / n + z2n / (4 * n))
    # Clip rounding only: mathematically the bounds are already within [0, 1].
    return Interval(float(max(centre - half, 0.0)), float(min(centre + half, 1.0)))


def t_interval(mean: float, variance: float, n: int, *, alpha: float = 0.05) -> Interval:
    """Student's t interval for a mean from the sample mean, variance (ddof=1) and size.

    Why t and not z: the variance is estimated from the same users, and for small
    arms the normal quantile would make the interval too narrow; at large n the
    two agree. It matches ``scipy.stats.ttest_1samp(x).confidence_interval()``.
    """
    if n < 2:
        raise ValueError("a mean's interval needs at least two users")
    half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * np.sqrt(max(variance, 0.0) / n)
    return Interval(float(mean - half), float(mean + half))
