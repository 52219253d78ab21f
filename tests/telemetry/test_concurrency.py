"""Two clients writing at once (PostgreSQL): no deadlock, no IntegrityError, no duplicate rows.

An exporter that retries after a timeout, or two replicas of one exporter, post batches
that overlap while the first is still being written; each side must end in a 200.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connections
from django.db.models import QuerySet
from django.utils import timezone

from telemetry import services
from telemetry.models import Event, RollupState, Sample, Series
from tests.locking import OtherConnection

pytestmark = pytest.mark.django_db(transaction=True)


def _race(batches: list[list[dict]], write) -> list[BaseException]:
    """Write each batch from its own connection, all released at the same moment."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(batches))

    def one(rows: list[dict]) -> None:
        try:
            start.wait()
            write(rows)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=one, args=(rows,)) for rows in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_two_clients_sending_overlapping_batches_in_different_orders_both_succeed(postgres):
    """The same rows sent in two orders at once used to deadlock in the COPY (a 500 for one).

    Every write now goes in (series, ts) order, so one side waits for the other instead.
    """
    n, series = 20_000, 5
    for attempt in range(3):
        base = time.time() - 3000 + attempt * 0.01
        rows = [
            {"series": f"race.order.{i % series}", "ts": base + (i // series) * 0.1, "value": 1.0}
            for i in range(n)
        ]
        errors = _race([rows, rows[::-1]], lambda batch: services.samples_ingest(rows=batch))
        assert not errors, errors
    assert Series.objects.filter(name__startswith="race.order.").count() == series
    assert Sample.objects.filter(series__name__startswith="race.order.").count() == 3 * n


def test_two_clients_creating_the_same_new_series_at_once_get_one_series(postgres):
    rows = [
        {"series": "race.new", "labels": {"shard": str(i)}, "ts": time.time() - 60, "value": 1.0}
        for i in range(300)
    ]
    errors = _race([rows, rows[::-1]], lambda batch: services.samples_ingest(rows=batch))
    assert not errors, errors
    assert Series.objects.filter(name="race.new").count() == 300
    assert Sample.objects.filter(series__name="race.new").count() == 300


def test_two_clients_sending_the_same_events_in_different_orders_both_succeed(postgres):
    now = time.time()
    rows = [
        {"user_id": f"u{i}", "name": "race", "ts": now - i, "client_id": f"race-{i}"}
        for i in range(20_000)
    ]
    errors = _race([rows, rows[::-1]], lambda batch: services.events_ingest(rows=batch))
    assert not errors, errors
    assert Event.objects.filter(name="race").count() == 20_000


def test_two_late_batches_at_once_both_mark_rollups_stale(postgres, monkeypatch):
    """Two batches reaching back before the rollup horizon deadlocked on the state row.

    Each read the row FOR SHARE and then tried to update it, waiting for the other's share
    lock: PostgreSQL aborted one ("deadlock detected"), a 500 for that client. The other
    side is started at the moment this side has read the row and is about to update it.
    """
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    RollupState.objects.update_or_create(
        step_seconds=3600, defaults={"rolled_until": hour, "dirty_from": None}
    )

    def late(name: str, ago: float) -> list[dict]:
        start = time.time() - ago
        return [{"series": name, "ts": start + i, "value": float(i)} for i in range(50)]

    other = OtherConnection(lambda: services.samples_ingest(rows=late("race.late.b", 3 * 3600)))
    other.start_at(monkeypatch, QuerySet, "update")
    services.samples_ingest(rows=late("race.late.a", 2 * 3600))
    other.join()
    assert not isinstance(other.outcome[0], BaseException), other.outcome
    state = RollupState.objects.get(step_seconds=3600)
    assert state.dirty_from is not None and state.dirty_from < hour - timedelta(hours=2)
    assert Sample.objects.filter(series__name__startswith="race.late.").count() == 100


def test_series_created_counts_only_the_series_this_request_inserted(postgres, monkeypatch):
    """Two clients creating the same new series at once both answered series_created=N.

    The other side starts when this side has inserted the series (uncommitted) and is about
    to write its samples: it reads no such series, its insert waits on this side's index
    entries, and once this side commits its rows conflict. Each series is counted once.
    """
    rows = [
        {"series": "race.count", "labels": {"shard": str(i)}, "ts": time.time() - 60, "value": 1.0}
        for i in range(50)
    ]
    other = OtherConnection(lambda: services.samples_ingest(rows=rows[::-1]))
    other.start_at(monkeypatch, services, "insert_samples_us")
    mine = services.samples_ingest(rows=rows)
    other.join()
    theirs = other.outcome[0]
    assert not isinstance(theirs, BaseException), theirs
    assert Series.objects.filter(name="race.count").count() == 50
    assert (mine.series_created, theirs.series_created) == (50, 0)
    assert Sample.objects.filter(series__name="race.count").count() == 50


def test_series_created_across_racing_clients_adds_up_to_the_series_created(postgres):
    results: list = []

    def ingest(batch: list[dict]) -> None:
        results.append(services.samples_ingest(rows=batch))

    for attempt in range(3):
        rows = [
            {"series": f"race.sum.{attempt}", "labels": {"i": str(i)}, "ts": time.time() - 60}
            | {"value": 1.0}
            for i in range(200)
        ]
        results.clear()
        errors = _race([rows, rows[::-1], rows[100:]], ingest)
        assert not errors, errors
        assert sum(r.series_created for r in results) == 200
