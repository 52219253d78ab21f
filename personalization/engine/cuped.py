"""CUPED: variance reduction with each user's pre-exposure value of the metric.

Deng, Xu, Kohavi & Walker, "Improving the Sensitivity of Online Controlled Experiments
by Utilizing Pre-Experiment Data" (WSDM 2013), what GrowthBook and Statsig call CUPED.
Much of the spread of a per-user metric is who the user is (heavy buyers buy a lot in
any arm), and the same metric measured *before* the exposure knows it. With ``X`` that
pre-exposure value and ``Y`` the metric::

    theta = cov(Y, X) / var(X)
    Y'    = Y - theta (X - mean(X))

``X`` cannot be moved by the treatment (it was measured before it), so the arms'
means of ``Y'`` differ by the same effect in expectation, while ``var(Y') = var(Y)
(1 - rho^2)``, ``rho`` the correlation of X and Y: the interval narrows by
``sqrt(1 - rho^2)``, as if the experiment had ``1 / (1 - rho^2)`` times the users.

``theta`` is pooled *within* arms (each arm's covariance around its own means, summed
over arms) rather than over all users at once: a real treatment effect on ``Y`` then
cannot enter ``theta`` through a chance imbalance of ``X`` between the arms. With it the
adjusted difference is exactly the treatment coefficient of the regression
``Y ~ arm + X`` (ANCOVA), which the tests check. The comparisons of the adjusted values
are Welch's t-test, for rates as well (``Y'`` is no longer 0/1); Holm's correction
across treatments as for the unadjusted p-values. Pure numpy / scipy: no Django.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .stats import Interval, holm_adjust, welch_test


@dataclass(frozen=True)
class CupedComparison:
    """One treatment against the control, adjusted, beside what it would be without."""

    variant: str
    control_value: float  # adjusted means
    treatment_value: float
    difference: float
    difference_ci: Interval
    relative_lift: float
    relative_lift_ci: Interval
    p_value: float
    p_value_holm: float
    unadjusted_difference: float
    unadjusted_ci: Interval
    variance_reduction: float  # 1 - var(adjusted difference) / var(unadjusted difference)


@dataclass(frozen=True)
class CupedAnalysis:
    theta: float
    covariate_mean: float
    correlation: float  # within-arm, pooled: the reduction to expect is about its square
    users_with_covariate: int  # users whose pre-exposure value is not 0
    comparisons: list[CupedComparison] = field(default_factory=list)


def cuped_theta(
    values: Sequence[np.ndarray], covariates: Sequence[np.ndarray]
) -> tuple[float, float]:
    """``(theta, correlation)`` from the arms' within-arm covariances, pooled.

    NaN when the covariate does not vary inside the arms (no pre-exposure data).
    """
    sxy = sxx = syy = 0.0
    for y, x in zip(values, covariates, strict=True):
        y, x = np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64)
        if y.shape != x.shape:
            raise ValueError("one covariate value per user")
        if y.size == 0:
            continue
        dy, dx = y - y.mean(), x - x.mean()
        sxy += float(dx @ dy)
        sxx += float(dx @ dx)
        syy += float(dy @ dy)
    if sxx <= 0:
        return float("nan"), float("nan")
    corr = sxy / np.sqrt(sxx * syy) if syy > 0 else 0.0
    return sxy / sxx, float(corr)


def cuped_analysis(
    names: Sequence[str],
    values: Sequence[np.ndarray],
    covariates: Sequence[np.ndarray],
    *,
    alpha: float = 0.05,
) -> CupedAnalysis | None:
    """Adjusted comparisons of every arm against the first (the control).

    ``values[i]`` and ``covariates[i]`` are the metric and its pre-exposure value of the
    users of arm ``names[i]``, in the same order. None when CUPED cannot apply: fewer
    than two users in an arm, or a covariate that does not vary (no user had any
    pre-exposure data, so there is nothing to adjust with).
    """
    if len(names) < 2 or not len(names) == len(values) == len(covariates):
        raise ValueError("need a control, a treatment, and values and covariates per arm")
    ys = [np.asarray(v, dtype=np.float64) for v in values]
    xs = [np.asarray(c, dtype=np.float64) for c in covariates]
    if min(y.size for y in ys) < 2:
        return None
    theta, corr = cuped_theta(ys, xs)
    if not np.isfinite(theta):
        return None
    x_mean = float(np.concatenate(xs).mean())
    adjusted = [y - theta * (x - x_mean) for y, x in zip(ys, xs, strict=True)]

    def welch(a: np.ndarray, b: np.ndarray):
        return welch_test(
            float(a.mean()), float(a.var(ddof=1)), a.size,
            float(b.mean()), float(b.var(ddof=1)), b.size, alpha=alpha,
        )  # fmt: skip

    raw = []
    for i in range(1, len(names)):
        adj, plain = welch(adjusted[0], adjusted[i]), welch(ys[0], ys[i])
        var_adj = adjusted[0].var(ddof=1) / ys[0].size + adjusted[i].var(ddof=1) / ys[i].size
        var_raw = ys[0].var(ddof=1) / ys[0].size + ys[i].var(ddof=1) / ys[i].size
        reduction = 1.0 - var_adj / var_raw if var_raw > 0 else 0.0
        raw.append((names[i], adj, plain, float(reduction)))
    holm = holm_adjust([r[1].p_value for r in raw])
    return CupedAnalysis(
        theta=float(theta),
        covariate_mean=x_mean,
        correlation=float(corr),
        users_with_covariate=int(sum(np.count_nonzero(x) for x in xs)),
        comparisons=[
            CupedComparison(
                variant=name,
                control_value=adj.control_value,
                treatment_value=adj.treatment_value,
                difference=adj.difference,
                difference_ci=adj.difference_ci,
                relative_lift=adj.relative_lift,
                relative_lift_ci=adj.relative_lift_ci,
                p_value=adj.p_value,
                p_value_holm=float(h),
                unadjusted_difference=plain.difference,
                unadjusted_ci=plain.difference_ci,
                variance_reduction=reduction,
            )
            for (name, adj, plain, reduction), h in zip(raw, holm, strict=True)
        ],
    )


@dataclass(frozen=True)
class CupedCheck:
    """CUPED over many simulated experiments with a known effect and correlation."""

    rho: float
    effect: float
    users_per_arm: int
    experiments: int
    mean_adjusted: float  # mean adjusted estimate: the effect if unbiased
    se_mean_adjusted: float
    mean_unadjusted: float
    variance_ratio: float  # var(adjusted) / var(unadjusted) across experiments: 1 - rho^2
    reported_reduction: float  # mean variance_reduction the analyses reported: rho^2
    coverage: float  # share of adjusted intervals holding the effect: 1 - alpha


def simulate_cuped_checks(
    *,
    rhos: Sequence[float] = (0.3, 0.6, 0.9),
    effect: float = 0.3,
    users_per_arm: int = 400,
    experiments: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> list[CupedCheck]:
    """Synthetic experiments: X ~ N(5, 2) before exposure, Y with correlation ``rho`` to X
    (sd 3), plus ``effect`` in the treatment; each analysed by :func:`cuped_analysis`."""
    rng = np.random.default_rng(seed)
    checks = []
    for rho in rhos:
        adjusted, unadjusted, reductions, covered = [], [], [], 0
        for _ in range(experiments):
            ys, xs = [], []
            for arm in (0, 1):
                x = rng.normal(5.0, 2.0, users_per_arm)
                e = rng.normal(0.0, 1.0, users_per_arm)
                ys.append(10.0 + 3.0 * (rho * (x - 5.0) / 2.0 + np.sqrt(1 - rho**2) * e)
                          + effect * arm)  # fmt: skip
                xs.append(x)
            result = cuped_analysis(["control", "treatment"], ys, xs, alpha=alpha)
            (c,) = result.comparisons
            adjusted.append(c.difference)
            unadjusted.append(c.unadjusted_difference)
            reductions.append(c.variance_reduction)
            covered += c.difference_ci.contains(effect)
        adj, raw = np.array(adjusted), np.array(unadjusted)
        checks.append(
            CupedCheck(
                rho=float(rho),
                effect=float(effect),
                users_per_arm=users_per_arm,
                experiments=experiments,
                mean_adjusted=float(adj.mean()),
                se_mean_adjusted=float(adj.std(ddof=1) / np.sqrt(experiments)),
                mean_unadjusted=float(raw.mean()),
                variance_ratio=float(adj.var(ddof=1) / raw.var(ddof=1)),
                reported_reduction=float(np.mean(reductions)),
                coverage=covered / experiments,
            )
        )
    return checks
