"""The hourly analysis: health score, bottlenecks, baselines vs now, recommendations.

:func:`analysis_compute` only reads (telemetry, stored baselines, profiler totals, verified
outcomes) and runs the engine; :func:`analysis_run` persists its result in one transaction:
the health snapshot of the hour, the report, and the recommendations (refreshed in place while
their cause persists). Both are keyed by the hour, so running twice in an hour rewrites the same
rows.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q, Sum
from django.utils import timezone

from telemetry import selectors as telemetry
from telemetry.models import Sample, Series

from ..engine import bottlenecks as detect
from ..engine import recommendations as rec
from ..engine.baselines import hour_of_week
from ..engine.calibration import CategoryCalibration, Outcome, calibrate
from ..engine.health import HealthScore, TrendSignal, health_score, overall_from_endpoints
from ..engine.trends import robust_trend
from ..models import AnalysisReport, Baseline, EndpointProfile, HealthSnapshot, QueryShapeStat
from ..models import Recommendation as RecommendationModel
from .baselines import baseline_from_row
from .jsonable import jsonable
from .recommendations import recommendations_upsert

STEP_SECONDS = 300.0
HOUR = timedelta(hours=1)
SATURATION_RESOURCES = (
    "system.cpu.utilization",
    "system.memory.utilization",
    "db.connections.utilization",
    "api.ratelimit.utilization",
)


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


@dataclass
class AnalysisResult:
    at: datetime
    window_start: datetime
    health: HealthScore | None
    baselines_vs_now: list[dict]
    bottlenecks: dict
    drafts: list[rec.RecommendationDraft]
    calibration: dict[str, dict] = field(default_factory=dict)


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def _endpoint_series(name: str) -> dict[str, Series]:
    return {
        s.labels["endpoint"]: s
        for s in telemetry.series_list(name=name)
        if (s.labels or {}).get("endpoint")
    }


def _values(series: Series | None, start: datetime, end: datetime) -> np.ndarray:
    if series is None:
        return np.empty(0)
    return telemetry.series_values(series.pk, start, end)[1]


def _mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)] if values.size else values
    return float(finite.mean()) if finite.size else float("nan")


def _grid(series: Series | None, start: datetime, end: datetime, agg: str = "mean") -> np.ndarray:
    """Values on the analysis grid [start, end) by STEP_SECONDS, NaN where data is missing."""
    n = int((end - start).total_seconds() // STEP_SECONDS)
    out = np.full(n, np.nan)
    if series is None:
        return out
    ts, values = telemetry.series_values_resampled(series.pk, start, end, STEP_SECONDS, agg)
    index = ((ts - start.timestamp()) // STEP_SECONDS).astype(np.int64)
    ok = (index >= 0) & (index < n)
    out[index[ok]] = values[ok]
    return out


@dataclass(frozen=True)
class _WindowHours:
    """A window ``[start, end)`` cut along the profiler's hourly rows.

    Rows with ``whole_from <= hour < whole_to`` lie wholly inside; each ``(hour, lo, hi)`` of
    ``partial`` is a row only ``[lo, hi)`` of which is inside (the hour of ``start`` when it is
    not on the hour, and the hour of ``end``: the current one for a live analysis).
    """

    whole_from: datetime
    whole_to: datetime
    partial: tuple[tuple[datetime, datetime, datetime], ...]


def _window_hours(start: datetime, end: datetime) -> _WindowHours:
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    first, last = _hour(start), _hour(end)
    whole_from = first if first == start else first + HOUR
    partial = []
    for hour in sorted({first, last}):
        lo, hi = max(hour, start), min(hour + HOUR, end)
        if hi > lo and (lo, hi) != (hour, hour + HOUR):
            partial.append((hour, lo, hi))
    return _WindowHours(whole_from, max(whole_from, last), tuple(partial))


def _partial_hour_weights(window: _WindowHours, endpoints: set[str]) -> dict[tuple, float]:
    """Share of each partial hour's row that falls inside the window, per ``(endpoint, hour)``.

    Read from the profiler's per-minute request counts (``http.requests.rate{endpoint}``, one
    sample per minute with traffic): the requests of the minutes inside the window over those of
    the whole hour. Traffic is rarely flat within an hour (a deploy, a batch, a process that
    started at :50), so this beats a pro rata share of the clock; and for the current hour of a
    live analysis, whose row only holds the minutes so far, it is 1 where pro rata would say
    "a third". Without minute data (series deleted, raw retention passed) the share is pro
    rata over the part of the hour that has elapsed.
    """
    if not endpoints or not window.partial:
        return {}
    rates = {
        endpoint: series.pk
        for endpoint, series in _endpoint_series("http.requests.rate").items()
        if endpoint in endpoints
    }
    endpoint_of = {pk: endpoint for endpoint, pk in rates.items()}
    now = timezone.now()
    weights: dict[tuple, float] = {}
    for hour, lo, hi in window.partial:
        minutes = {
            endpoint_of[row["series_id"]]: (row["inside"] or 0.0, row["total"] or 0.0)
            for row in Sample.objects.filter(
                series_id__in=endpoint_of, ts__gte=hour, ts__lt=hour + HOUR
            )
            .values("series_id")
            .annotate(total=Sum("value"), inside=Sum("value", filter=Q(ts__gte=lo, ts__lt=hi)))
            .order_by()
        }
        elapsed = (min(hour + HOUR, max(now, hi)) - hour).total_seconds()
        pro_rata = min(1.0, (hi - lo).total_seconds() / elapsed) if elapsed > 0 else 0.0
        for endpoint in endpoints:
            inside, total = minutes.get(endpoint, (0.0, 0.0))
            weights[(endpoint, hour)] = min(1.0, inside / total) if total > 0 else pro_rata
    return weights


def _profile_totals(start: datetime, end: datetime) -> dict[str, dict[str, float]]:
    """The profiler's totals per endpoint over exactly ``[start, end)``.

    Its rows are hourly, a window rarely is (the analysis runs at :20 over the last 24 h):
    whole hours are summed as they are, and a partial hour's row counts for the share of its
    requests that fell inside the window (:func:`_partial_hour_weights`). Counting only rows
    that start inside the window left the first 40 minutes out, so requests per day read up
    to 1/24 low; counting every row it touches would put the 20 minutes before the window in.
    """
    totals: dict[str, dict[str, float]] = defaultdict(
        lambda: dict.fromkeys(("n", "ms", "db", "q"), 0.0)
    )
    fields = {"n": "requests", "ms": "latency_ms_sum", "db": "db_ms_sum", "q": "queries"}
    window = _window_hours(start, end)
    whole = (
        EndpointProfile.objects.filter(
            hour__gte=window.whole_from, hour__lt=window.whole_to, requests__gt=0
        )
        .values("endpoint")
        .annotate(**{key: Sum(name) for key, name in fields.items()})
        .order_by()
    )
    for row in whole:
        for key in fields:
            totals[row["endpoint"]][key] += row[key]
    partial = list(
        EndpointProfile.objects.filter(
            hour__in=[hour for hour, _, _ in window.partial], requests__gt=0
        ).values("endpoint", "hour", *fields.values())
    )
    weights = _partial_hour_weights(window, {row["endpoint"] for row in partial})
    for row in partial:
        weight = weights[(row["endpoint"], row["hour"].astimezone(UTC))]
        for key, name in fields.items():
            totals[row["endpoint"]][key] += weight * row[name]
    return {endpoint: t for endpoint, t in totals.items() if t["n"] > 0}


def _loads(start: datetime, end: datetime) -> tuple[list[detect.EndpointLoad], dict[str, float]]:
    """Per-endpoint load over the window and requests per day (rate is per minute)."""
    rates = _endpoint_series("http.requests.rate")
    p50 = _endpoint_series("http.latency.p50")
    p95 = _endpoint_series("http.latency.p95")
    db_ms = _endpoint_series("db.time.ms")
    queries = _endpoint_series("db.queries.per_request")
    minutes = (end - start).total_seconds() / 60.0
    loads, per_day = [], {}
    # The profiler's exact totals win over its per-minute series, which only have points for
    # minutes with traffic (their mean would overstate a quiet endpoint's load).
    for endpoint, row in _profile_totals(start, end).items():
        per_day[endpoint] = row["n"] / (minutes / 1440.0)
        loads.append(
            detect.EndpointLoad(
                endpoint=endpoint,
                requests=row["n"],
                mean_latency_ms=row["ms"] / row["n"],
                db_ms_per_request=row["db"] / row["n"],
                queries_per_request=row["q"] / row["n"],
            )
        )
    for endpoint in sorted((set(rates) | set(p95)) - set(per_day)):
        rate = _mean(_values(rates.get(endpoint), start, end))
        latency = _mean(_values(p50.get(endpoint) or p95.get(endpoint), start, end))
        if not np.isfinite(rate) or not np.isfinite(latency):
            continue
        per_day[endpoint] = rate * 1440.0
        loads.append(
            detect.EndpointLoad(
                endpoint=endpoint,
                requests=rate * minutes,
                mean_latency_ms=latency,
                db_ms_per_request=np.nan_to_num(_mean(_values(db_ms.get(endpoint), start, end))),
                queries_per_request=np.nan_to_num(
                    _mean(_values(queries.get(endpoint), start, end))
                ),
            )
        )
    return loads, per_day


def _n_plus_one(start, end, loads) -> list[detect.NPlusOneFinding]:
    """Shape-level findings from the profiler, else suspicions from per-endpoint series."""
    requests = dict(
        EndpointProfile.objects.filter(hour__gte=start, hour__lt=end)
        .values_list("endpoint")
        .annotate(n=Sum("requests"))
        .order_by()
    )
    rows = (
        QueryShapeStat.objects.filter(hour__gte=start, hour__lt=end, n_plus_one_requests__gt=0)
        .values("endpoint", "shape_key")
        .annotate(
            hits=Sum("n_plus_one_requests"), repeats=Sum("repeats_sum"), ms=Sum("pattern_ms_sum")
        )
        .order_by()
    )
    shapes = dict(
        QueryShapeStat.objects.filter(shape_key__in={r["shape_key"] for r in rows}).values_list(
            "shape_key", "shape"
        )
    )
    findings = detect.n_plus_one_from_requests(
        detect.ShapeStats(
            endpoint=r["endpoint"],
            shape=shapes.get(r["shape_key"], ""),
            requests_with_pattern=r["hits"],
            requests_total=requests.get(r["endpoint"], r["hits"]),
            repeats_sum=r["repeats"],
            pattern_ms_sum=r["ms"],
        )
        for r in rows
    )
    seen = {f.endpoint for f in findings}
    queries = _endpoint_series("db.queries.per_request")
    db_ms = _endpoint_series("db.time.ms")
    # unresolved requests (mostly cheap 404s) are no peer: they would lower the norm
    peers = {
        load.endpoint: load.queries_per_request for load in loads if detect.is_routed(load.endpoint)
    }
    for endpoint, series in queries.items():
        if endpoint in seen or endpoint not in db_ms:
            continue
        others = [q for e, q in peers.items() if e != endpoint]
        q_ts, q_values = telemetry.series_values(series.pk, start, end)
        d_ts, d_values = telemetry.series_values(db_ms[endpoint].pk, start, end)
        common, qi, di = np.intersect1d(q_ts, d_ts, return_indices=True)
        if common.size == 0:
            continue
        finding = detect.n_plus_one_from_series(
            endpoint, q_values[qi], d_values[di], peer_queries_per_request=others
        )
        if finding:
            findings.append(finding)
    return findings


def _slow_queries(start, end, threshold_ms) -> list[detect.SlowQuery]:
    """Slow shapes over exactly ``[start, end)``: a partial hour's row counts for the share of
    its endpoint's requests inside the window, as in :func:`_profile_totals`, so a shape's
    excess time per day is not read up to 1/24 low either."""
    window = _window_hours(start, end)
    sums: dict[tuple[str, str], list] = {}  # (endpoint, key) -> [shape, executions, ms, max]
    whole = (
        QueryShapeStat.objects.filter(hour__gte=window.whole_from, hour__lt=window.whole_to)
        .values("endpoint", "shape_key", "shape")
        .annotate(count=Sum("executions"), total=Sum("total_ms"), most=Max("max_ms"))
        .order_by()
    )
    for r in whole:
        sums[(r["endpoint"], r["shape_key"])] = [r["shape"], r["count"], r["total"], r["most"]]
    partial = list(
        QueryShapeStat.objects.filter(hour__in=[hour for hour, _, _ in window.partial]).values(
            "endpoint", "hour", "shape_key", "shape", "executions", "total_ms", "max_ms"
        )
    )
    weights = _partial_hour_weights(window, {r["endpoint"] for r in partial})
    for r in partial:
        weight = weights[(r["endpoint"], r["hour"].astimezone(UTC))]
        if weight <= 0:
            continue
        row = sums.setdefault((r["endpoint"], r["shape_key"]), [r["shape"], 0, 0.0, 0.0])
        row[1] += weight * r["executions"]
        row[2] += weight * r["total_ms"]
        row[3] = max(row[3], r["max_ms"])
    stats = []
    for (endpoint, _), (shape, count, total, most) in sums.items():
        executions = round(count)  # a whole number of executions, at the same mean
        if executions:
            stats.append(
                detect.QueryStats(endpoint, shape, executions, total * executions / count, most)
            )
    return detect.slow_query_shapes(stats, threshold_ms=threshold_ms)


def _baseline_rows() -> dict[int, Baseline]:
    return {b.series_id: b for b in Baseline.objects.select_related("series")}


def _regressions_and_now(now, baselines: dict[int, Baseline], recent_hours: float):
    start = now - timedelta(hours=recent_hours)
    regressions, vs_now = [], []
    for row in baselines.values():
        ts, values = telemetry.series_values(row.series_id, start, now)
        if not values.size:
            continue
        baseline = baseline_from_row(row)
        last_hour = ts >= ts[-1] - 3600
        current = float(np.median(values[last_hour]))
        how = int(hour_of_week(np.array([ts[-1]]))[0])
        z = float(np.median(baseline.robust_z(ts[last_hour], values[last_hour])))
        vs_now.append(
            {
                "series_id": row.series_id,
                "series": str(row.series),
                "metric": row.metric,
                "endpoint": row.endpoint,
                "now": current,
                "expected": row.median[how],
                "expected_p95": row.p95[how],
                "robust_z": z,
                "trend_relative_change_per_week": row.trend_relative_change_per_week,
                "trend_significant": row.trend_significant,
            }
        )
        if row.metric == "http.latency.p95" and row.endpoint:
            found = detect.regression_against_baseline(
                row.endpoint, row.metric, baseline, ts, values
            )
            if found:
                regressions.append(found)
    vs_now.sort(key=lambda r: abs(r["robust_z"]), reverse=True)
    return sorted(regressions, key=lambda r: r.ratio, reverse=True), vs_now


def _overall_from_endpoints(start: datetime, end: datetime) -> dict[str, np.ndarray]:
    """Overall rate, p95 and error ratio on the grid, combined from the per-endpoint series.

    The profiler writes per-endpoint series only (the overall ones would mix with other
    writers of them, such as the demo feed). Each endpoint's weight in an interval is the sum
    of its request-rate points there: its requests when the series is per minute, so an
    endpoint seen in one minute of five weighs one fifth of one busy throughout. Unresolved
    requests count only by their 5xx (see ``overall_from_endpoints``).
    """
    rates = _endpoint_series("http.requests.rate")
    p95 = _endpoint_series("http.latency.p95")
    errors = _endpoint_series("http.errors.ratio")
    endpoints = sorted(rates)
    if not endpoints:
        empty = _grid(None, start, end)
        return {"rate": empty, "latency": empty, "errors": empty}
    rate, latency, failed = overall_from_endpoints(
        np.array([_grid(rates[e], start, end, "sum") for e in endpoints]),
        np.array([_grid(p95.get(e), start, end) for e in endpoints]),
        np.array([_grid(errors.get(e), start, end) for e in endpoints]),
        routed=np.array([detect.is_routed(e) for e in endpoints]),
    )
    return {"rate": rate, "latency": latency, "errors": failed}


def _health(now, start) -> tuple[HealthScore | None, list[detect.ResourceLink]]:
    latency = telemetry.series_get("http.latency.p95")
    errors = telemetry.series_get("http.errors.ratio")
    rate = telemetry.series_get("http.requests.rate")
    # an installation fed by the profiler alone has per-endpoint series only
    derived = (
        _overall_from_endpoints(start, now)
        if latency is None or errors is None or rate is None
        else {}
    )
    resources = {
        name: series for name in SATURATION_RESOURCES if (series := telemetry.series_get(name))
    }
    trends = []
    trend_start = now - timedelta(days=28)
    for name, series in (("http.latency.p95", latency), ("http.errors.ratio", errors)):
        if series is None:
            continue
        ts, values = telemetry.series_values(series.pk, trend_start, now)
        trend = robust_trend(ts, values, bucket_seconds=86400.0)
        if trend:
            trends.append(TrendSignal(name, trend, "up"))
    try:
        score = health_score(
            latency_p95_ms=_grid(latency, start, now) if latency else derived["latency"],
            error_ratio=_grid(errors, start, now) if errors else derived["errors"],
            request_rate=_grid(rate, start, now) if rate else derived["rate"],
            saturation={name: _grid(s, start, now) for name, s in resources.items()},
            trends=trends,
        )
    except ValueError:  # no telemetry at all yet
        score = None
    corr_start = now - timedelta(days=int(_setting("OPTIMIZATION_CORRELATION_DAYS", 28)))
    links = []
    if latency is not None and resources:
        grid = _grid(latency, corr_start, now)
        links = detect.saturation_links(
            grid,
            {name: _grid(s, corr_start, now) for name, s in resources.items()},
            ts=corr_start.timestamp() + np.arange(grid.size) * STEP_SECONDS,
        )
    return score, links


def calibration_current() -> dict[str, CategoryCalibration]:
    """Per-category calibration learnt from every verified recommendation so far."""
    # a rolled-back change is a failure for the confidence map; its saving is null (it was
    # reverted), so it does not move the impact factor (``calibrate`` skips non-finite ones)
    verified = RecommendationModel.objects.filter(
        RecommendationModel.with_outcome()
        & (Q(realised_ms_saved_per_day__isnull=False) | Q(rolled_back_at__isnull=False))
    ).values_list(
        "category",
        "predicted_ms_saved_per_day",
        "predicted_db_ms_saved_per_day",
        "realised_ms_saved_per_day",
        "confidence",
        "calibration",
        "state",
        "metric_series__name",
    )
    outcomes = []
    for category, ms, db_ms, realised, conf, cal, state, metric in verified:
        predicted = db_ms if (metric or "").startswith("db.") else ms
        # compare with what the detector said before calibration, or calibration feeds itself
        raw_key = (
            "raw_db_ms_saved_per_day"
            if (metric or "").startswith("db.")
            else "raw_ms_saved_per_day"
        )
        outcomes.append(
            Outcome(
                category=category,
                predicted_per_day=(cal or {}).get(raw_key, predicted),
                realised_per_day=float("nan") if realised is None else realised,
                confidence=(cal or {}).get("raw_confidence", conf),
                succeeded=state == RecommendationModel.State.SUCCEEDED,
            )
        )
    return calibrate(outcomes)


def analysis_compute(*, now: datetime | None = None, window_hours: float = 24.0) -> AnalysisResult:
    """Run every detector on current telemetry; reads only."""
    now = now or timezone.now()
    start = now - timedelta(hours=window_hours)
    window_days = window_hours / 24.0
    loads, per_day = _loads(start, now)
    shares = detect.rank_endpoints(loads)  # routes only
    unresolved = detect.unresolved_traffic(loads)
    n_plus_one = _n_plus_one(start, now, loads)
    threshold = _setting("OPTIMIZATION_SLOW_QUERY_MS", 100.0)
    slow = _slow_queries(start, now, threshold)
    regressions, vs_now = _regressions_and_now(
        now, _baseline_rows(), _setting("OPTIMIZATION_REGRESSION_HOURS", 6)
    )
    health, links = _health(now, start)
    total_rate = _mean(_values(telemetry.series_get("http.requests.rate"), start, now))
    # relieving a resource is worth something for the routes' requests, not a scanner's
    overall_per_day = (
        total_rate * 1440.0
        if np.isfinite(total_rate)
        else sum(n for e, n in per_day.items() if detect.is_routed(e))
    )

    drafts: list[rec.RecommendationDraft] = []
    drafts += [rec.recommend_n_plus_one(f, per_day.get(f.endpoint, 0.0)) for f in n_plus_one]
    drafts += [
        rec.recommend_slow_query(q, threshold_ms=threshold, window_days=window_days) for q in slow
    ]
    drafts += [rec.recommend_regression(r, per_day.get(r.endpoint, 0.0)) for r in regressions]
    drafts += [
        rec.recommend_saturation(link, requests_per_day=overall_per_day)
        for link in links
        if link.significant
    ]
    total_ms = sum(s.total_ms for s in shares)
    drafts += [
        d
        for s in shares
        if (d := rec.recommend_hotspot(s, window_days=window_days, total_ms=total_ms))
    ]
    calibration = calibration_current()
    calibrated = []
    for draft in drafts:
        cal = calibration.get(draft.category)
        if cal is None:
            calibrated.append(draft)
            continue
        calibrated.append(
            rec.with_calibration(
                draft,
                impact_factor=cal.impact_factor,
                confidence=cal.calibrate_confidence(draft.confidence),
                detail={"outcomes": cal.outcomes, "success_rate": cal.success_rate},
            )
        )
    return AnalysisResult(
        at=_hour(now),
        window_start=start,
        health=health,
        baselines_vs_now=vs_now,
        bottlenecks={
            "endpoints": [asdict(s) for s in shares],
            # requests that matched no route: visible, never ranked or recommended on
            "unresolved": asdict(unresolved) if unresolved else None,
            "saturation": [asdict(link) for link in links],
            "n_plus_one": [asdict(f) | {"share": f.share} for f in n_plus_one],
            "slow_queries": [asdict(q) for q in slow],
            "regressions": [asdict(r) for r in regressions],
        },
        drafts=rec.rank_recommendations(calibrated),
        calibration={k: v.as_dict() for k, v in calibration.items()},
    )


@transaction.atomic
def analysis_run(*, now: datetime | None = None, window_hours: float = 24.0) -> AnalysisReport:
    """Compute the analysis and store it: health snapshot, report, recommendations."""
    now = now or timezone.now()
    result = analysis_compute(now=now, window_hours=window_hours)
    snapshot = None
    if result.health is not None:
        snapshot, _ = HealthSnapshot.objects.update_or_create(
            at=result.at,
            defaults={
                "score": result.health.score,
                "breakdown": jsonable(result.health.breakdown()),
                "window_start": result.window_start,
                "window_end": now,
                "computed_at": timezone.now(),
            },
        )
    counts = recommendations_upsert(drafts=result.drafts, now=now)
    report, _ = AnalysisReport.objects.update_or_create(
        at=result.at,
        defaults={
            "computed_at": timezone.now(),
            "health": snapshot,
            "baselines_vs_now": jsonable(result.baselines_vs_now),
            "bottlenecks": jsonable(result.bottlenecks),
            "calibration": jsonable(result.calibration),
            "recommendations_seen": counts["seen"],
            "recommendations_created": counts["created"],
        },
    )
    return report
