"""Root causes as the scheduled job finds them: demo worlds scored an hour at a time.

    make eval-root-causes-hourly      (about 14 minutes with two processes)

Not part of the suite (pytest collects `test_*.py`; this file runs when named). The grid
of `eval_root_cause_grid.py` scores each world in one run, so every anomaly is ranked
among all the others; here 21-day worlds (seeds 1-8, six ends through the day) are
backfilled up to ten days before their end and then scored once an hour, as the job
would, so each anomaly is ranked among those open when it opens. Every injected
incident must be found, critical, with the true cause ranked first for every effect and
for the cause's own anomaly. The suite keeps the world that once failed
(`test_hourly_runs_put_an_incident_down_to_its_cause_not_to_an_effect_with_a_noisy_onset`).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from anomalies.models import Anomaly
from telemetry.demo import DemoConfig, seed_demo
from telemetry.models import DemoIncident
from tests.anomalies.test_services import (
    _assert_incidents_found_and_true_causes_first,
    _latest_demo_time,
    _score_hourly,
)

pytestmark = pytest.mark.django_db

HOURS = [4.0, 8.0, 12.0, 16.0, 20.0, 22.5]


@pytest.mark.parametrize("seed", range(1, 9))
@pytest.mark.parametrize("hours", HOURS)
def test_demo_world_scored_hourly(empty_telemetry, seed, hours):
    seed_demo(DemoConfig(days=21, users=20, seed=seed, end=1_795_000_200.0 + hours * 3600))
    last = _latest_demo_time().timestamp()
    _score_hourly(until=last, start=last - 10 * 86400)
    _assert_incidents_found_and_true_causes_first()
    for incident in DemoIncident.objects.all():
        window = dict(
            started_at__gte=incident.start - timedelta(minutes=30), started_at__lte=incident.end
        )
        cause = Anomaly.objects.filter(series=incident.cause_series, **window).first()
        blamed = {c.series.name for c in cause.causes.filter(rank=1)}
        # Itself, or its twin signal (the pool's utilisation beside its connection count).
        assert incident.cause_series.name in blamed, (incident.name, blamed)
