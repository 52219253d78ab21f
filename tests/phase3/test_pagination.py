"""Paging through a list returns every row once, even when the ordering ties."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from anomalies.models import Anomaly
from phase3.pagination import with_unique_order
from telemetry.services import series_ensure

pytestmark = pytest.mark.django_db


def test_pages_of_tied_rows_list_every_row_once(client_with_role):
    # A fleet-wide incident: 300 series' anomalies share one onset (the same sample grid).
    onset = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=30)
    Anomaly.objects.bulk_create(
        Anomaly(
            series=series_ensure(name=f"fleet.cpu.{i:03d}"),
            started_at=onset,
            detected_at=onset,
            last_seen_at=onset,
            peak_score=0.9,
            peak_surprisal=float(i % 7),
            peak_z=3.0,
            direction=1,
            observed=1.0,
            expected=0.0,
            methods=["statistical"],
        )
        for i in range(300)
    )
    client = client_with_role("viewer")
    seen = []
    for offset in range(0, 300, 50):
        page = client.get(f"/admin/api/phase3/anomaly/anomalies?limit=50&offset={offset}").json()
        seen += [row["id"] for row in page["results"]]
    assert sorted(seen) == sorted(Anomaly.objects.values_list("pk", flat=True))


def test_the_tie_breaker_follows_the_last_direction_and_respects_an_existing_key():
    def order(qs):
        return list(with_unique_order(qs).query.order_by)

    assert order(Anomaly.objects.order_by("-started_at")) == ["-started_at", "-pk"]
    assert order(Anomaly.objects.order_by("severity")) == ["severity", "pk"]
    assert order(Anomaly.objects.all()) == ["-started_at", "-pk"]  # the model's ordering
    assert order(Anomaly.objects.order_by("-id")) == ["-id"]
    assert order(Anomaly.objects.order_by()) == []  # deliberately unordered stays so
