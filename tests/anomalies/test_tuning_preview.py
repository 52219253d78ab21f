"""Tuning preview: what a sensitivity and a direction would have alerted over history.

The engine part (no DB) on series whose spikes are placed by hand, against the detector's
own scores; the API part on PostgreSQL, against the anomalies the scoring job opens once
the tuning is saved.
"""

from __future__ import annotations

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from anomalies import services, tunings
from anomalies.engine import DetectorConfig, Tuning, score_series
from anomalies.engine.tuning_preview import replay_tunings
from anomalies.models import Anomaly, DetectionTuning
from telemetry.bulk import insert_samples
from telemetry.selectors import to_datetime
from telemetry.services import series_ensure
from tests.anomalies.test_engine import seasonal
from tests.conftest import set_aside_telemetry

ALERT = DetectorConfig().alert_score
DAY = 288  # five-minute points
STEP = 300.0
# Spikes after a week of warm-up: a pair up and down every 400 points, each pair inside
# one alert pause (a day), and a smaller one between, so the tunings disagree.
SPIKES = [(2500, 25.0), (2900, -25.0), (3300, 12.0), (3500, -12.0), (3700, 40.0), (3900, -40.0)]


def _spiky(n: int = 14 * DAY, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    ts, values = seasonal(n, seed=seed, noise=2.0)
    for at, size in SPIKES:
        if at < n:
            values[at] += size
    return ts, values


def test_the_default_tuning_alerts_exactly_where_the_detector_does():
    ts, values = _spiky()
    since = ts[7 * DAY]
    (medium,) = replay_tunings([(ts, values)], [Tuning()], since=since)[0]
    scores = score_series(ts, values)
    expected = np.flatnonzero((scores >= ALERT) & (ts >= since))
    assert medium.count == expected.size >= 3
    assert [a.at for a in medium.alerts] == list(ts[expected])
    assert [a.score for a in medium.alerts] == pytest.approx(list(scores[expected]))
    assert {a.observed for a in medium.alerts} <= set(values[expected])


def test_direction_splits_the_default_alerts_by_the_side_asked_for():
    ts, values = _spiky()
    both, above, below = replay_tunings(
        [(ts, values)],
        [Tuning(), Tuning(direction="above"), Tuning(direction="below")],
        since=ts[7 * DAY],
    )[0]
    index = {float(t): i for i, t in enumerate(ts)}
    up = {at for at, size in SPIKES if size > 0}
    down = {at for at, size in SPIKES if size < 0}
    found = {
        name: {index[a.at] for a in r.alerts}
        for name, r in (("both", both), ("above", above), ("below", below))
    }
    assert found["above"] <= up and all(a.direction == 1 for a in above.alerts)
    assert found["below"] <= down and all(a.direction == -1 for a in below.alerts)
    # A tuning only takes alerts away: a dropped deviation still opens the alert pause, so
    # the dip of 40, 200 points after the spike of 40, stays in that spike's pause under
    # "below" as under the default; the two directions split the default's alerts.
    assert found["above"] | found["below"] == found["both"] and found["both"] >= {2500, 3700}
    assert 3900 not in found["below"]
    for alert in both.alerts:
        assert np.sign(alert.observed - alert.expected) == alert.direction


def test_the_sensitivities_order_the_alerts_and_only_the_window_counts():
    ts, values = _spiky()
    low, medium, high = replay_tunings(
        [(ts, values)], [Tuning(s) for s in ("low", "medium", "high")], since=ts[7 * DAY]
    )[0]
    assert low.count < medium.count <= high.count
    # The largest spike alerts at any sensitivity; the 12-unit one is lost at "low".
    assert all(3700 in {round((a.at - ts[0]) / STEP) for a in r.alerts} for r in (low, high))
    later = replay_tunings([(ts, values)], [Tuning()], since=ts[3000])[0][0]
    assert later.count == sum(a.at >= ts[3000] for a in medium.alerts)
    assert all(a.at >= ts[3000] for a in later.alerts)
    capped = replay_tunings([(ts, values)], [Tuning("high")], since=ts[0], limit=2)[0][0]
    assert capped.count > 2 and len(capped.alerts) == 2
    assert [a.at for a in capped.alerts] == sorted(a.at for a in capped.alerts)[-2:]


def test_series_replayed_together_get_what_each_gets_alone():
    long_ts, long_values = _spiky()
    short_ts, short_values = _spiky(11 * DAY, seed=8)
    tunings_ = [Tuning(), Tuning("high", "below")]
    together = replay_tunings(
        [(long_ts, long_values), (short_ts, short_values)], tunings_, since=long_ts[7 * DAY]
    )
    for k, (ts, values) in enumerate([(long_ts, long_values), (short_ts, short_values)]):
        alone = replay_tunings([(ts, values)], tunings_, since=long_ts[7 * DAY])[0]
        assert [[a.at for a in r.alerts] for r in together[k]] == [
            [a.at for a in r.alerts] for r in alone
        ]
    assert all(r.count for r in together[1])  # the shorter one alerts too
    empty = replay_tunings([(np.array([]), np.array([]))], tunings_, since=0.0)
    assert [r.count for r in empty[0]] == [0, 0]


def test_a_replay_needs_tunings_and_paired_arrays():
    with pytest.raises(ValueError, match="at least one tuning"):
        replay_tunings([(np.arange(3.0), np.ones(3))], [], since=0.0)
    with pytest.raises(ValueError, match="same length"):
        replay_tunings([(np.arange(3.0), np.ones(4))], [Tuning()], since=0.0)


# ---------------------------------------------------------------- selector and API (DB)

BASE = "/admin/api/phase3/anomaly/tunings/"


def _latency_history(name: str, labels: dict | None = None, days: int = 12):
    """A seasonal five-minute latency ending now with a spike and, a day later, a dip in
    the last week (a latency that falls is good news: the tuning "above" drops it)."""
    set_aside_telemetry()
    series = series_ensure(name=name, labels=labels or {}, unit="ms")
    n = days * DAY
    end = np.floor(timezone.now().timestamp() / STEP) * STEP
    ts = end - STEP * np.arange(n)[::-1]
    _, values = seasonal(n, seed=len(name), noise=2.0)
    spike, dip = n - 4 * DAY, n - 2 * DAY
    values[spike] += 40.0
    values[dip] -= 40.0
    insert_samples([series.pk] * n, ts, values)
    return series, ts, spike, dip


@pytest.mark.django_db
def test_the_preview_alerts_where_the_job_opens_anomalies_once_the_tuning_is_saved(
    client_with_role,
):
    series, ts, spike, dip = _latency_history("svc.latency.preview")
    body = {"series_name": "svc.latency.*", "direction": "above"}
    response = client_with_role("operator").post(BASE + "preview", body, format="json")
    assert response.status_code == 200, response.json()
    answer = response.json()
    assert answer["series_matched"] == answer["series_previewed"] == 1
    assert answer["series_shadowed"] == 0 and not answer["capped"] and answer["days"] == 7
    (row,) = answer["series"]
    assert row["tuning_now"] is None and row["sensitivity_now"] == "medium"
    assert row["direction_now"] == "both" and row["warmup_points"] == 5 * DAY
    at = [parse_datetime(a["at"]) for a in row["alert_points"]]
    # Now both the spike and the dip alert; above, only the spike.
    assert to_datetime(ts[spike]) in at and to_datetime(ts[dip]) not in at
    assert row["alerts"] == len(at) < row["alerts_now"]
    assert set(row["by_sensitivity"]) == {"low", "medium", "high"}
    assert row["by_sensitivity"]["medium"] == row["alerts"]
    assert not DetectionTuning.objects.exists()  # nothing saved

    # Saved, the job (scoring the whole history as a new series) opens an anomaly at
    # each alert of the preview's window, and at no other time in it.
    DetectionTuning.objects.create(name="latency up", **body)
    services.anomalies_score_recent(now=to_datetime(ts[-1]), series_ids=[series.pk])
    since = parse_datetime(answer["since"])
    opened = sorted(
        a.detected_at for a in Anomaly.objects.filter(series=series, detected_at__gte=since)
    )
    assert opened == at
    # The saved tuning's preview shows it as the tuning applying now.
    saved = client_with_role("operator").get(f"{BASE}{DetectionTuning.objects.get().pk}/preview")
    (row,) = saved.json()["series"]
    assert row["tuning_now"] == "latency up" and row["alerts_now"] == row["alerts"] == len(at)


@pytest.mark.django_db
def test_the_preview_skips_series_where_a_more_specific_tuning_wins(client_with_role, monkeypatch):
    set_aside_telemetry()
    for host in ("a", "b", "c"):
        series_ensure(name="svc.queue.depth", labels={"host": host})
    series_ensure(name="svc.queue.age", labels={"host": "a"})
    DetectionTuning.objects.create(
        name="host a depth", series_name="svc.queue.depth", labels={"host": "a"}, direction="above"
    )
    DetectionTuning.objects.create(name="queues", series_name="svc.queue.*", sensitivity="low")
    client = client_with_role("operator")

    def preview(**body) -> dict:
        response = client.post(BASE + "preview", body, format="json")
        assert response.status_code == 200, response.json()
        return response.json()

    # A pattern over every queue series: the host-a depth keeps its own tuning.
    answer = preview(series_name="svc.queue.*", sensitivity="high")
    assert answer["series_matched"] == 4 and answer["series_shadowed"] == 1
    names = sorted(r["series"] for r in answer["series"])
    assert names == [
        "svc.queue.age{host=a}",
        "svc.queue.depth{host=b}",
        "svc.queue.depth{host=c}",
    ]
    assert {r["tuning_now"] for r in answer["series"]} == {"queues"}
    assert {r["sensitivity_now"] for r in answer["series"]} == {"low"}
    # An edit of "queues" (same name) applies where "queues" does now.
    edit = preview(name="queues", series_name="svc.queue.*", sensitivity="high")
    assert edit["series_shadowed"] == 1 and edit["series_previewed"] == 3
    # The series' own name beats a pattern: the preview takes host a back from its tuning.
    own = preview(series_name="svc.queue.depth", labels={"host": "a"}, direction="below")
    assert own["series_previewed"] == 1 and own["series"][0]["tuning_now"] == "host a depth"
    monkeypatch.setattr(tunings, "TUNING_PREVIEW_MAX_SERIES", 2)
    capped = preview(series_name="svc.queue.*")
    assert capped["capped"] and capped["series_previewed"] == 2 and "first 2" in capped["note"]
    assert all(r["points"] == 0 and r["alerts"] == 0 for r in capped["series"])


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"series_name": "x", "sensitivity": "max"}, "sensitivity"),
        ({"series_name": "x", "direction": "up"}, "direction"),
        ({"series_name": "x", "labels": ["env"]}, "labels"),
        ({"series_name": "x" * 201}, "series_name"),
    ],
)
def test_a_bad_tuning_preview_is_refused_naming_the_field(client_with_role, body, field):
    response = client_with_role("operator").post(BASE + "preview", body, format="json")
    assert response.status_code == 400 and field in response.json(), response.json()


