"""The series around an anomaly, for the admin's chart: observed, expected band,
anomalous points."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
from django.utils import timezone

from telemetry.conf import raw_retention_days
from telemetry.selectors import changes_between, series_points, series_values

from ..models import (
    Anomaly,
)

# Series points a chart page draws at most; a denser window is drawn as bucket means.
MAX_CHART_POINTS = 2000
# The bucket widths a chart may use (seconds); whole hours read the hourly rollups.
CHART_STEPS = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400)


def anomaly_context(
    anomaly: Anomaly, *, before: timedelta | None = None, after: timedelta | None = None
) -> dict:
    """The series around an anomaly plus its expected band and abnormal points, as arrays.

    The band (expected +- 3 scales) is what the detector believed at each abnormal point,
    kept in `Anomaly.points` when it was scored, so the chart shows the detector's view
    at the time rather than a re-fit with hindsight. The series itself is read raw when
    that is at most `MAX_CHART_POINTS` points; a denser window is drawn as bucket means,
    and one reaching past the raw retention as hourly means from the rollups (read raw,
    an anomaly older than 90 days had an empty chart, and a one-second series sent
    25,000 points to the browser).
    """
    before = before or timedelta(hours=6)
    after = after or timedelta(hours=1)
    start = anomaly.started_at - before
    end = (anomaly.ended_at or anomaly.last_seen_at) + after
    step, raw = _chart_step(anomaly.series_id, start, end)
    if step is None:
        (ts, values), source = raw, "raw"
    else:
        read = series_points(anomaly.series_id, start=start, end=end, step_seconds=step)
        ts, values = read.ts, read.values
        source = f"{_duration(step)} means" + (
            " (hourly rollups)" if "rollup" in read.source else ""
        )
    pts = np.asarray(anomaly.points, dtype=float).reshape(-1, 5)
    labels = anomaly.series.labels
    return {
        # What changed in the window, on the series' labels: drawn as markers on the time
        # axis, as Grafana draws annotations.
        "changes": [c for c in changes_between(start, end) if c.concerns(labels)],
        "ts": ts,
        "values": values,
        "source": source,
        "point_ts": pts[:, 0],
        "point_values": pts[:, 1],
        "lower": pts[:, 2] - 3.0 * pts[:, 3],
        "upper": pts[:, 2] + 3.0 * pts[:, 3],
        "expected": pts[:, 2],
    }


def _chart_step(
    series_id: int, start: datetime, end: datetime
) -> tuple[float | None, tuple[np.ndarray, np.ndarray] | None]:
    """(bucket width or None for raw, the raw points when raw will do)."""
    span = max((end - start).total_seconds(), 1.0)
    if start < timezone.now() - timedelta(days=raw_retention_days()):
        # Raw samples this old are gone; hourly rollups hold them.
        return next(
            (s for s in CHART_STEPS if s >= 3600 and span / s <= MAX_CHART_POINTS), 86400
        ), None
    raw = series_values(series_id, start=start, end=end, limit=MAX_CHART_POINTS + 1)
    if raw[0].size <= MAX_CHART_POINTS:
        return None, raw
    return next((s for s in CHART_STEPS if span / s <= MAX_CHART_POINTS), CHART_STEPS[-1]), None


def _duration(seconds: float) -> str:
    if seconds % 3600 == 0:
        hours = int(seconds // 3600)
        return "hourly" if hours == 1 else f"{hours}-hour"
    return f"{int(seconds // 60)}-minute"
