"""Data sets whose right answers are known, for tests and offline evaluation.

Each generator returns the data and the truth it was built from (user kinds, true
effects, incident windows), so a test can check that the engine recovers the truth
rather than compare against numbers typed into the test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

BEHAVIOUR_FEATURES = (
    "sessions",
    "page_views",
    "feature_breadth",
    "shortcuts",
    "tasks",
    "goals",
    "streak_days",
    "social",
    "invites",
    "purchases",
    "active_days",
)

# Mean weekly counts per user kind: each kind is loud on its own few features.
KIND_RATES: Mapping[str, Sequence[float]] = {
    #            ses  pv   brd  sc  task goal strk soc inv pur act
    "explorer": (12, 90, 15, 1, 4, 1, 1, 2, 0.3, 0.5, 5),
    "optimizer": (10, 25, 4, 25, 30, 2, 2, 1, 0.2, 1.0, 5),
    "achiever": (9, 30, 5, 2, 10, 12, 6, 1, 0.2, 1.5, 6),
    "socializer": (8, 35, 5, 1, 3, 1, 1, 20, 4.0, 0.5, 4),
    "casual": (1, 4, 1, 0.1, 0.5, 0.1, 0.1, 0.2, 0.05, 0.05, 1),
}


@dataclass
class Population:
    features: np.ndarray  # (users x features) counts
    feature_names: tuple[str, ...]
    kinds: np.ndarray  # true kind of each user (strings)


def make_population(
    sizes: Mapping[str, int], *, seed: int = 0, dispersion: float = 4.0
) -> Population:
    """Users of known kinds with negative-binomial counts (over-dispersed like real use).

    ``dispersion`` is the gamma shape of each user's personal rate multiplier: lower
    means users of one kind differ more from each other, which makes segmentation harder.
    """
    rng = np.random.default_rng(seed)
    rows, kinds = [], []
    for kind, n in sizes.items():
        rates = np.asarray(KIND_RATES[kind], dtype=float)
        personal = rng.gamma(dispersion, 1 / dispersion, size=(n, 1))
        rows.append(rng.poisson(rates[None, :] * personal))
        kinds.extend([kind] * n)
    features = np.vstack(rows).astype(float)
    order = rng.permutation(len(kinds))
    return Population(features[order], BEHAVIOUR_FEATURES, np.asarray(kinds)[order])


@dataclass
class FeatureUsage:
    usage: np.ndarray  # (users x features) 0/1
    outcome: np.ndarray  # 0/1
    feature_names: tuple[str, ...]
    true_log_odds: np.ndarray  # effect of each feature on the outcome's log-odds
    adoption: np.ndarray


def make_feature_usage(
    n_users: int,
    adoption: Sequence[float],
    true_log_odds: Sequence[float],
    *,
    base_log_odds: float = -1.0,
    seed: int = 0,
    proxy_of: Mapping[int, int] | None = None,
    proxy_agreement: float = 0.9,
) -> FeatureUsage:
    """Users adopt features independently; the outcome follows a known logistic model.

    ``proxy_of`` = {j: i} makes feature j copy feature i's usage with probability
    ``proxy_agreement``, so j correlates with the outcome without causing it: a 2x2
    table credits it, a model that sees both features should not.
    """
    rng = np.random.default_rng(seed)
    adopt = np.asarray(adoption, dtype=float)
    beta = np.asarray(true_log_odds, dtype=float)
    if adopt.shape != beta.shape:
        raise ValueError("adoption and true_log_odds need one value per feature")
    usage = (rng.random((n_users, len(adopt))) < adopt).astype(float)
    for j, i in (proxy_of or {}).items():
        copy = rng.random(n_users) < proxy_agreement
        usage[:, j] = np.where(copy, usage[:, i], usage[:, j])
    logit = base_log_odds + usage @ beta
    outcome = (rng.random(n_users) < 1 / (1 + np.exp(-logit))).astype(int)
    names = tuple(f"feature_{j:02d}" for j in range(len(adopt)))
    return FeatureUsage(usage, outcome, names, beta, usage.mean(axis=0))


STATE_COLUMNS = ("traffic", "cpu", "memory", "latency_p95", "error_ratio")


@dataclass
class SystemHistory:
    ts: np.ndarray
    states: np.ndarray  # (steps x STATE_COLUMNS)
    columns: tuple[str, ...]
    incidents: list[tuple[float, float]]  # injected windows [start, end]
    incident_kinds: list[str]


def make_system_history(
    *,
    days: int = 28,
    step_seconds: int = 300,
    seed: int = 0,
    start_ts: float = 1_700_438_400.0,  # Monday 2023-11-20 00:00 UTC
    decoupled_incidents: int = 6,
    weekly_job_hour: int | None = 3,
    incident_steps: int = 6,
    growth_per_day: float = 0.0,
) -> SystemHistory:
    """Coupled system metrics with injected *multivariate-only* incidents.

    Normally CPU and latency follow traffic. A "decoupled" incident puts latency and
    CPU at ordinary peak-hour levels while traffic is at its night-time low: each value
    alone is within its usual range, only the combination is wrong. A weekly batch job
    (Mondays at ``weekly_job_hour``) raises CPU and memory together at low traffic,
    which should be found as a weekly-recurring pattern. ``growth_per_day`` grows the
    load (and so every metric that follows it) like a product gaining users.
    """
    rng = np.random.default_rng(seed)
    n = days * 24 * 3600 // step_seconds
    ts = start_ts + np.arange(n) * step_seconds
    hour = ((ts - start_ts) % 86400) / 3600
    daily = 0.5 - 0.5 * np.cos(2 * np.pi * (hour - 3) / 24)  # 0 at 03:00, 1 at 15:00
    growth = 1.0 + growth_per_day * (ts - start_ts) / 86400
    load = np.clip(daily * growth + rng.normal(0, 0.04, n), 0, None)
    traffic = 200 + 1800 * load
    cpu = 0.15 + 0.6 * load + rng.normal(0, 0.03, n)
    memory = 0.55 + 0.05 * load + rng.normal(0, 0.01, n)
    latency = 80 + 220 * load + rng.normal(0, 12, n)
    errors = np.abs(0.002 + 0.003 * load + rng.normal(0, 0.001, n))

    incidents: list[tuple[float, float]] = []
    kinds: list[str] = []
    night = np.flatnonzero((hour >= 1) & (hour < 5))
    taken = np.zeros(n, dtype=bool)

    def inject(start: int, kind: str) -> None:
        stop = min(start + incident_steps, n)
        sl = slice(start, stop)
        if kind == "decoupled":
            latency[sl] = 80 + 220 * rng.uniform(0.75, 0.95, stop - start)
            cpu[sl] = 0.15 + 0.6 * rng.uniform(0.75, 0.95, stop - start)
        else:  # weekly batch job
            cpu[sl] = 0.15 + 0.6 * rng.uniform(0.8, 0.95, stop - start)
            memory[sl] = 0.55 + 0.05 * rng.uniform(0.9, 1.0, stop - start) + 0.02
        taken[max(start - incident_steps, 0) : stop + incident_steps] = True
        incidents.append((float(ts[start]), float(ts[stop - 1])))
        kinds.append(kind)

    if weekly_job_hour is not None:
        steps_per_week = 7 * 86400 // step_seconds
        first = weekly_job_hour * 3600 // step_seconds
        for week in range(days // 7):
            inject(first + week * steps_per_week, "weekly_job")
    candidates = [i for i in night if not taken[i] and i + incident_steps < n]
    for start in rng.choice(candidates, size=decoupled_incidents, replace=False):
        if taken[start]:
            continue
        inject(int(start), "decoupled")

    order = np.argsort([a for a, _ in incidents])
    states = np.column_stack([traffic, cpu, memory, latency, errors])
    return SystemHistory(
        ts=ts.astype(float),
        states=states,
        columns=STATE_COLUMNS,
        incidents=[incidents[i] for i in order],
        incident_kinds=[kinds[i] for i in order],
    )
