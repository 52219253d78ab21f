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
