"""Sequential testing with always-valid p-values and confidence sequences.

A fixed-horizon p-value is only valid if you look once. Checked every day and
stopped at the first p < 0.05, an A/A test "wins" far more often than 5% of the
time. The normal-mixture sequential probability ratio test (mSPRT; Robbins 1970,
Johari et al. 2017, the confidence sequences of Howard et al. 2021 and
Waudby-Smith et al. 2023 "Time-uniform central limit theory") fixes this: its
p-values and intervals hold simultaneously over all looks.

For an asymptotically normal estimate ``theta_hat`` of the effect with variance
``v`` after ``n`` users, and a mixture parameter ``rho`` (below), the mixture
likelihood ratio against theta = theta0 is::

    Lambda = sqrt(1 / (1 + n rho^2)) * exp( n rho^2 / (1 + n rho^2) * z^2 / 2 ),
    z = (theta_hat - theta0) / sqrt(v)

By Ville's inequality, P(Lambda ever exceeds 1/alpha under H0) <= alpha, so:

- always-valid p-value: ``p_n = min(1, min over looks k <= n of 1 / Lambda_k)``;
- confidence sequence: ``theta_hat +- sqrt(v) * sqrt((1 + n rho^2) / (n rho^2) *
  log((1 + n rho^2) / alpha^2))``, intersected over looks.

``rho`` only decides *when* the sequence is tightest; every choice is valid. We
use the optimum of Waudby-Smith et al. for a planned sample size ``n_planned``:
``rho^2 = (-2 log alpha + log(-2 log alpha + 1)) / n_planned``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from .stats import Interval


def mixture_rho2(alpha: float, n_planned: float) -> float:
    """Mixture precision that makes the sequence tightest at ``n_planned`` users."""
    if not 0 < alpha < 1 or n_planned <= 0:
        raise ValueError("alpha must be in (0, 1) and n_planned positive")
    log_term = -2.0 * np.log(alpha)
    return float((log_term + np.log(log_term + 1.0)) / n_planned)


def always_valid_p_value(z: np.ndarray | float, n: np.ndarray | float, rho2: float) -> np.ndarray:
    """1 / Lambda at one look (not yet the running minimum), capped at 1."""
    nr = np.asarray(n, dtype=np.float64) * rho2
    z = np.asarray(z, dtype=np.float64)
    log_lambda = -0.5 * np.log1p(nr) + nr / (1.0 + nr) * z**2 / 2.0
    return np.minimum(1.0, np.exp(-log_lambda))


def confidence_halfwidth(
    variance: np.ndarray | float, n: np.ndarray | float, rho2: float, alpha: float
) -> np.ndarray:
    """Half-width of the (1 - alpha) confidence sequence at one look."""
    nr = np.asarray(n, dtype=np.float64) * rho2
    return np.sqrt(np.asarray(variance) * (1.0 + nr) / nr * np.log((1.0 + nr) / alpha**2))


@dataclass(frozen=True)
class SequentialState:
    """What must be carried from one look to the next: the running min and intersection."""

    p_value: float = 1.0
    lower: float = -np.inf
    upper: float = np.inf
    looks: int = 0


@dataclass(frozen=True)
class SequentialLook:
    estimate: float
    p_value: float  # always-valid, running minimum over looks
    ci: Interval  # always-valid, running intersection over looks
    ci_this_look: Interval
    significant: bool
    state: SequentialState


def sequential_look(
    estimate: float,
    variance: float,
    n: int,
    *,
    alpha: float = 0.05,
    n_planned: int = 10_000,
    previous: SequentialState | None = None,
) -> SequentialLook:
    """Update the always-valid p-value and confidence sequence with one more look.

    ``variance`` is the variance of ``estimate`` (e.g. s_a^2/n_a + s_b^2/n_b for a
    difference of means) and ``n`` the users behind it (both arms).
    """
    previous = previous or SequentialState()
    rho2 = mixture_rho2(alpha, n_planned)
    if n <= 0 or variance <= 0 or not np.isfinite(variance):
        ci = Interval(previous.lower, previous.upper)
        return SequentialLook(estimate, previous.p_value, ci, Interval(-np.inf, np.inf), False,
                              previous)  # fmt: skip
    z = estimate / np.sqrt(variance)
    p_now = float(always_valid_p_value(z, n, rho2))
    half = float(confidence_halfwidth(variance, n, rho2, alpha))
    lower = max(previous.lower, estimate - half)
    upper = min(previous.upper, estimate + half)
    if lower > upper:  # the intersection emptied: only possible when the model is wrong
        lower, upper = estimate - half, estimate + half
    p_value = min(previous.p_value, p_now)
    state = SequentialState(p_value, lower, upper, previous.looks + 1)
    return SequentialLook(
        estimate=float(estimate),
        p_value=p_value,
        ci=Interval(lower, upper),
        ci_this_look=Interval(estimate - half, estimate + half),
        significant=p_value < alpha,
        state=state,
    )


@dataclass(frozen=True)
class AASimulation:
    n_experiments: int
    looks: int
    alpha: float
    sequential_false_positive_rate: float
    naive_peeking_false_positive_rate: float
    single_look_false_positive_rate: float


def simulate_aa_experiments(
    *,
    n_experiments: int = 2000,
    days: int = 28,
    users_per_day: int = 200,
    conversion_rate: float = 0.1,
    alpha: float = 0.05,
    n_planned: int | None = None,
    seed: int = 0,
) -> AASimulation:
    """Many A/A tests (no true difference) checked once a day.

    Returns how often each procedure ever declares a winner: the sequential test
    (should be <= alpha), the fixed-horizon z-test peeked at daily (inflated), and
    the z-test looked at once at the end (about alpha). Vectorised over experiments.
    """
    rng = np.random.default_rng(seed)
    n_planned = n_planned or days * users_per_day
    arm_a = rng.binomial(users_per_day // 2, conversion_rate, size=(n_experiments, days))
    arm_b = rng.binomial(users_per_day // 2, conversion_rate, size=(n_experiments, days))
    n_arm = np.arange(1, days + 1) * (users_per_day // 2)
    conv_a, conv_b = arm_a.cumsum(axis=1), arm_b.cumsum(axis=1)
    p_a, p_b = conv_a / n_arm, conv_b / n_arm
    variance = (p_a * (1 - p_a) + p_b * (1 - p_b)) / n_arm
    pooled = (conv_a + conv_b) / (2 * n_arm)
    var_pooled = 2 * pooled * (1 - pooled) / n_arm
    with np.errstate(divide="ignore", invalid="ignore"):
        z_seq = np.where(variance > 0, (p_b - p_a) / np.sqrt(variance), 0.0)
        z_fixed = np.where(var_pooled > 0, (p_b - p_a) / np.sqrt(var_pooled), 0.0)
    rho2 = mixture_rho2(alpha, n_planned)
    p_seq = always_valid_p_value(z_seq, 2 * n_arm, rho2)
    p_fixed = 2 * stats.norm.sf(np.abs(z_fixed))
    return AASimulation(
        n_experiments=n_experiments,
        looks=days,
        alpha=alpha,
        sequential_false_positive_rate=float((p_seq.min(axis=1) < alpha).mean()),
        naive_peeking_false_positive_rate=float((p_fixed.min(axis=1) < alpha).mean()),
        single_look_false_positive_rate=float((p_fixed[:, -1] < alpha).mean()),
    )
