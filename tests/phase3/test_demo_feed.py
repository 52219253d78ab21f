from __future__ import annotations

import numpy as np
import pytest

from telemetry.demo import DemoConfig, demo_extend, seed_demo
from telemetry.selectors import series_get, series_values

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _own_world(empty_telemetry):
    """These tests build their own small world; the shared demo world is set aside."""


def test_the_live_feed_does_nothing_without_a_demo_world():
    assert demo_extend(now=2_000_000_000.0) == 0


def test_the_live_feed_continues_the_demo_to_now_once():
    end = 1_700_000_000.0 - (1_700_000_000.0 % 300)
    seed_demo(DemoConfig(days=3, users=5, seed=3, end=end))
    series = series_get("http.requests.rate")
    before_ts, before = series_values(series.pk)
    written = demo_extend(now=end + 3600)
    missing = int((end + 3600 - before_ts[-1]) // 300)
    assert written == missing * 40  # every demo series, every missing 5-minute point
    assert demo_extend(now=end + 3600) == 0  # idempotent
    ts, values = series_values(series.pk)
    assert ts[-1] == end + 3600 and np.all(np.diff(ts) == 300)
    # it continues the level of the same hour of the previous day, not a fresh random world
    same_hour_yesterday = before[np.searchsorted(before_ts, end + 3600 - 86400)]
    assert abs(values[-1] / same_hour_yesterday - 1) < 0.25


def test_after_a_long_pause_the_feed_resumes_with_one_day_only():
    end = 1_700_000_000.0 - (1_700_000_000.0 % 300)
    seed_demo(DemoConfig(days=2, users=0, seed=3, end=end))
    written = demo_extend(now=end + 30 * 86400)
    assert written == (86400 // 300 + 1) * 40
