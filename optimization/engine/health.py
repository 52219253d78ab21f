"""Health score 0-100 built from weighted, documented parts, each saying how many points it costs.

A single number is only useful if an operator can see why it is not 100. The score is the sum of
five parts, each worth a fixed number of points (``HealthPolicy.weights``, default 30/25/20/15/10)
and each scoring 0..1:

* ``latency``: the latency SLO. Share of intervals whose p95 exceeds the target, measured against
  the error budget of the objective (objective 95 % -> budget 5 %). Burning the whole budget
  within the window loses every point: the score follows SRE burn-rate practice, not taste.
* ``errors``: the error SLO. Request-weighted share of failed requests against its budget.
* ``saturation``: p95 utilisation of each resource; nothing is lost below ``saturation_safe``,
  everything at ``saturation_critical``, linearly between. The worst resource counts because one
  exhausted pool stalls requests however idle the CPU is.
* ``availability``: share of intervals in which the service was down (at least
  ``outage_error_ratio`` of requests failing), against the availability budget.
* ``trends``: significant drifts in the bad direction (latency or errors up), as the weekly
  relative change over ``trend_full_penalty_per_week``; the worst drift counts.

A part without data is reported as such and excluded, and the remaining weights are rescaled,
so missing telemetry neither rewards nor punishes the product.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .trends import Trend

DEFAULT_WEIGHTS: Mapping[str, float] = {
    "latency": 30.0,
    "errors": 25.0,
    "saturation": 20.0,
    "availability": 15.0,
    "trends": 10.0,
}


@dataclass(frozen=True)
class HealthPolicy:
    """Objectives and weights of the health score (see the module docstring)."""

    latency_target_ms: float = 500.0
    latency_objective: float = 0.95
    error_objective: float = 0.99
    availability_objective: float = 0.999
    outage_error_ratio: float = 0.5
    saturation_safe: float = 0.7
    saturation_critical: float = 0.95
    trend_full_penalty_per_week: float = 0.2
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))


@dataclass(frozen=True)
class TrendSignal:
    """A trend of a series and which direction is bad for it."""

    name: str
    trend: Trend
    worse_when: str = "up"


@dataclass(frozen=True)
class HealthPart:
    name: str
    weight: float
    score: float | None
    points_lost: float
    explanation: str
    detail: dict


@dataclass(frozen=True)
class HealthScore:
    score: float
    parts: tuple[HealthPart, ...]

    def breakdown(self) -> dict[str, dict]:
        """Part name -> weight, score, points lost, explanation: the figures the admin shows."""
        return {
            p.name: {
                "weight": p.weight,
                "score": p.score,
                "points_lost": round(p.points_lost, 3),
                "explanation": p.explanation,
                "detail": p.detail,
            }
            for p in self.parts
        }


def _finite(values: np.ndarray | None) -> np.ndarray:
    if values is None:
        return np.empty(0)
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


def _budget_score(bad_share: float, objective: float) -> float:
    budget = 1.0 - objective
    return float(np.clip(1.0 - bad_share / budget, 0.0, 1.0))


def _latency_part(latency_p95_ms: np.ndarray | None, policy: HealthPolicy):
    values = _finite(latency_p95_ms)
    if values.size == 0:
        return None, "no latency data", {}
    bad = float(np.mean(values > policy.latency_target_ms))
    score = _budget_score(bad, policy.latency_objective)
    return (
        score,
        f"{bad:.1%} of intervals had p95 above {policy.latency_target_ms:g} ms "
        f"(budget {1 - policy.latency_objective:.1%})",
        {"bad_share": bad, "intervals": int(values.size), "budget": 1 - policy.latency_objective},
    )


def _error_part(error_ratio, request_rate, policy: HealthPolicy):
    ratio = np.asarray(error_ratio, dtype=np.float64) if error_ratio is not None else None
    if ratio is None or not np.isfinite(ratio).any():
        return None, "no error data", {}
    if request_rate is not None:
        rate = np.asarray(request_rate, dtype=np.float64)
        ok = np.isfinite(ratio) & np.isfinite(rate) & (rate > 0)
        failed = float(np.sum(ratio[ok] * rate[ok]) / np.sum(rate[ok])) if ok.any() else None
    else:
        failed = None
    if failed is None:
        failed = float(np.mean(ratio[np.isfinite(ratio)]))
    score = _budget_score(failed, policy.error_objective)
    return (
        score,
        f"{failed:.2%} of requests failed (budget {1 - policy.error_objective:.1%})",
        {"failed_share": failed, "budget": 1 - policy.error_objective},
    )


def _availability_part(error_ratio, policy: HealthPolicy):
    values = _finite(error_ratio)
    if values.size == 0:
        return None, "no error data", {}
    down = float(np.mean(values >= policy.outage_error_ratio))
    score = _budget_score(down, policy.availability_objective)
    return (
        score,
        f"down in {down:.2%} of intervals (budget {1 - policy.availability_objective:.2%})",
        {"down_share": down, "intervals": int(values.size)},
    )


def _saturation_part(saturation: Mapping[str, np.ndarray], policy: HealthPolicy):
    detail: dict[str, dict] = {}
    worst_name, worst_penalty = None, 0.0
    span = policy.saturation_critical - policy.saturation_safe
    for name, series in saturation.items():
        values = _finite(series)
        if values.size == 0:
            continue
        p95 = float(np.percentile(values, 95))
        penalty = float(np.clip((p95 - policy.saturation_safe) / span, 0.0, 1.0))
        detail[name] = {"p95": p95, "penalty": penalty}
        if worst_name is None or penalty > worst_penalty:
            worst_name, worst_penalty = name, penalty
    if worst_name is None:
        return None, "no saturation data", {}
    p95 = detail[worst_name]["p95"]
    return (
        1.0 - worst_penalty,
        f"most saturated: {worst_name} at p95 {p95:.0%} (safe below {policy.saturation_safe:.0%})",
        detail,
    )


def _trend_part(trends: Sequence[TrendSignal], policy: HealthPolicy):
    if not trends:
        return None, "no trend data", {}
    detail: dict[str, dict] = {}
    worst_name, worst_penalty = None, 0.0
    for signal in trends:
        change = signal.trend.relative_change_per_week
        bad_change = change if signal.worse_when == "up" else -change
        penalty = 0.0
        if signal.trend.significant and bad_change > 0:
            penalty = float(min(1.0, bad_change / policy.trend_full_penalty_per_week))
        detail[signal.name] = {
            "relative_change_per_week": change,
            "p_value": signal.trend.p_value,
            "penalty": penalty,
        }
        if penalty > worst_penalty:
            worst_name, worst_penalty = signal.name, penalty
    if worst_name is None:
        return 1.0, "no significant worsening trend", detail
    change = detail[worst_name]["relative_change_per_week"]
    return 1.0 - worst_penalty, f"{worst_name} drifts {change:+.1%} per week", detail


def overall_from_endpoints(
    rates: np.ndarray,
    latency_p95_ms: np.ndarray,
    error_ratio: np.ndarray,
    *,
    routed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whole-service request rate, p95 and error ratio per interval from per-endpoint figures.

    The request profiler writes per-endpoint series only, so an installation fed by it alone
    has no overall series and its health score had no data at all. Inputs are
    ``(endpoints, intervals)`` arrays with NaN for an endpoint without traffic in an interval.
    The rate is the sum; the error ratio is the request-weighted mean, which is exact (failed
    requests over requests); the p95 is the request-weighted mean of the endpoints' p95s, an
    estimate (the union's p95 needs the raw latencies): a slow endpoint weighs by its share of
    the traffic, so a rarely hit slow page does not by itself break the latency objective.
    An interval without traffic is NaN in all three.

    ``routed`` (one flag per endpoint, default all) marks the URL routes. A row that is not
    one (requests that matched no route: mostly 404s, which are the client's error) counts
    only through its server failures (5xx; a middleware failing before routing is a real
    outage): they add to both failed requests and requests, while its other requests and
    its latency are left out. A scanner's 404 flood thus neither dilutes the error ratio of
    the real traffic nor pulls the latency estimate toward its fast 404s.
    """
    rates = np.atleast_2d(np.asarray(rates, dtype=np.float64))
    latency = np.atleast_2d(np.asarray(latency_p95_ms, dtype=np.float64))
    errors = np.atleast_2d(np.asarray(error_ratio, dtype=np.float64))
    routed = (
        np.ones(rates.shape[0], dtype=bool)
        if routed is None
        else np.asarray(routed, dtype=bool).reshape(-1)
    )
    if routed.size != rates.shape[0]:
        raise ValueError("routed needs one flag per endpoint")
    weight = np.where(np.isfinite(rates) & (rates > 0), rates, 0.0)
    # unresolved rows: only their failed requests count, as requests that all failed
    failed_unrouted = np.where(np.isfinite(errors), weight * np.clip(errors, 0.0, 1.0), 0.0)
    weight = np.where(routed[:, None], weight, failed_unrouted)
    errors = np.where(routed[:, None], errors, 1.0)
    latency = np.where(routed[:, None], latency, np.nan)

    def weighted(values: np.ndarray) -> np.ndarray:
        ok = np.isfinite(values) & (weight > 0)
        w = np.where(ok, weight, 0.0)
        sums, norm = (np.where(ok, values, 0.0) * w).sum(axis=0), w.sum(axis=0)
        return np.divide(sums, norm, out=np.full(norm.shape, np.nan), where=norm > 0)

    total = weight.sum(axis=0)
    return np.where(total > 0, total, np.nan), weighted(latency), weighted(errors)


