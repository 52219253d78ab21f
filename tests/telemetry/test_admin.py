"""Admin pages of telemetry render, charts included, for series with and without rollups."""

from __future__ import annotations

import numpy as np
import pytest
from django.urls import reverse
from django.utils import timezone

from telemetry.bulk import insert_samples
from telemetry.models import RollupState, SampleRollup
from telemetry.services import rollups_update, series_ensure

pytestmark = pytest.mark.django_db


@pytest.fixture
def series():
    series = series_ensure(name="test.admin.cpu", unit="ratio")
    end = timezone.now().timestamp()
    ts = np.arange(end - 3 * 86400, end, 300.0)
    insert_samples(np.full(ts.size, series.pk), ts, np.linspace(0.1, 0.9, ts.size))
    return series


@pytest.mark.parametrize("span", ["1d", "7d", "90d", "1y", "bogus"])
def test_series_chart_page(admin_client, series, span):
    rollups_update()
    response = admin_client.get(
        reverse("admin:telemetry_series_chart", args=[series.pk]), {"span": span}
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "plotly" in body and "test.admin.cpu" in body


def test_changelists_render(admin_client, series):
    rollups_update()
    assert SampleRollup.objects.filter(series=series).exists()
    for model in (
        "series",
        "sample",
        "samplerollup",
        "rollupstate",
        "event",
        "demoincident",
        "demouser",
    ):
        response = admin_client.get(reverse(f"admin:telemetry_{model}_changelist"))
        assert response.status_code == 200, model
    state = RollupState.objects.get()
    response = admin_client.get(reverse("admin:telemetry_rollupstate_changelist"))
    assert str(state.step_seconds) in response.content.decode()
