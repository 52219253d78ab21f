"""Power, minimum detectable effect and sample size of an A/B comparison.

What an experiment report needs beside its p-values: a non-significant result after a
week says little unless the reader also sees how large an effect the experiment could
have found with the users it has (the *minimum detectable effect*, MDE), how many users
it needs to find the effect the team cares about, and how long that takes at the
observed exposure rate (GrowthBook's and Statsig's power panels).

Everything here is two-sided at level ``alpha`` and speaks of one treatment against the
control, with ``n_treatment = ratio * n_control`` (the ratio of their weights):

- binary metrics (rates): the classic two-proportion formula with the pooled variance
  under the null and the unpooled one under the alternative (Fleiss, Levin & Paik,
  *Statistical Methods for Rates and Proportions*, ch. 4, without continuity
  correction), the same test the analysis runs
  (:func:`.stats.two_proportion_test`)::

      n_control = (z_{1-a/2} sqrt(pbar qbar (1 + 1/k)) + z_{1-b} sqrt(p1 q1 + p2 q2 / k))^2
                  / (p2 - p1)^2,      pbar = (p1 + k p2) / (1 + k)

  e.g. 0.10 vs 0.12 at alpha 0.05, power 0.8, k = 1: 3,841 users per arm;
- continuous metrics (means per user): Welch's t-test, the test the analysis runs
  (:func:`.stats.welch_test`); power from the noncentral t distribution with the
  Welch-Satterthwaite degrees of freedom (for equal variances and arms these are
  ``2n - 2``, so it is exactly the power of Student's two-sample t-test, as computed
  by statsmodels' ``TTestIndPower`` or R's ``power.t.test``: d = 0.5 needs 63.77 per
  arm). Sample size and MDE are solved numerically from that power.

The MDE is the *upward* effect (treatment above control) that would be detected with
the requested power; for rates the downward one differs slightly because the variance
depends on the rate. Pure numpy / scipy: no Django.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

DEFAULT_POWER = 0.8


def _check_levels(alpha: float, power: float | None = None) -> None:
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    if power is not None and not 0 < power < 1:
        raise ValueError("power must be in (0, 1)")


def power_two_proportions(
    p_control: float, p_treatment: float, n_control: float, n_treatment: float, *, alpha: float
) -> float:
    """Power of the pooled two-proportion z-test to find ``p_treatment`` vs ``p_control``.

    Both tails count (the test is two-sided); the far one adds nothing visible except
    for tiny effects, where it keeps the power at ``alpha`` rather than ``alpha / 2``.
    """
    _check_levels(alpha)
    if min(n_control, n_treatment) <= 0:
        raise ValueError("each arm needs users")
    if not (0 <= p_control <= 1 and 0 <= p_treatment <= 1):
        raise ValueError("rates must lie in [0, 1]")
    k = n_treatment / n_control
    pbar = (p_control + k * p_treatment) / (1 + k)
    se0 = math.sqrt(pbar * (1 - pbar) * (1 / n_control + 1 / n_treatment))
    se1 = math.sqrt(
        p_control * (1 - p_control) / n_control + p_treatment * (1 - p_treatment) / n_treatment
    )
    delta = abs(p_treatment - p_control)
    z = float(stats.norm.ppf(1 - alpha / 2))
    if se1 == 0:
        # Both rates are 0 or 1: the observed difference is exactly ``delta``.
        return 1.0 if delta > z * se0 else alpha if delta == 0 else 0.0
    return float(stats.norm.cdf((delta - z * se0) / se1) + stats.norm.cdf((-delta - z * se0) / se1))


def sample_size_two_proportions(
    p_control: float,
    p_treatment: float,
    *,
    alpha: float = 0.05,
    power: float = DEFAULT_POWER,
    ratio: float = 1.0,
) -> float:
    """Users needed in the control (the treatment needs ``ratio`` times as many), unrounded.

    Fleiss' closed form (module docstring); it neglects the far tail, which changes
    nothing at any effect worth planning for.
    """
    _check_levels(alpha, power)
    if ratio <= 0:
        raise ValueError("ratio must be positive")
    if not (0 < p_control < 1 and 0 < p_treatment < 1):
        raise ValueError("rates must lie strictly between 0 and 1")
    if p_treatment == p_control:
        raise ValueError("no effect cannot be detected")
    k = ratio
    pbar = (p_control + k * p_treatment) / (1 + k)
    za, zb = float(stats.norm.ppf(1 - alpha / 2)), float(stats.norm.ppf(power))
    root = za * math.sqrt(pbar * (1 - pbar) * (1 + 1 / k)) + zb * math.sqrt(
        p_control * (1 - p_control) + p_treatment * (1 - p_treatment) / k
    )
    return root**2 / (p_treatment - p_control) ** 2


def mde_two_proportions(
    p_control: float,
    n_control: float,
    n_treatment: float,
    *,
    alpha: float = 0.05,
    power: float = DEFAULT_POWER,
) -> float:
    """Smallest rise of the rate above ``p_control`` found with ``power`` at these sizes.

    Solved on :func:`power_two_proportions` (no closed form: the variance moves with the
    rate). NaN when even a rate of 1 would not be found that often (a handful of users).
    """
    _check_levels(alpha, power)
    if not 0 <= p_control < 1:
        raise ValueError("the control rate must lie in [0, 1)")
    headroom = 1.0 - p_control

    def gap(delta: float) -> float:
        return (
            power_two_proportions(p_control, p_control + delta, n_control, n_treatment, alpha=alpha)
            - power
        )

    if gap(headroom) < 0:
        return float("nan")
    return float(optimize.brentq(gap, 1e-12 * headroom, headroom, xtol=1e-12, rtol=1e-10))


def _welch_se_df(
    sd_control: float, sd_treatment: float, n_control: float, n_treatment: float
) -> tuple[float, float]:
    va, vb = sd_control**2 / n_control, sd_treatment**2 / n_treatment
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (n_control - 1) + vb**2 / (n_treatment - 1))
    return se, df


def power_welch(
    delta: float,
    sd_control: float,
    sd_treatment: float,
    n_control: float,
    n_treatment: float,
    *,
    alpha: float,
) -> float:
    """Power of Welch's two-sided t-test for a true difference of means ``delta``.

    Noncentral t with noncentrality ``delta / se`` and Welch's degrees of freedom (both
    computed from the standard deviations given, as planning tools do).
    """
    _check_levels(alpha)
    if min(n_control, n_treatment) <= 1:
        raise ValueError("each arm needs more than one user")
    if sd_control < 0 or sd_treatment < 0 or sd_control + sd_treatment == 0:
        raise ValueError("standard deviations must be non-negative, not both 0")
    se, df = _welch_se_df(sd_control, sd_treatment, n_control, n_treatment)
    nc = abs(delta) / se
    tq = float(stats.t.ppf(1 - alpha / 2, df))
    near, far = float(stats.nct.sf(tq, df, nc)), float(stats.nct.cdf(-tq, df, nc))
    # SciPy's noncentral t returns NaN for some far-tail probabilities below ~1e-30 and
    # large noncentralities: the far tail is then nothing, the near one the normal limit.
    if not math.isfinite(near):
        near = float(stats.norm.sf(tq - nc))
    return min(near + (far if math.isfinite(far) else 0.0), 1.0)


def sample_size_welch(
    delta: float,
    sd_control: float,
    sd_treatment: float,
    *,
    alpha: float = 0.05,
    power: float = DEFAULT_POWER,
    ratio: float = 1.0,
) -> float:
    """Users needed in the control (treatment: ``ratio`` times as many), unrounded.

    Starts from the normal approximation ``(z_a + z_b)^2 (s_c^2 + s_t^2 / k) / delta^2``
    and solves the exact t power for it, which adds a couple of users for small arms.
    """
    _check_levels(alpha, power)
    if ratio <= 0:
        raise ValueError("ratio must be positive")
    if delta == 0:
        raise ValueError("no effect cannot be detected")
    smallest = 2.0 * max(1.0, 1 / ratio)  # two users in each arm: a t-test's least

    def gap(n: float) -> float:
        return power_welch(delta, sd_control, sd_treatment, n, ratio * n, alpha=alpha) - power

    za, zb = float(stats.norm.ppf(1 - alpha / 2)), float(stats.norm.ppf(power))
    guess = max((za + zb) ** 2 * (sd_control**2 + sd_treatment**2 / ratio) / delta**2, smallest)
    if gap(smallest) >= 0:
        return smallest
    upper = guess * 2 + 10
    while gap(upper) < 0:
        upper *= 2
    return float(optimize.brentq(gap, smallest, upper, xtol=1e-9, rtol=1e-12))


def mde_welch(
    sd_control: float,
    sd_treatment: float,
    n_control: float,
    n_treatment: float,
    *,
    alpha: float = 0.05,
    power: float = DEFAULT_POWER,
) -> float:
    """Smallest difference of means Welch's test finds with ``power`` at these sizes."""
    _check_levels(alpha, power)
    se, _ = _welch_se_df(sd_control, sd_treatment, n_control, n_treatment)

    def gap(delta: float) -> float:
        return (
            power_welch(delta, sd_control, sd_treatment, n_control, n_treatment, alpha=alpha)
            - power
        )

    upper = 10 * se
    while gap(upper) < 0:
        upper *= 2
    return float(optimize.brentq(gap, 0.0, upper, xtol=1e-14 + 1e-12 * se, rtol=1e-10))