@pytest.mark.django_db
def test_tuning_previews_need_the_operator_role_and_check_the_window(client_with_role):
    tuning = DetectionTuning.objects.create(name="t", series_name="nothing.matches")
    viewer = client_with_role("viewer")
    assert viewer.post(BASE + "preview", {"series_name": "x"}).status_code == 403
    assert viewer.get(f"{BASE}{tuning.pk}/preview").status_code == 403
    operator = client_with_role("operator")
    assert operator.get(f"{BASE}{tuning.pk}/preview?days=2").json()["days"] == 2
    body = {"name": "t", "series_name": "x", "direction": "below"}
    answer = operator.post(BASE + "preview?days=14", body, format="json").json()
    assert answer["days"] == 14 and answer["direction"] == "below"
    for days in (0, 15, "week"):
        refused = operator.post(f"{BASE}preview?days={days}", body, format="json")
        assert refused.status_code == 400 and "days" in refused.json()
    assert operator.get(f"{BASE}999999/preview").status_code == 404
    broken = DetectionTuning.objects.create(name="shell", series_name="x", labels=[1])
    refused = operator.get(f"{BASE}{broken.pk}/preview")
    assert refused.status_code == 400 and "labels" in refused.json()


@pytest.mark.django_db
def test_the_admin_previews_a_tuning_over_the_last_week(admin_client, client):
    series, ts, spike, dip = _latency_history("svc.latency.admin")
    tuning = DetectionTuning.objects.create(
        name="latency up", series_name=series.name, direction="above", enabled=False
    )
    change = admin_client.get(f"/admin/anomalies/detectiontuning/{tuning.pk}/change/")
    assert b"Preview over the last 7 days" in change.content
    assert admin_client.get("/admin/anomalies/detectiontuning/add/").status_code == 200
    page = admin_client.get(f"/admin/anomalies/detectiontuning/{tuning.pk}/preview/")
    assert page.status_code == 200
    text = page.content.decode()
    assert str(series) in text and "does not apply it until it is enabled" in text
    assert f"{to_datetime(ts[spike]):%m-%d %H:%M} above" in text
    assert f"{to_datetime(ts[dip]):%m-%d %H:%M}" not in text
    broken = DetectionTuning.objects.create(name="shell", labels=["env"])
    page = admin_client.get(f"/admin/anomalies/detectiontuning/{broken.pk}/preview/")
    assert "the scoring job skips this tuning" in page.content.decode()
    User.objects.create_user("nobody", password="pw", is_staff=True)
    client.login(username="nobody", password="pw")
    assert client.get(f"/admin/anomalies/detectiontuning/{tuning.pk}/preview/").status_code == 403