def health_score(
    *,
    latency_p95_ms: np.ndarray | None = None,
    error_ratio: np.ndarray | None = None,
    request_rate: np.ndarray | None = None,
    saturation: Mapping[str, np.ndarray] | None = None,
    trends: Sequence[TrendSignal] = (),
    policy: HealthPolicy | None = None,
) -> HealthScore:
    """Combine the parts into a 0-100 score with the points each part loses.

    Inputs are per-interval arrays over the scoring window (NaN marks a gap). ``request_rate``
    weights the error ratio so that a failing quiet hour counts less than a failing peak.
    """
    policy = policy or HealthPolicy()
    computed = {
        "latency": _latency_part(latency_p95_ms, policy),
        "errors": _error_part(error_ratio, request_rate, policy),
        "saturation": _saturation_part(saturation or {}, policy),
        "availability": _availability_part(error_ratio, policy),
        "trends": _trend_part(trends, policy),
    }
    known_weight = sum(
        policy.weights[name] for name, (score, _, _) in computed.items() if score is not None
    )
    total_weight = sum(policy.weights[name] for name in computed)
    scale = total_weight / known_weight if known_weight else 0.0
    parts = []
    for name, (score, explanation, detail) in computed.items():
        weight = policy.weights[name]
        lost = 0.0 if score is None else weight * scale * (1.0 - score)
        parts.append(HealthPart(name, weight, score, lost, explanation, detail))
    if known_weight == 0:
        raise ValueError("no data for any part of the health score")
    total = 100.0 * (1.0 - sum(p.points_lost for p in parts) / total_weight)
    return HealthScore(score=float(np.clip(total, 0.0, 100.0)), parts=tuple(parts))