def days_to_reach(
    users_needed: float, users_now: float, exposures_per_day: float | None
) -> float | None:
    """Days until ``users_needed`` exposures at the observed rate; 0 once reached.

    None when the rate is unknown or zero (a stopped experiment exposes nobody more).
    """
    if users_now >= users_needed:
        return 0.0
    if exposures_per_day is None or not exposures_per_day > 0:
        return None
    return float((users_needed - users_now) / exposures_per_day)


@dataclass(frozen=True)
class PowerEstimate:
    """One treatment's power figures for one metric, at the current arm sizes.

    ``target_relative`` is the experiment's minimum effect of interest (a relative lift);
    ``users_needed_*`` are what finding it with ``power`` takes, ``users_needed_total``
    counting every arm of the experiment at its weight (what the exposure rate fills),
    ``days_remaining`` the time left at ``exposures_per_day``. None where undefined, and
    ``note`` says why.
    """

    variant: str
    method: str  # "two-proportion" or "welch"
    power: float
    baseline: float
    mde_absolute: float | None
    mde_relative: float | None
    target_relative: float
    target_absolute: float | None
    power_at_target: float | None
    users_needed_control: int | None
    users_needed_treatment: int | None
    users_needed_total: int | None
    users_total: int
    exposures_per_day: float | None
    days_remaining: float | None
    note: str = ""


