"""Write the request profiler's per-minute figures: telemetry series plus hourly shape totals."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime

from django.db import transaction
from django.db.models import F
from django.db.models.functions import Greatest

from telemetry.models import Sample, Series
from telemetry.services import series_ensure

from ..engine.sql_shape import shape_database, shape_key
from ..models import EndpointProfile, QueryShapeStat
from ..recording import EndpointMinute

# summary key -> (series name, unit, how two processes' figures for one minute combine)
PROFILE_SERIES = {
    "requests": ("http.requests.rate", "req/min", "sum"),
    "latency_p50_ms": ("http.latency.p50", "ms", "weighted"),
    "latency_p95_ms": ("http.latency.p95", "ms", "max"),
    "error_ratio": ("http.errors.ratio", "ratio", "weighted"),
    "queries_per_request": ("db.queries.per_request", "count", "weighted"),
    "db_ms_per_request": ("db.time.ms", "ms", "weighted"),
}


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


def _series_for(endpoint: str, cache: dict) -> dict[str, Series]:
    if endpoint not in cache:
        cache[endpoint] = {
            key: series_ensure(name=name, labels={"endpoint": endpoint}, unit=unit)
            for key, (name, unit, _) in PROFILE_SERIES.items()
        }
    return cache[endpoint]


def _write_series(buckets: Sequence[EndpointMinute]) -> int:
    """Upsert one sample per metric per endpoint-minute, merging with a sample already there.

    Several web processes profile the same endpoint in the same minute; each flushes its own
    share. The merge keeps the series right: counts add, per-request means are weighted by
    requests, p95 takes the larger value (a conservative bound: the exact p95 of the union
    needs the raw latencies, which are gone).
    """
    cache: dict[str, dict[str, Series]] = {}
    rows: dict[tuple[int, datetime], tuple[str, float, float]] = {}
    request_series: dict[tuple[int, datetime], int] = {}
    for bucket in buckets:
        series = _series_for(bucket.endpoint, cache)
        summary, at = bucket.summary(), _at(bucket.minute)
        for key, value in summary.items():
            if key not in series:
                continue
            rows[(series[key].pk, at)] = (PROFILE_SERIES[key][2], value, summary["requests"])
            request_series[(series[key].pk, at)] = series["requests"].pk
    # The merge reads, combines and writes back, so two flushes of the same series must not
    # interleave or one's share is lost. The series rows are locked (in id order, so flushes
    # cannot deadlock) until the flush commits. A minute with no sample yet has no row to lock,
    # hence the series rows; NO KEY UPDATE leaves sample inserts (they share-lock the series
    # through the foreign key) free to go on.
    list(
        Series.objects.select_for_update(no_key=True)
        .filter(pk__in={k[0] for k in rows})
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    existing = {
        (series_id, ts): value
        for series_id, ts, value in Sample.objects.filter(
            series_id__in={k[0] for k in rows}, ts__in={k[1] for k in rows}
        ).values_list("series_id", "ts", "value")
    }
    samples = []
    for (series_id, at), (how, value, weight) in rows.items():
        old = existing.get((series_id, at))
        if old is not None:
            old_weight = existing.get((request_series[(series_id, at)], at), 0.0)
            if how == "sum":
                value += old
            elif how == "max":
                value = max(value, old)
            elif weight + old_weight > 0:
                value = (value * weight + old * old_weight) / (weight + old_weight)
        samples.append(Sample(series_id=series_id, ts=at, value=value))
    Sample.objects.bulk_create(
        samples, update_conflicts=True, unique_fields=["series", "ts"], update_fields=["value"]
    )
    return len(samples)


def _hour(epoch: int) -> datetime:
    return _at(epoch - epoch % 3600)


def _write_profiles(buckets: Sequence[EndpointMinute]) -> int:
    totals: dict[tuple[str, datetime], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for b in buckets:
        t = totals[(b.endpoint, _hour(b.minute))]
        t["requests"] += b.requests
        t["errors"] += b.errors
        t["latency_ms_sum"] += b.latency_sum_ms
        t["queries"] += b.queries
        t["db_ms_sum"] += b.db_ms
    for (endpoint, hour), t in totals.items():
        profile, created = EndpointProfile.objects.get_or_create(
            endpoint=endpoint, hour=hour, defaults=dict(t)
        )
        if not created:
            EndpointProfile.objects.filter(pk=profile.pk).update(
                **{name: F(name) + value for name, value in t.items()}
            )
    return len(totals)


def _write_shapes(buckets: Sequence[EndpointMinute]) -> int:
    totals: dict[tuple[str, datetime, str], dict] = {}
    for b in buckets:
        hour = _hour(b.minute)
        for shape, f in b.shapes.items():
            key = (b.endpoint, hour, shape_key(shape))
            t = totals.setdefault(
                key,
                {
                    "shape": shape,
                    "database": shape_database(shape)[0],
                    "executions": 0,
                    "total_ms": 0.0,
                    "max_ms": 0.0,
                    "n_plus_one_requests": 0,
                    "repeats_sum": 0,
                    "pattern_ms_sum": 0.0,
                },
            )
            t["executions"] += f.executions
            t["total_ms"] += f.total_ms
            t["max_ms"] = max(t["max_ms"], f.max_ms)
            t["n_plus_one_requests"] += f.n_plus_one_requests
            t["repeats_sum"] += f.repeats_sum
            t["pattern_ms_sum"] += f.pattern_ms_sum
    for (endpoint, hour, key), t in totals.items():
        stat, created = QueryShapeStat.objects.get_or_create(
            endpoint=endpoint, hour=hour, shape_key=key, defaults=t
        )
        if not created:
            additive = {
                k: F(k) + v for k, v in t.items() if k not in ("shape", "database", "max_ms")
            }
            QueryShapeStat.objects.filter(pk=stat.pk).update(
                max_ms=Greatest(F("max_ms"), t["max_ms"]), **additive
            )
    return len(totals)


@transaction.atomic
def performance_flush(*, buckets: Sequence[EndpointMinute]) -> dict[str, int]:
    """Write drained profiler buckets in one transaction: all of a flush lands, or none of it."""
    buckets = [b for b in buckets if b.requests]
    if not buckets:
        return {"buckets": 0, "samples": 0, "profiles": 0, "shapes": 0}
    return {
        "buckets": len(buckets),
        "samples": _write_series(buckets),
        "profiles": _write_profiles(buckets),
        "shapes": _write_shapes(buckets),
    }
