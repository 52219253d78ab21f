"""Recompute hour-of-week baselines and trends of the watched telemetry series."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import numpy as np
from django.db import transaction
from django.utils import timezone

from telemetry import selectors as telemetry
from telemetry.models import Series

from ..engine.baselines import HourOfWeekBaseline, hour_of_week_baseline
from ..engine.trends import robust_trend
from ..models import Baseline

# Series worth a baseline: request figures per endpoint and overall, DB work, saturation.
BASELINE_METRICS = (
    "http.latency.p95",
    "http.latency.p50",
    "http.errors.ratio",
    "http.requests.rate",
    "db.time.ms",
    "db.queries.per_request",
    "system.cpu.utilization",
    "system.memory.utilization",
    "db.connections.utilization",
    "api.ratelimit.utilization",
)
BASELINE_WINDOW_DAYS = 28


def baseline_series_ids() -> list[int]:
    """Ids of every series that gets a baseline, in a stable order (for chunked fan-out)."""
    return list(
        Series.objects.filter(name__in=BASELINE_METRICS).order_by("pk").values_list("pk", flat=True)
    )


def baseline_from_row(row: Baseline) -> HourOfWeekBaseline:
    """The engine's view of a stored baseline."""
    return HourOfWeekBaseline(
        median=np.asarray(row.median, dtype=np.float64),
        mad=np.asarray(row.mad, dtype=np.float64),
        p95=np.asarray(row.p95, dtype=np.float64),
        support=np.asarray(row.support, dtype=np.int64),
        source=np.asarray(row.source, dtype=np.int64),
    )


def baseline_compute(
    *, series_id: int, end: datetime, window_days: int = BASELINE_WINDOW_DAYS
) -> tuple[HourOfWeekBaseline, object, int] | None:
    """Baseline and daily-median trend of one series over ``window_days`` before ``end``."""
    start = end - timedelta(days=window_days)
    ts, values = telemetry.series_values(series_id, start, end)
    if not np.isfinite(values).any():
        return None
    baseline = hour_of_week_baseline(ts, values)
    trend = robust_trend(ts, values, bucket_seconds=86400.0)
    return baseline, trend, int(np.isfinite(values).sum())


@transaction.atomic
def baselines_recompute(
    *,
    series_ids: Iterable[int] | None = None,
    now: datetime | None = None,
    window_days: int = BASELINE_WINDOW_DAYS,
) -> dict[str, int]:
    """Recompute and store the baselines of ``series_ids`` (all watched series when None).

    Idempotent: one row per series, overwritten with the figures of the same window.
    """
    now = now or timezone.now()
    ids = list(series_ids) if series_ids is not None else baseline_series_ids()
    written = skipped = 0
    for series in Series.objects.filter(pk__in=ids):
        computed = baseline_compute(series_id=series.pk, end=now, window_days=window_days)
        if computed is None:
            skipped += 1
            continue
        baseline, trend, points = computed
        Baseline.objects.update_or_create(
            series=series,
            defaults={
                "metric": series.name,
                "endpoint": (series.labels or {}).get("endpoint", ""),
                "computed_at": timezone.now(),
                "window_start": now - timedelta(days=window_days),
                "window_end": now,
                "points": points,
                "median": baseline.median.tolist(),
                "mad": baseline.mad.tolist(),
                "p95": baseline.p95.tolist(),
                "support": baseline.support.tolist(),
                "source": baseline.source.tolist(),
                "trend_slope_per_day": trend.slope_per_day if trend else None,
                "trend_relative_change_per_week": trend.relative_change_per_week if trend else None,
                "trend_p_value": trend.p_value if trend else None,
                "trend_significant": bool(trend and trend.significant),
            },
        )
        written += 1
    return {"baselines": written, "skipped": skipped}