def _finite(x: float) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def power_estimates(
    arms: Sequence[tuple[str, int, float, float]],
    *,
    weights: Sequence[float],
    metric_kind: str,
    alpha: float,
    target_relative: float,
    power: float = DEFAULT_POWER,
    exposures_per_day: float | None = None,
) -> list[PowerEstimate]:
    """Power figures of every treatment against the control (the first arm).

    ``arms``: ``(name, users, mean, sd)`` per arm, the rate as mean for a conversion
    metric (``sd`` unused there: it follows from the rate). Each arm needs two users.
    The planned split is the weights', not the observed one, so a sample-ratio mismatch
    does not leak into the plan.
    """
    _check_levels(alpha, power)
    if metric_kind not in ("conversion", "mean"):
        raise ValueError(f"unknown metric kind {metric_kind!r}")
    if not target_relative > 0:
        raise ValueError("the minimum effect of interest must be positive")
    if len(arms) < 2 or len(weights) != len(arms):
        raise ValueError("need a control, a treatment and one weight per arm")
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    users_total = int(sum(a[1] for a in arms))
    _, n_c, mean_c, sd_c = arms[0]
    if min(a[1] for a in arms) < 2:
        raise ValueError("each arm needs at least two users")
    out = []
    for (name_t, n_t, _, sd_t), w_t in zip(arms[1:], w[1:], strict=True):
        ratio = float(w_t / w[0])
        notes: list[str] = []
        target_abs = target_relative * abs(mean_c) if mean_c != 0 else float("nan")
        needed = mde = power_now = float("nan")
        if metric_kind == "conversion":
            method = "two-proportion"
            if mean_c < 1:
                mde = mde_two_proportions(mean_c, n_c, n_t, alpha=alpha, power=power)
                if not np.isfinite(mde):
                    notes.append("too few users for any rise to be found with this power")
            p_t = mean_c + target_abs
            if mean_c <= 0:
                notes.append("no conversion in the control yet: no relative effect to plan for")
            elif p_t >= 1:
                notes.append("the target effect would lift the rate to 1 or above")
            else:
                needed = sample_size_two_proportions(
                    mean_c, p_t, alpha=alpha, power=power, ratio=ratio
                )
                power_now = power_two_proportions(mean_c, p_t, n_c, n_t, alpha=alpha)
        else:
            method = "welch"
            if sd_c + sd_t > 0:
                mde = mde_welch(sd_c, sd_t, n_c, n_t, alpha=alpha, power=power)
            if sd_c == 0:
                notes.append("no variation in the control yet: nothing to plan with")
            elif mean_c == 0:
                notes.append("the control mean is 0: no relative effect to plan for")
            else:
                # Planned with the control's spread in both arms: the treatment's own
                # belongs to a different effect than the one being planned for.
                needed = sample_size_welch(
                    target_abs, sd_c, sd_c, alpha=alpha, power=power, ratio=ratio
                )
                power_now = power_welch(target_abs, sd_c, sd_c, n_c, n_t, alpha=alpha)
        need_c = math.ceil(needed) if np.isfinite(needed) else None
        need_t = math.ceil(needed * ratio) if np.isfinite(needed) else None
        need_total = (
            max(math.ceil(need_c / w[0]), math.ceil(need_t / w_t)) if need_c is not None else None
        )
        days = (
            days_to_reach(need_total, users_total, exposures_per_day)
            if need_total is not None
            else None
        )
        out.append(
            PowerEstimate(
                variant=name_t,
                method=method,
                power=power,
                baseline=float(mean_c),
                mde_absolute=_finite(mde),
                mde_relative=_finite(mde / abs(mean_c)) if mean_c != 0 else None,
                target_relative=float(target_relative),
                target_absolute=_finite(target_abs),
                power_at_target=_finite(power_now),
                users_needed_control=need_c,
                users_needed_treatment=need_t,
                users_needed_total=need_total,
                users_total=users_total,
                exposures_per_day=_finite(exposures_per_day)
                if exposures_per_day is not None
                else None,
                days_remaining=days,
                note="; ".join(notes),
            )
        )
    return out


