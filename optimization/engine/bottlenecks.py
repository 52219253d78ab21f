"""Bottleneck detectors: where the time goes and what is holding requests back.

Each detector takes plain arrays or dataclasses and returns findings with the evidence a
recommendation needs (how often, how strong, how much time is at stake):

* :func:`rank_endpoints` - share of total request time and of database time per endpoint
  (an endpoint with modest latency but huge traffic can cost more than a slow rare one);
* :func:`saturation_links` - resources whose utilisation moves with latency, allowing a lag
  because a pool filling up precedes the latency it causes;
* :func:`find_repeated_shapes` / :func:`n_plus_one_from_requests` - N+1 query patterns, with
  Sentry's N+1 DB detector thresholds (at least 5 consecutive repeats of one query shape
  adding up to at least 50 ms in one request);
* :func:`n_plus_one_from_series` - the same suspicion from per-endpoint series when only
  query counts and DB time are known (weaker evidence, lower confidence);
* :func:`slow_query_shapes` - query shapes whose mean time is above a threshold;
* :func:`regressions` - endpoints whose recent latency sits above their hour-of-week baseline.

Requests that matched no URL route are pooled by the profiler under
:data:`UNRESOLVED_ENDPOINT`. That is not an endpoint anyone can optimise: it is mostly 404s,
and a scanner probing thousands of paths can make it the biggest "endpoint" of the day. As
Datadog (one ``404`` resource kept apart from the routes) and Sentry (404s are not errors and
can be left out of tracing) treat it, no detector here reports it: it is left out of the
ranking (so it does not dilute the routes' shares either), of N+1, slow-query and regression
findings, and its figures are summarised on their own by :func:`unresolved_traffic`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .baselines import HourOfWeekBaseline

# Sentry's N+1 DB span detector defaults (sentry/utils/performance_issues/...): 5 repeats, 50 ms.
N_PLUS_ONE_MIN_REPEATS = 5
N_PLUS_ONE_MIN_TOTAL_MS = 50.0

# The profiler's name for requests that resolved to no URL pattern (see the module docstring).
UNRESOLVED_ENDPOINT = "<unresolved>"


def is_routed(endpoint: str) -> bool:
    """Whether ``endpoint`` is a URL route, i.e. something a change to the code can speed up."""
    return endpoint != UNRESOLVED_ENDPOINT


@dataclass(frozen=True)
class EndpointLoad:
    """What one endpoint costs over a period (typically a day)."""

    endpoint: str
    requests: float
    mean_latency_ms: float
    db_ms_per_request: float = 0.0
    queries_per_request: float = 0.0


@dataclass(frozen=True)
class EndpointShare:
    endpoint: str
    requests: float
    total_ms: float
    db_ms: float
    time_share: float
    db_share: float


def rank_endpoints(loads: Iterable[EndpointLoad]) -> list[EndpointShare]:
    """Endpoints ranked by their share of all request time (then of DB time).

    Time is requests x mean latency: the server time an endpoint consumes, which is what
    capacity and user-facing wait both scale with. Unresolved requests are left out, so the
    shares are of the routes' time: a 404 flood neither ranks nor shrinks a real hotspot.
    """
    loads = [load for load in loads if is_routed(load.endpoint)]
    rows = [
        (
            load,
            max(load.requests, 0.0) * max(load.mean_latency_ms, 0.0),
            max(load.requests, 0.0) * max(load.db_ms_per_request, 0.0),
        )
        for load in loads
        if np.isfinite(load.requests) and np.isfinite(load.mean_latency_ms)
    ]
    total = sum(r[1] for r in rows)
    total_db = sum(r[2] for r in rows)
    shares = [
        EndpointShare(
            endpoint=load.endpoint,
            requests=load.requests,
            total_ms=time_ms,
            db_ms=db_ms if np.isfinite(db_ms) else 0.0,
            time_share=time_ms / total if total else 0.0,
            db_share=db_ms / total_db if total_db and np.isfinite(db_ms) else 0.0,
        )
        for load, time_ms, db_ms in rows
    ]
    return sorted(shares, key=lambda s: (s.time_share, s.db_share), reverse=True)


@dataclass(frozen=True)
class UnresolvedTraffic:
    """What requests that matched no route cost: shown, never ranked or recommended on."""

    requests: float
    total_ms: float
    db_ms: float
    mean_latency_ms: float
    share_of_all_time: float  # of all request time, unresolved included


def unresolved_traffic(loads: Iterable[EndpointLoad]) -> UnresolvedTraffic | None:
    """The unresolved requests' figures, kept visible beside the ranking (``None`` if none).

    Its share is of all request time, the unresolved included, so an operator sees how much
    server time the unmatched traffic (often a scanner) takes, e.g. to rate-limit it.
    """
    loads = [
        load
        for load in loads
        if np.isfinite(load.requests) and np.isfinite(load.mean_latency_ms) and load.requests > 0
    ]
    mine = [load for load in loads if not is_routed(load.endpoint)]
    if not mine:
        return None

    def time_ms(load: EndpointLoad) -> float:
        return max(load.requests, 0.0) * max(load.mean_latency_ms, 0.0)

    requests = sum(load.requests for load in mine)
    total = sum(time_ms(load) for load in mine)
    everything = sum(time_ms(load) for load in loads)
    return UnresolvedTraffic(
        requests=requests,
        total_ms=total,
        db_ms=sum(
            load.requests * load.db_ms_per_request
            for load in mine
            if np.isfinite(load.db_ms_per_request)
        ),
        mean_latency_ms=total / requests,
        share_of_all_time=total / everything if everything else 0.0,
    )


@dataclass(frozen=True)
class ResourceLink:
    """A resource whose utilisation moves with latency.

    Two kinds of evidence, either of which makes the link significant: a monotone correlation
    over the whole window (``rho``), or latency being higher while the resource is saturated
    (``saturated_points`` intervals at or above the saturation level, latency there
    ``saturated_latency_ratio`` times the rest, one-sided Mann-Whitney ``saturated_p_value``).
    The second catches incidents: a pool exhausted for an hour drives latency hard, yet adds
    too few points to move a month-long correlation.
    """

    resource: str
    rho: float
    p_value: float
    lag_steps: int
    points: int
    utilization_p95: float
    latency_ms_per_unit: float
    saturated_points: int
    saturated_latency_ratio: float
    saturated_p_value: float
    saturated_excess_ms: float  # median latency while saturated minus the rest
    significant: bool

    @property
    def strength(self) -> float:
        """The stronger of the two kinds of evidence, 0..1, for ranking and confidence.

        Episodes count as ``(1 - p) x effect x n / (n + 10)``: the latency ratio gives full
        effect at 2x, and a handful of saturated intervals is weaker than dozens.
        """
        corr = (1 - self.p_value) * max(self.rho, 0.0)
        episode = 0.0
        if self.saturated_points and self.saturated_latency_ratio > 1:
            effect = min(1.0, 2 * (1 - 1 / self.saturated_latency_ratio))  # full at 2x
            support = self.saturated_points / (self.saturated_points + 10.0)
            episode = (1 - self.saturated_p_value) * effect * support
        return float(min(1.0, max(corr, episode)))


def _lagged(x: np.ndarray, y: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    if lag == 0:
        return x, y
    return x[:-lag], y[lag:]


def _unusual(x: np.ndarray, ts: np.ndarray | None, mads: float) -> np.ndarray:
    """Intervals where the resource is far above its normal for that hour of day.

    Resources follow traffic, so 0.7 CPU is normal at noon and alarming at 3 a.m.; the robust
    z-score is taken against the hour-of-day median and MAD when timestamps are given.
    """
    out = np.zeros(x.shape, dtype=bool)
    groups = [np.isfinite(x)]
    if ts is not None:
        hour = (np.floor(np.asarray(ts, dtype=np.float64) / 3600) % 24).astype(np.int64)
        groups = [np.isfinite(x) & (hour == h) for h in range(24)]
    for members in groups:
        values = x[members]
        if values.size < 3:
            continue
        median = np.median(values)
        mad = max(float(np.median(np.abs(values - median))), 1e-3)
        out[members] = values >= median + mads * 1.4826 * mad
    return out


def _episode_test(x, y, high, min_points: int) -> tuple[int, float, float, float, float]:
    """Latency while saturated vs the rest: points, ratio, p-value, ms per unit, excess ms."""
    n_high = int(high.sum())
    if n_high < min_points or (~high).sum() < min_points:
        return n_high, 1.0, 1.0, 0.0, 0.0
    y_high, y_low = np.median(y[high]), np.median(y[~high])
    p = float(stats.mannwhitneyu(y[high], y[~high], alternative="greater").pvalue)
    ratio = float(y_high / y_low) if y_low > 0 else 1.0
    span = float(np.median(x[high]) - np.median(x[~high]))
    slope = float((y_high - y_low) / span) if span > 0 else 0.0
    return n_high, ratio, p, slope, float(y_high - y_low)


def saturation_links(
    latency: np.ndarray,
    resources: Mapping[str, np.ndarray],
    *,
    ts: np.ndarray | None = None,
    max_lag_steps: int = 3,
    alpha: float = 0.01,
    min_rho: float = 0.3,
    min_points: int = 24,
    saturation_level: float = 0.8,
    min_saturated_points: int = 6,
    min_latency_ratio: float = 1.2,
    unusual_mads: float = 5.0,
) -> list[ResourceLink]:
    """Resources whose utilisation goes with later latency, strongest first.

    Arrays are aligned on one time grid ``ts`` (NaN for gaps). Each lag 0..``max_lag_steps`` is
    tried (the resource leading latency: a pool fills up before requests queue) and the best
    kept; p-values are Bonferroni-corrected for everything tried, so searching does not
    manufacture significance. Spearman's rho is used because the relation is monotone but far
    from linear. Saturated episodes are intervals at or above ``saturation_level`` (0.8 by
    default because queueing delay grows as 1 / (1 - utilisation): at 80 % a request already
    waits about four service times) or ``unusual_mads`` robust deviations above the resource's
    normal for that hour of day (a pool sized for normal load chokes below 80 %).
    ``latency_ms_per_unit`` (ms of latency per unit of utilisation) comes from the episodes
    when they are the evidence, else from a Theil-Sen fit; it prices relieving the resource.
    """
    latency = np.asarray(latency, dtype=np.float64)
    links = []
    for name, series in resources.items():
        series = np.asarray(series, dtype=np.float64)
        if series.shape != latency.shape:
            raise ValueError(f"resource {name!r} is not aligned with latency")
        with np.errstate(invalid="ignore"):
            masks = [series >= saturation_level, _unusual(series, ts, unusual_mads)]
        candidates = []
        for lag in range(max_lag_steps + 1):
            x, y = _lagged(series, latency, lag)
            ok = np.isfinite(x) & np.isfinite(y)
            if ok.sum() < min_points or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
                continue
            rho, p = stats.spearmanr(x[ok], y[ok])
            for mask in masks:
                high = (mask[: x.size] if lag else mask)[ok]
                episode = _episode_test(x[ok], y[ok], high, min_saturated_points)
                candidates.append((float(rho), float(p), lag, x[ok], y[ok], episode))
        if not candidates:
            continue
        tries = len(candidates)
        best_corr = max(candidates, key=lambda c: c[0])
        best_episode = min(candidates, key=lambda c: (c[5][2], -c[5][1]))
        n_high, ratio, p_episode, episode_slope, excess = best_episode[5]
        p_episode = min(1.0, p_episode * tries)
        p_corr = min(1.0, best_corr[1] * tries)
        episode_ok = p_episode < alpha and ratio >= min_latency_ratio
        corr_ok = p_corr < alpha and best_corr[0] >= min_rho
        chosen = best_episode if episode_ok else best_corr
        x, y = chosen[3], chosen[4]
        if episode_ok and episode_slope > 0:
            slope = episode_slope
        else:
            # Theil-Sen is O(n^2) in pairs; a regular subsample of 1000 points keeps its
            # robustness at a fraction of the cost.
            sample = slice(None) if x.size <= 1000 else slice(None, None, x.size // 1000 + 1)
            slope = float(stats.theilslopes(y[sample], x[sample])[0])
        links.append(
            ResourceLink(
                resource=name,
                rho=best_corr[0],
                p_value=p_corr,
                lag_steps=chosen[2],
                points=int(x.size),
                utilization_p95=float(np.percentile(x, 95)),
                latency_ms_per_unit=slope,
                saturated_points=n_high,
                saturated_latency_ratio=ratio,
                saturated_p_value=p_episode,
                saturated_excess_ms=excess,
                significant=episode_ok or corr_ok,
            )
        )
    return sorted(links, key=lambda link: link.strength, reverse=True)


@dataclass(frozen=True)
class RepeatedShape:
    """One run of the same query shape inside one request."""

    shape: str
    repeats: int
    total_ms: float


def find_repeated_shapes(
    queries: Sequence[tuple[str, float]],
    *,
    min_repeats: int = N_PLUS_ONE_MIN_REPEATS,
    min_total_ms: float = N_PLUS_ONE_MIN_TOTAL_MS,
) -> list[RepeatedShape]:
    """N+1 runs in one request's ordered ``(shape, duration_ms)`` list.

    Like Sentry's detector, only *consecutive* repeats count: the same lookup done once at the
    start and once at the end of a view is not a loop, while 20 identical statements in a row
    are. A shape with several qualifying runs reports its longest.
    """
    found: dict[str, RepeatedShape] = {}
    run_shape, run_count, run_ms = None, 0, 0.0

    def close_run() -> None:
        if run_shape is None or run_count < min_repeats or run_ms < min_total_ms:
            return
        previous = found.get(run_shape)
        if previous is None or run_count > previous.repeats:
            found[run_shape] = RepeatedShape(run_shape, run_count, run_ms)

    for shape, ms in queries:
        if shape == run_shape:
            run_count += 1
            run_ms += ms
        else:
            close_run()
            run_shape, run_count, run_ms = shape, 1, ms
    close_run()
    return list(found.values())


@dataclass(frozen=True)
class NPlusOneFinding:
    """An N+1 pattern of one endpoint (and shape, when known)."""

    endpoint: str
    shape: str
    requests_with_pattern: int
    requests_total: int
    mean_repeats: float
    mean_pattern_ms: float
    source: str  # "requests" (seen per request) or "series" (inferred from aggregates)

    @property
    def share(self) -> float:
        return self.requests_with_pattern / self.requests_total if self.requests_total else 0.0


@dataclass(frozen=True)
class ShapeStats:
    """Aggregated N+1 observations of one (endpoint, shape), e.g. from the middleware."""

    endpoint: str
    shape: str
    requests_with_pattern: int
    requests_total: int
    repeats_sum: float
    pattern_ms_sum: float


def n_plus_one_from_requests(observations: Iterable[ShapeStats]) -> list[NPlusOneFinding]:
    """Findings from per-request detections aggregated per endpoint and shape."""
    findings = [
        NPlusOneFinding(
            endpoint=o.endpoint,
            shape=o.shape,
            requests_with_pattern=o.requests_with_pattern,
            requests_total=max(o.requests_total, o.requests_with_pattern),
            mean_repeats=o.repeats_sum / o.requests_with_pattern,
            mean_pattern_ms=o.pattern_ms_sum / o.requests_with_pattern,
            source="requests",
        )
        for o in observations
        if o.requests_with_pattern > 0 and is_routed(o.endpoint)
    ]
    return sorted(findings, key=lambda f: f.mean_pattern_ms * f.requests_with_pattern, reverse=True)


def n_plus_one_from_series(
    endpoint: str,
    queries_per_request: np.ndarray,
    db_ms_per_request: np.ndarray,
    *,
    peer_queries_per_request: Sequence[float] = (),
    min_excess_queries: int = N_PLUS_ONE_MIN_REPEATS,
    min_db_ms: float = N_PLUS_ONE_MIN_TOTAL_MS,
    peer_factor: float = 3.0,
) -> NPlusOneFinding | None:
    """Suspect an N+1 from per-interval query counts and DB time when shapes are unknown.

    An interval is suspicious when the endpoint runs at least ``min_excess_queries`` more
    queries per request than the median of its peers (and ``peer_factor`` times as many) while
    spending at least ``min_db_ms`` in the database: the shape-level evidence the middleware
    collects is missing, so the finding says ``source="series"`` and earns less confidence.
    Unresolved requests are no endpoint to fix: never a finding.
    """
    if not is_routed(endpoint):
        return None
    queries = np.asarray(queries_per_request, dtype=np.float64)
    db_ms = np.asarray(db_ms_per_request, dtype=np.float64)
    ok = np.isfinite(queries) & np.isfinite(db_ms)
    if not ok.any():
        return None
    queries, db_ms = queries[ok], db_ms[ok]
    peers = [p for p in peer_queries_per_request if np.isfinite(p)]
    peer_level = float(np.median(peers)) if peers else 1.0
    suspicious = (
        (queries - peer_level >= min_excess_queries)
        & (queries >= peer_factor * max(peer_level, 1.0))
        & (db_ms >= min_db_ms)
    )
    hits = int(suspicious.sum())
    if hits == 0:
        return None
    return NPlusOneFinding(
        endpoint=endpoint,
        shape="",
        requests_with_pattern=hits,
        requests_total=int(queries.size),
        mean_repeats=float(np.mean(queries[suspicious] - peer_level)),
        mean_pattern_ms=float(np.mean(db_ms[suspicious] * (1 - peer_level / queries[suspicious]))),
        source="series",
    )


@dataclass(frozen=True)
class QueryStats:
    endpoint: str
    shape: str
    count: int
    total_ms: float
    max_ms: float


@dataclass(frozen=True)
class SlowQuery:
    endpoint: str
    shape: str
    count: int
    mean_ms: float
    max_ms: float
    excess_ms: float  # total time above the threshold: what tuning could at most save


def slow_query_shapes(
    stats_rows: Iterable[QueryStats], *, threshold_ms: float = 100.0, min_count: int = 3
) -> list[SlowQuery]:
    """Query shapes whose mean duration exceeds ``threshold_ms``, largest excess first.

    ``min_count`` keeps a single cold-cache outlier from becoming a recommendation. Shapes
    seen on unresolved requests have no endpoint to fix and are left out (their DB time stays
    in :func:`unresolved_traffic`).
    """
    slow = []
    for row in stats_rows:
        if row.count < min_count or not is_routed(row.endpoint):
            continue
        mean = row.total_ms / row.count
        if mean > threshold_ms:
            slow.append(
                SlowQuery(
                    row.endpoint,
                    row.shape,
                    row.count,
                    mean,
                    row.max_ms,
                    (mean - threshold_ms) * row.count,
                )
            )
    return sorted(slow, key=lambda s: s.excess_ms, reverse=True)


@dataclass(frozen=True)
class Regression:
    """An endpoint whose recent values sit above its baseline."""

    endpoint: str
    series: str
    recent_median: float
    expected_median: float
    ratio: float
    p_value: float
    points: int
    median_z: float


def regression_against_baseline(
    endpoint: str,
    series: str,
    baseline: HourOfWeekBaseline,
    ts: np.ndarray,
    values: np.ndarray,
    *,
    min_ratio: float = 1.2,
    min_z: float = 3.0,
    alpha: float = 0.01,
    min_points: int = 6,
) -> Regression | None:
    """Compare recent points to their hour-of-week expectation.

    A regression needs all three: the log ratio to the expectation is positive by a one-sided
    Wilcoxon signed-rank test (a consistent shift, not one spike), the median ratio is at least
    ``min_ratio`` (big enough to matter) and the median robust z is at least ``min_z`` (outside
    the normal spread of that hour). Unresolved requests are no endpoint: never a regression
    (a scanner starting is a change of traffic, not of the code).
    """
    if not is_routed(endpoint):
        return None
    ts = np.asarray(ts, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    expected = baseline.expected(ts)
    ok = np.isfinite(values) & np.isfinite(expected) & (expected > 0) & (values > 0)
    if ok.sum() < min_points:
        return None
    log_ratio = np.log(values[ok] / expected[ok])
    if np.all(log_ratio == 0):
        return None
    p_value = float(stats.wilcoxon(log_ratio, alternative="greater").pvalue)
    ratio = float(np.exp(np.median(log_ratio)))
    median_z = float(np.median(baseline.robust_z(ts[ok], values[ok])))
    if p_value >= alpha or ratio < min_ratio or median_z < min_z:
        return None
    return Regression(
        endpoint=endpoint,
        series=series,
        recent_median=float(np.median(values[ok])),
        expected_median=float(np.median(expected[ok])),
        ratio=ratio,
        p_value=p_value,
        points=int(ok.sum()),
        median_z=median_z,
    )


def regressions(
    candidates: Iterable[tuple[str, str, HourOfWeekBaseline, np.ndarray, np.ndarray]],
    **kwargs: float,
) -> list[Regression]:
    """Run :func:`regression_against_baseline` over many series, worst ratio first."""
    found = [regression_against_baseline(*c, **kwargs) for c in candidates]
    return sorted([r for r in found if r], key=lambda r: r.ratio, reverse=True)
