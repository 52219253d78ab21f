"""Chart data for the admin: health over time, an endpoint's metric against its baseline."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from django.utils import timezone

from telemetry import selectors as telemetry
from telemetry.charts import timeseries_chart

from .engine.baselines import hour_of_week
from .models import Baseline, HealthSnapshot, Recommendation
from .services.baselines import baseline_from_row


def health_chart(*, days: int = 30) -> str | None:
    rows = list(
        HealthSnapshot.objects.filter(at__gte=timezone.now() - timedelta(days=days))
        .order_by("at")
        .values_list("at", "score", "breakdown")
    )
    if not rows:
        return None
    x = [r[0] for r in rows]
    lines = [{"name": "health score", "x": x, "y": [r[1] for r in rows]}]
    for part in rows[-1][2]:
        lines.append(
            {
                "name": f"points lost: {part}",
                "x": x,
                "y": [(r[2].get(part) or {}).get("points_lost") for r in rows],
            }
        )
    return timeseries_chart(f"Health over the last {days} days", lines=lines, y_title="points")


def baseline_chart(baseline: Baseline, *, days: int = 7) -> str | None:
    """The series of the last ``days`` with its baseline median and the median..p95 band, and
    the moments recommendations on it were applied."""
    end = timezone.now()
    ts, values = telemetry.series_values(baseline.series_id, end - timedelta(days=days), end)
    if ts.size == 0:
        return None
    model = baseline_from_row(baseline)
    how = hour_of_week(ts)
    applied = Recommendation.objects.filter(
        metric_series_id=baseline.series_id, applied_at__isnull=False
    ).values_list("applied_at", flat=True)
    return timeseries_chart(
        f"{baseline.series} against its hour-of-week baseline",
        lines=[
            {"name": "observed", "x": ts, "y": values},
            {"name": "baseline median", "x": ts, "y": model.median[how]},
        ],
        bands=[
            {"name": "median..p95", "x": ts, "lower": model.median[how], "upper": model.p95[how]}
        ],
        marks=[
            {
                "name": "change applied",
                "x": [a.timestamp() for a in applied],
                "y": [float(np.nanmax(values))] * len(applied),
            }
        ]
        if applied
        else [],
        y_title=baseline.series.unit,
    )