@dataclass(frozen=True)
class PowerCheck:
    """The planned power of one design against the rejection rate of simulated experiments."""

    label: str
    users_control: int
    users_treatment: int
    planned_power: float
    simulated_power: float
    experiments: int


def simulate_power_checks(
    *, experiments: int = 20_000, alpha: float = 0.05, power: float = DEFAULT_POWER, seed: int = 0
) -> list[PowerCheck]:
    """Plan a few classic designs, then run the analysis's own tests on simulated data.

    Rates: ``experiments`` binomial experiments at the planned size, each analysed with the
    pooled z-test of :func:`.stats.two_proportion_test` (vectorised); means: a quarter as
    many normal experiments analysed with Welch's test. The share that rejects at ``alpha``
    should be ``power`` within about two binomial standard errors.
    """
    rng = np.random.default_rng(seed)
    checks = []
    for p1, p2 in [(0.10, 0.12), (0.03, 0.033), (0.5, 0.52)]:
        n = math.ceil(sample_size_two_proportions(p1, p2, alpha=alpha, power=power))
        c, t = rng.binomial(n, p1, experiments), rng.binomial(n, p2, experiments)
        pooled = (c + t) / (2 * n)
        z = (t - c) / n / np.sqrt(pooled * (1 - pooled) * 2 / n)
        rejected = float(np.mean(2 * stats.norm.sf(np.abs(z)) < alpha))
        planned = power_two_proportions(p1, p2, n, n, alpha=alpha)
        checks.append(PowerCheck(f"rates {p1} vs {p2}", n, n, planned, rejected, experiments))
    runs = max(experiments // 4, 1)
    for delta, sd_c, sd_t, ratio in [(0.5, 1.0, 1.0, 1.0), (0.2, 1.0, 1.0, 1.0),
                                     (0.5, 1.0, 2.0, 1.5)]:  # fmt: skip
        n = sample_size_welch(delta, sd_c, sd_t, alpha=alpha, power=power, ratio=ratio)
        n_c, n_t = math.ceil(n), math.ceil(ratio * n)
        planned = power_welch(delta, sd_c, sd_t, n_c, n_t, alpha=alpha)
        hits = 0
        for start in range(0, runs, 1000):  # chunks: 1000 x 400 users x 2 arms at most
            size = min(1000, runs - start)
            a = rng.normal(0.0, sd_c, (size, n_c))
            b = rng.normal(delta, sd_t, (size, n_t))
            hits += int(np.sum(stats.ttest_ind(b, a, axis=1, equal_var=False).pvalue < alpha))
        label = f"means d={delta / sd_c:g}, sd {sd_c:g}/{sd_t:g}, split 1:{ratio:g}"
        checks.append(PowerCheck(label, n_c, n_t, planned, hits / runs, runs))
    return checks
