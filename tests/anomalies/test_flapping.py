"""Flapping: a series that recovers for a few minutes and breaches again is one incident.

The on-call got "resolved" followed at once by a new page, under a new fingerprint, and
the anomaly list filled with fragments. An anomaly now closes only once its series has
been quiet for the quiet period (Prometheus' `keep_firing_for`), and its `ended_at` is
still the moment it recovered.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from celery import current_app

from anomalies import services
from anomalies.models import Anomaly, ResponseExecution, ResponsePlaybook
from anomalies.services.episodes import quiet_seconds
from telemetry.bulk import insert_samples
from telemetry.selectors import to_datetime
from telemetry.services import series_ensure
from tests.anomalies.test_services import _webhook_recorder

pytestmark = pytest.mark.django_db

STEP = 300.0
END = 1_795_000_200.0


def _flat(name: str, n: int, seed: int = 4):
    """A quiet series (100 +- 1) with a spike of 8 at points 400-401: its anomaly recovers
    at its third calm point, 404 (the detector still votes on 402-403, on the memory of
    its averages, but the values are back: `episodes.EXTEND_Z`)."""
    rng = np.random.default_rng(seed)
    series = series_ensure(name=name, unit="ms")
    ts = END - STEP * np.arange(n)[::-1]
    values = 100.0 + rng.normal(0, 1.0, n)
    values[400:402] += 8.0
    return series, ts, values


def _relapse(values: np.ndarray, at: int) -> None:
    """A worse spike (five times the first: it alerts through the detector's alert pause)."""
    values[at : at + 3] += 40.0


def _run(series, at: float) -> dict:
    return services.anomalies_score_recent(now=to_datetime(at), series_ids=[series.pk])


@pytest.fixture
def pages(monkeypatch) -> list[dict]:
    """Webhook payloads sent, the queued tasks run in-process through the real tasks."""
    sent = _webhook_recorder(monkeypatch)
    monkeypatch.setitem(current_app.conf, "task_always_eager", True)
    ResponsePlaybook.objects.create(
        name="page", action="webhook", target="http://hooks.example/alert", min_severity="info"
    )
    return sent


def _told(pages: list[dict]) -> list[tuple[int, list[str]]]:
    """(anomaly id, statuses sent for it, in order), by alert, in the order first told.

    Receivers tell alerts apart by fingerprint; the group key names the anomaly.
    """
    told: dict[str, tuple[int, list[str]]] = {}
    for p in pages:
        anomaly = int(p["groupKey"].split('anomaly="')[1].rstrip('"}'))
        told.setdefault(p["alerts"][0]["fingerprint"], (anomaly, []))[1].append(p["status"])
    return list(told.values())


def _stream(series, ts, values, start: int, capture) -> None:
    """The beat job's life: one new point a run, responses sent after each commit."""
    for i in range(start, ts.size):
        insert_samples([series.pk], ts[i : i + 1], values[i : i + 1])
        with capture(execute=True):
            _run(series, ts[i])


def test_a_flapping_series_is_one_anomaly_and_one_page(pages, django_capture_on_commit_callbacks):
    # Recovered at 404, breaching again at 406: before, "resolved" at 404 and a new page
    # at 406 under a new fingerprint.
    series, ts, values = _flat("svc.queue.flapping", 440)
    _relapse(values, 406)
    assert ts[406] - ts[404] < quiet_seconds(STEP)
    insert_samples([series.pk] * 400, ts[:400], values[:400])
    _run(series, ts[399])
    _stream(series, ts, values, 400, django_capture_on_commit_callbacks)
    anomalies = list(Anomaly.objects.filter(series=series))
    assert len(anomalies) == 1
    (anomaly,) = anomalies
    assert anomaly.last_seen_at >= to_datetime(ts[408])
    # `ended_at` is the recovery (the third calm point), not the end of the quiet period.
    calm = [p[0] for p in anomaly.points if p[0] > anomaly.last_seen_at.timestamp()]
    assert calm == [] and anomaly.ended_at is not None
    assert anomaly.ended_at == anomaly.last_seen_at + 3 * timedelta(seconds=STEP)
    # One alert: fired (again with each escalation of its severity), then resolved once.
    assert _told(pages) == [(anomaly.pk, ["firing"] * (len(pages) - 1) + ["resolved"])]
    assert ResponseExecution.objects.get().anomaly_id == anomaly.pk


def test_a_recurrence_after_the_quiet_period_is_a_new_anomaly_and_a_new_page(
    pages, django_capture_on_commit_callbacks
):
    series, ts, values = _flat("svc.queue.recurs", 440)
    second = 404 + int(np.ceil(quiet_seconds(STEP) / STEP)) + 2
    _relapse(values, second)
    insert_samples([series.pk] * 400, ts[:400], values[:400])
    _run(series, ts[399])
    _stream(series, ts, values, 400, django_capture_on_commit_callbacks)
    first, again = Anomaly.objects.filter(series=series).order_by("started_at")
    # Closed when the quiet period was over, dated from its recovery (third calm point).
    assert first.ended_at == first.last_seen_at + 3 * timedelta(seconds=STEP)
    assert again.started_at > first.ended_at and again.ended_at is not None
    told = _told(pages)
    assert [pk for pk, _ in told] == [first.pk, again.pk]
    assert all(
        statuses[-1] == "resolved" and statuses.count("resolved") == 1 for _, statuses in told
    )


def test_an_anomaly_whose_series_goes_quiet_while_recovering_closes_on_the_clock(
    pages, django_capture_on_commit_callbacks
):
    # Three calm points, then the exporter sends nothing for a while: without points the
    # quiet period is counted on the clock, or the anomaly would stay open for good.
    series, ts, values = _flat("svc.queue.quiet", 440)
    insert_samples([series.pk] * 400, ts[:400], values[:400])
    _run(series, ts[399])
    _stream(series, ts[:407], values[:407], 400, django_capture_on_commit_callbacks)
    anomaly = Anomaly.objects.get(series=series)
    recovered = anomaly.last_seen_at + 3 * timedelta(seconds=STEP)
    assert recovered.timestamp() <= ts[406]
    assert anomaly.ended_at is None  # recovered, held for the quiet period
    with django_capture_on_commit_callbacks(execute=True):
        _run(series, recovered.timestamp() + quiet_seconds(STEP) - 1.0)
    anomaly.refresh_from_db()
    assert anomaly.ended_at is None
    with django_capture_on_commit_callbacks(execute=True):
        counts = _run(series, recovered.timestamp() + quiet_seconds(STEP))
    anomaly.refresh_from_db()
    assert counts["closed"] == 1 and anomaly.ended_at == recovered
    ((only, statuses),) = _told(pages)
    assert only == anomaly.pk and statuses[-1] == "resolved" and "resolved" not in statuses[:-1]


@pytest.mark.parametrize("action", ["resolve", "false positive"])
def test_an_anomaly_an_operator_ended_while_it_recovered_is_not_reopened(
    pages, django_capture_on_commit_callbacks, action
):
    series, ts, values = _flat(f"svc.queue.{action.replace(' ', '-')}", 440)
    _relapse(values, 408)
    insert_samples([series.pk] * 400, ts[:400], values[:400])
    _run(series, ts[399])
    _stream(series, ts[:407], values[:407], 400, django_capture_on_commit_callbacks)
    held = Anomaly.objects.get(series=series)
    assert held.ended_at is None
    last_seen = held.last_seen_at
    with django_capture_on_commit_callbacks(execute=True):
        if action == "resolve":
            services.anomaly_resolve(anomaly_id=held.pk, by="ops")
        else:
            services.anomaly_mark_false_positive(anomaly_id=held.pk, by="ops")
    _stream(series, ts, values, 407, django_capture_on_commit_callbacks)
    held.refresh_from_db()
    assert held.status == ("resolved" if action == "resolve" else "false_positive")
    assert held.last_seen_at == last_seen  # the relapse is not folded into it
    # The relapse (five times as large, so not the dismissed pattern either) is new.
    assert Anomaly.objects.filter(series=series).exclude(pk=held.pk).count() == 1


def test_the_quiet_period_follows_the_series_step_and_the_setting(settings):
    assert quiet_seconds(60.0) < quiet_seconds(3600.0)
    assert quiet_seconds(60.0) >= 3 * 60.0
    settings.ANOMALIES_QUIET_SECONDS = 0
    assert quiet_seconds(3600.0) == 0.0


def test_an_anomaly_waiting_out_its_quiet_period_is_shown_as_recovering(
    pages, django_capture_on_commit_callbacks, client_with_role, admin_client
):
    # Recovered, not yet closed: it was listed as ongoing like the incident being fought,
    # with nothing saying it had been calm for ten minutes.
    from anomalies.selectors import overview_section

    base = "/admin/api/phase3/anomaly/"
    series, ts, values = _flat("svc.queue.recovering", 440)
    _relapse(values, 406)
    insert_samples([series.pk] * 400, ts[:400], values[:400])
    _run(series, ts[399])
    viewer = client_with_role("viewer")

    def shown() -> tuple[str, str | None, str, list[int], list[int], int]:
        a = Anomaly.objects.get(series=series)
        listed = viewer.get(base + "anomalies", {"state": "recovering"}).json()["results"]
        window = {"series": series.pk, "until": to_datetime(END + STEP).isoformat()}
        detected = viewer.get(base + "detect", window).json()["anomalies"]
        admin_page = admin_client.get("/admin/anomalies/anomaly/", {"state": "recovering"})
        one = viewer.get(base + f"anomalies/{a.pk}").json()
        assert detected[0]["state"] == one["state"] and admin_page.status_code == 200
        return (
            one["state"],
            one["recovered_at"],
            a.state,
            [x["id"] for x in listed],
            list(admin_page.context["cl"].result_list.values_list("pk", flat=True)),
            overview_section()["recovering_anomalies"],
        )

    _stream(series, ts[:403], values[:403], 400, django_capture_on_commit_callbacks)
    anomaly = Anomaly.objects.get(series=series)
    assert shown() == ("ongoing", None, "ongoing", [], [], 0)
    _stream(series, ts[:406], values[:406], 403, django_capture_on_commit_callbacks)
    anomaly.refresh_from_db()
    recovered = anomaly.last_seen_at + 3 * timedelta(seconds=STEP)
    state, since, model_state, listed, admin_listed, count = shown()
    assert (state, model_state, listed, admin_listed, count) == (
        "recovering",
        "recovering",
        [anomaly.pk],
        [anomaly.pk],
        1,
    )
    assert anomaly.recovered_at == recovered and since.startswith(f"{recovered:%Y-%m-%dT%H:%M}")
    assert anomaly.ended_at is None and anomaly.status == "open"
    # A relapse within the quiet period: the same anomaly, ongoing again.
    _stream(series, ts[:409], values[:409], 406, django_capture_on_commit_callbacks)
    assert shown() == ("ongoing", None, "ongoing", [], [], 0)
    # Calm for the whole quiet period: closed.
    _stream(series, ts, values, 409, django_capture_on_commit_callbacks)
    assert shown()[0] == "closed" and Anomaly.objects.filter(series=series).count() == 1
    bad = viewer.get(base + "anomalies", {"state": "calm"})
    assert bad.status_code == 400 and "state" in bad.json()


def test_a_burst_of_variance_is_one_anomaly_for_as_long_as_it_lasts(
    pages, django_capture_on_commit_callbacks
):
    # Six hours of noise six times wider at an unchanged mean. After the first alert the
    # pause keeps its points under the alert level, so only an abnormal point (a vote on
    # a value still off) can carry the anomaly through its calm spells: before, it was an
    # anomaly of its first half hour, "resolved" while the burst went on.
    rng = np.random.default_rng(3)
    n, start, length = 1200, 1100, 72
    series = series_ensure(name="svc.queue.variance", unit="ms")
    ts = END - STEP * np.arange(n)[::-1]
    values = 100.0 + rng.normal(0, 1.0, n)
    values[start : start + length] = 100.0 + rng.normal(0, 6.0, length)
    insert_samples([series.pk] * start, ts[:start], values[:start])
    _run(series, ts[start - 1])
    for hour_end in range(start + 12, n + 1, 12):  # the job, run hourly
        insert_samples(
            [series.pk] * 12, ts[hour_end - 12 : hour_end], values[hour_end - 12 : hour_end]
        )
        with django_capture_on_commit_callbacks(execute=True):
            _run(series, ts[hour_end - 1])
    (anomaly,) = Anomaly.objects.filter(series=series)
    assert anomaly.started_at <= to_datetime(ts[start + 1])
    assert anomaly.last_seen_at >= to_datetime(ts[start + length * 3 // 4])
    assert anomaly.ended_at is not None and anomaly.ended_at <= to_datetime(ts[start + length + 6])
    ((only, statuses),) = _told(pages)
    assert only == anomaly.pk and statuses[-1] == "resolved" and statuses.count("resolved") == 1
