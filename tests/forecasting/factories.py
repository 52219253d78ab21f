"""Test data for the forecasting system: series with known shapes, events, targets."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import factory
import numpy as np

from forecasting.models import ForecastTarget
from telemetry.bulk import insert_samples
from telemetry.models import Event, Series

HOUR = 3600.0
DAY = 86_400.0


def hour_end() -> float:
    """The last full hour: data ends 'now' like live telemetry does."""
    return float(np.floor(time.time() / HOUR) * HOUR)


def hourly_values(
    days: int,
    *,
    level: float = 100.0,
    slope_per_day: float = 1.0,
    seed: int = 0,
    noise: float = 2.0,
    amplitude: float = 10.0,
) -> np.ndarray:
    """A trend, a daily cycle and Gaussian noise, one value per hour."""
    rng = np.random.default_rng(seed)
    i = np.arange(24 * days)
    return (
        level
        + slope_per_day * i / 24
        + amplitude * np.sin(2 * np.pi * i / 24)
        + rng.normal(0, noise, i.size)
    )


def series_with_values(
    name: str, values: np.ndarray, *, step: float = HOUR, end: float | None = None, **labels
) -> Series:
    series = SeriesFactory(name=name, labels=labels)
    end = hour_end() if end is None else end
    ts = end - step * np.arange(values.size - 1, -1, -1)
    insert_samples(np.full(values.size, series.pk), ts, values)
    return series


def events_growing(days: int, *, first_day_users: int, growth_per_day: int, end: float) -> int:
    """Daily activity where the number of active users grows by ``growth_per_day`` each day."""
    rows = []
    start_day = np.floor(end / DAY) - days
    for d in range(days):
        users = first_day_users + growth_per_day * d
        for u in range(users):
            t = datetime.fromtimestamp((start_day + d) * DAY + 3600 + 60 * u, tz=UTC)
            session = f"s{d}-{u}"
            rows.append(Event(user_id=f"u{u}", name="page_view", ts=t, session_id=session))
            if u >= first_day_users + growth_per_day * (d - 1) and d > 0:
                rows.append(
                    Event(user_id=f"u{u}", name="signup_completed", ts=t, session_id=session)
                )
    Event.objects.bulk_create(rows, batch_size=2000)
    return len(rows)


class SeriesFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Series

    name = factory.Sequence(lambda n: f"test.series.{n}")
    labels = factory.LazyFunction(dict)
    unit = "count"


class ForecastTargetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ForecastTarget

    name = factory.Sequence(lambda n: f"target {n}")
    prediction_type = "traffic"
    source = ForecastTarget.Source.SERIES
    series = factory.SubFactory(SeriesFactory)
