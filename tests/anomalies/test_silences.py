"""Silences: anomalies are still found and listed, but their playbooks wait until the
silence ends, and one that ended under it is never announced."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery import current_app
from django.urls import reverse
from django.utils import timezone

from anomalies.models import Anomaly, ResponseExecution, ResponsePlaybook, Silence
from anomalies.selectors import overview_section
from anomalies.services.playbooks import queue_responses
from telemetry.bulk import insert_samples
from telemetry.selectors import to_datetime
from telemetry.services import series_ensure
from tests.anomalies.factories import AnomalyFactory
from tests.anomalies.test_services import _score, _synthetic, _webhook_recorder

pytestmark = pytest.mark.django_db

BASE = "/admin/api/phase3/anomaly/silences/"


def _silence(pattern: str = "*", *, start: timedelta, end: timedelta, **kw) -> Silence:
    now = timezone.now()
    return Silence.objects.create(
        series_pattern=pattern, starts_at=now + start, ends_at=now + end, comment="deploy", **kw
    )


@pytest.mark.parametrize(
    ("pattern", "labels", "name", "series_labels", "muted"),
    [
        ("*", {}, "svc.latency", {}, True),
        ("svc.*", {}, "svc.latency", {}, True),
        ("svc.*", {}, "db.connections", {}, False),
        ("SVC.*", {}, "svc.latency", {}, False),  # names are case-sensitive on every OS
        ("svc.latency", {"env": "prod"}, "svc.latency", {"env": "prod", "az": "b"}, True),
        ("svc.latency", {"env": "prod"}, "svc.latency", {"env": "staging"}, False),
        ("svc.latency", {"env": "prod"}, "svc.latency", {}, False),
    ],
)
def test_a_silence_matches_by_name_pattern_and_labels(pattern, labels, name, series_labels, muted):
    silence = Silence(series_pattern=pattern, labels=labels)
    assert silence.matches(name, series_labels) is muted


def _hook(monkeypatch) -> list[dict]:
    """Webhook payloads sent, with queued tasks run in-process through the real task."""
    sent = _webhook_recorder(monkeypatch)
    monkeypatch.setitem(current_app.conf, "task_always_eager", True)
    ResponsePlaybook.objects.create(
        name="page", action="webhook", target="http://hooks.example/alert", min_severity="info"
    )
    return sent


def test_a_silenced_incident_is_found_but_paged_only_once_the_silence_ends(
    monkeypatch, django_capture_on_commit_callbacks
):
    sent = _hook(monkeypatch)
    series, ts, values = _synthetic("svc.errors.deploy", n=900, seed=2)
    values[840:] += 40.0  # an outage that begins during the deploy and outlasts it
    deploy = Silence.objects.create(
        series_pattern="svc.errors.*",
        starts_at=to_datetime(ts[800]),
        ends_at=to_datetime(ts[852]),
        comment="deploy of the errors service",
    )
    # A silence for other labels mutes nothing here.
    Silence.objects.create(
        series_pattern="*",
        labels={"env": "staging"},
        starts_at=to_datetime(ts[0]),
        ends_at=to_datetime(ts[-1]) + timedelta(days=1),
        comment="staging is noisy",
    )
    insert_samples([series.pk] * 850, ts[:850], values[:850])
    with django_capture_on_commit_callbacks(execute=True):
        first = _score(series, ts[849])
    assert first["silenced"] == 1 and first["responses"] == 0  # in the job-run record
    anomaly = Anomaly.objects.get(series=series)
    assert anomaly.ended_at is None  # found and listed while silenced...
    assert not ResponseExecution.objects.exists() and sent == []  # ...but nobody was paged
    insert_samples([series.pk] * 10, ts[850:860], values[850:860])
    with django_capture_on_commit_callbacks(execute=True):
        second = _score(series, ts[859])
    assert second["silenced"] == 0 and second["responses"] == 1
    assert ResponseExecution.objects.get().anomaly_id == anomaly.pk
    assert [p["status"] for p in sent] == ["firing"]
    assert not deploy.is_active(to_datetime(ts[859]))


def test_an_incident_that_ended_under_a_silence_is_never_announced_one_before_it_is():
    ResponsePlaybook.objects.create(
        name="mail", action="email", target="ops@example.com", min_severity="info"
    )
    now = timezone.now()
    series = series_ensure(name="svc.batch")
    ended_quietly = AnomalyFactory(
        series=series,
        started_at=now - timedelta(minutes=40),
        last_seen_at=now - timedelta(minutes=25),
        ended_at=now - timedelta(minutes=20),
    )
    ended_after = AnomalyFactory(
        series=series,
        started_at=now - timedelta(minutes=30),
        last_seen_at=now - timedelta(minutes=5),
        ended_at=now - timedelta(minutes=2),
    )
    ended_before = AnomalyFactory(
        series=series,
        started_at=now - timedelta(minutes=58),
        last_seen_at=now - timedelta(minutes=55),
        ended_at=now - timedelta(minutes=50),
    )
    # In force from 45 to 10 minutes ago: the first ended under it, the second after it,
    # the third before it began.
    _silence("svc.*", start=-timedelta(minutes=45), end=-timedelta(minutes=10))
    ids = {ended_quietly.pk, ended_after.pk, ended_before.pk}
    assert queue_responses(ids, now=now) == (2, 1)  # queued, held back by the silence
    sent_for = set(ResponseExecution.objects.values_list("anomaly_id", flat=True))
    assert sent_for == {ended_after.pk, ended_before.pk}


def test_operators_create_and_expire_silences_admins_edit_them(client_with_role):
    now = timezone.now()
    # What the new silence will cover, shown in its answer: only the first of these.
    covered = AnomalyFactory(series=series_ensure(name="checkout.latency", labels={"env": "prod"}))
    AnomalyFactory(series=series_ensure(name="checkout.errors", labels={"env": "staging"}))
    AnomalyFactory(
        series=series_ensure(name="checkout.cpu", labels={"env": "prod"}),
        status=Anomaly.Status.RESOLVED,
    )
    body = {
        "series_pattern": "checkout.*",
        "labels": {"env": "prod"},
        "ends_at": (now + timedelta(hours=1)).isoformat(),
        "comment": "release 4.2",
    }
    assert client_with_role("viewer").post(BASE, body, format="json").status_code == 403
    created = client_with_role("operator").post(BASE, body, format="json")
    assert created.status_code == 201, created.json()
    silence = created.json()
    assert silence["active"] is True and silence["created_by"]
    assert silence["open_anomalies"] == [covered.pk]
    url = f"{BASE}{silence['id']}/"
    longer = {"ends_at": (now + timedelta(hours=3)).isoformat()}
    assert client_with_role("operator").patch(url, longer, format="json").status_code == 403
    assert client_with_role("admin").patch(url, longer, format="json").status_code == 200
    assert overview_section()["active_silences"] == 1
    listed = client_with_role("viewer").get(BASE, {"active": "true"}).json()
    assert [s["id"] for s in listed["results"]] == [silence["id"]]

    expired = client_with_role("operator").post(f"{url}expire")
    assert expired.status_code == 200 and expired.json()["active"] is False
    assert client_with_role("viewer").get(BASE, {"active": "true"}).json()["results"] == []
    again = client_with_role("operator").post(f"{url}expire")
    assert again.status_code == 400 and "ends_at" in again.json()
    assert overview_section()["active_silences"] == 0


def test_expiring_a_silence_not_yet_begun_ends_it_before_it_starts(client_with_role):
    later = _silence(start=timedelta(hours=2), end=timedelta(hours=3))
    response = client_with_role("operator").post(f"{BASE}{later.pk}/expire")
    assert response.status_code == 200
    later.refresh_from_db()
    assert later.starts_at == later.ends_at <= timezone.now()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"comment": "  "}, "comment"),
        ({"series_pattern": ""}, "series_pattern"),
        ({"labels": {"env": 3}}, "labels"),
        ({"ends_at": "2020-01-01T00:00:00Z"}, "ends_at"),  # already over
        ({"starts_at": "2100-01-02T00:00:00Z", "ends_at": "2100-01-01T00:00:00Z"}, "ends_at"),
        ({"ends_at": "tomorrow"}, "ends_at"),
    ],
)
def test_bad_silences_are_refused_naming_the_field(client_with_role, change, field):
    body = {
        "series_pattern": "checkout.*",
        "ends_at": (timezone.now() + timedelta(hours=1)).isoformat(),
        "comment": "release 4.2",
        **change,
    }
    response = client_with_role("operator").post(BASE, body, format="json")
    assert response.status_code == 400 and field in response.json()
    assert not Silence.objects.exists()


def test_the_active_filter_is_checked(client_with_role):
    response = client_with_role("viewer").get(BASE, {"active": "maybe"})
    assert response.status_code == 400 and "active" in response.json()


def test_detect_shows_which_silence_mutes_an_anomaly(client_with_role):
    now = timezone.now()
    muted = AnomalyFactory(series=series_ensure(name="checkout.latency"))
    loud = AnomalyFactory(series=series_ensure(name="search.latency"))
    # Over before the silence began: the silence is not its business.
    earlier = AnomalyFactory(
        series=series_ensure(name="checkout.errors"),
        started_at=now - timedelta(hours=5),
        last_seen_at=now - timedelta(hours=4),
        ended_at=now - timedelta(hours=4),
    )
    silence = _silence("checkout.*", start=-timedelta(minutes=5), end=timedelta(hours=1))
    _silence("*", start=-timedelta(hours=3), end=-timedelta(hours=2))  # over: mutes nothing
    body = client_with_role("viewer").get("/admin/api/phase3/anomaly/detect").json()
    by_id = {a["id"]: a["silenced_by"] for a in body["anomalies"]}
    assert by_id == {muted.pk: [silence.pk], loud.pk: [], earlier.pk: []}


def test_admin_expires_selected_silences_and_records_who_made_one(admin_client):
    add = admin_client.post(
        reverse("admin:anomalies_silence_add"),
        {
            "series_pattern": "db.*",
            "labels": "{}",
            "starts_at_0": "2026-01-01",
            "starts_at_1": "00:00:00",
            "ends_at_0": "2100-01-01",
            "ends_at_1": "00:00:00",
            "weekdays": "[]",
            "time_zone": "UTC",
            "comment": "database migration",
        },
    )
    assert add.status_code == 302, add.content
    silence = Silence.objects.get()
    assert silence.created_by == "admin" and silence.is_active(timezone.now())
    past = admin_client.post(
        reverse("admin:anomalies_silence_add"),
        {
            "series_pattern": "db.*",
            "labels": "{}",
            "starts_at_0": "2020-01-01",
            "starts_at_1": "00:00:00",
            "ends_at_0": "2020-01-02",
            "ends_at_1": "00:00:00",
            "weekdays": "[]",
            "time_zone": "UTC",
            "comment": "typo",
        },
    )
    assert past.status_code == 200 and Silence.objects.count() == 1  # the form says why
    admin_client.post(
        reverse("admin:anomalies_silence_changelist"),
        {"action": "expire", "_selected_action": [silence.pk]},
    )
    silence.refresh_from_db()
    assert not silence.is_active(timezone.now())


def test_an_operator_silences_an_anomalys_series_and_only_that_series(client_with_role):
    series = series_ensure(name="jobs[nightly]", labels={"env": "prod"})
    anomaly = AnomalyFactory(series=series)
    url = f"/admin/api/phase3/anomaly/anomalies/{anomaly.pk}/silence"
    body = {"minutes": 120, "comment": "fixing the cron"}
    assert client_with_role("viewer").post(url, body, format="json").status_code == 403
    response = client_with_role("operator").post(url, body, format="json")
    assert response.status_code == 201, response.json()
    silence = Silence.objects.get(pk=response.json()["id"])
    assert silence.is_active(timezone.now())
    assert timedelta(minutes=119) < silence.ends_at - silence.starts_at <= timedelta(minutes=120)
    # The name is a pattern, escaped: `[nightly]` is not a character class here.
    assert silence.matches("jobs[nightly]", {"env": "prod"})
    assert not silence.matches("jobsn", {"env": "prod"})
    assert not silence.matches("jobs[nightly]", {"env": "staging"})
    # Exactly its labels: a series that also carries them is another series.
    assert not silence.matches("jobs[nightly]", {"env": "prod", "shard": "2"})
    wider = AnomalyFactory(
        series=series_ensure(name="jobs[nightly]", labels={"env": "prod", "shard": "2"})
    )
    listed = client_with_role("viewer").get(f"/admin/api/phase3/anomaly/silences/{silence.pk}")
    assert listed.json()["open_anomalies"] == [anomaly.pk] and wider.pk != anomaly.pk
    anomaly.refresh_from_db()
    assert anomaly.status == Anomaly.Status.OPEN  # muting is not acknowledging


def test_a_series_with_the_longest_name_of_pattern_characters_can_be_silenced(client_with_role):
    anomaly = AnomalyFactory(series=series_ensure(name="[" * 200))  # escaped: 600 characters
    url = f"/admin/api/phase3/anomaly/anomalies/{anomaly.pk}/silence"
    response = client_with_role("operator").post(url, {"minutes": 5, "comment": "x"}, format="json")
    assert response.status_code == 201
    assert Silence.objects.get().matches("[" * 200, {})


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"minutes": 0, "comment": "x"}, "minutes"),
        ({"minutes": 7 * 24 * 60 + 1, "comment": "x"}, "minutes"),
        ({"minutes": 60}, "comment"),
        ({"minutes": 60, "comment": ""}, "comment"),
    ],
)
def test_silencing_from_an_anomaly_checks_its_body(client_with_role, body, field):
    anomaly = AnomalyFactory(series=series_ensure(name="svc.cron"))
    url = f"/admin/api/phase3/anomaly/anomalies/{anomaly.pk}/silence"
    response = client_with_role("operator").post(url, body, format="json")
    assert response.status_code == 400 and field in response.json()
    assert not Silence.objects.exists()


def test_the_admin_silences_each_selected_series_once(admin_client):
    a = AnomalyFactory(series=series_ensure(name="svc.flapping"))
    b = AnomalyFactory(series=a.series)
    c = AnomalyFactory(series=series_ensure(name="svc.other"))
    admin_client.post(
        reverse("admin:anomalies_anomaly_changelist"),
        {"action": "silence_two_hours", "_selected_action": [a.pk, b.pk, c.pk]},
    )
    assert sorted(Silence.objects.values_list("series_pattern", flat=True)) == [
        "svc.flapping",
        "svc.other",
    ]
    assert {s.created_by for s in Silence.objects.all()} == {"admin"}


def test_a_preview_shows_what_a_silence_would_cover_without_making_it(client_with_role):
    prod = {"env": "prod"}
    latency = series_ensure(name="checkout.latency", labels=prod)
    series_ensure(name="checkout.errors", labels=prod)
    series_ensure(name="checkout.cpu", labels={"env": "staging"})
    series_ensure(name="search.latency", labels=prod)
    ongoing = AnomalyFactory(series=latency)
    url = BASE + "preview"
    body = {"series_pattern": "checkout.*", "labels": prod}
    assert client_with_role("viewer").post(url, body, format="json").status_code == 403
    response = client_with_role("operator").post(url, body, format="json")
    assert response.status_code == 200, response.json()
    assert response.json() == {
        "series": 2,
        "series_names": ["checkout.errors{env=prod}", "checkout.latency{env=prod}"],
        "open_anomalies": [ongoing.pk],
    }
    typo = client_with_role("operator").post(url, {"series_pattern": "chekout.*"}, format="json")
    assert typo.json()["series"] == 0
    for bad, field in (
        ({"series_pattern": ""}, "series_pattern"),
        ({"series_pattern": "*", "labels": {"env": 1}}, "labels"),
    ):
        refused = client_with_role("operator").post(url, bad, format="json")
        assert refused.status_code == 400 and field in refused.json()
    assert not Silence.objects.exists()


def test_a_silence_made_while_a_page_waits_to_retry_holds_that_retry_back(
    monkeypatch, django_capture_on_commit_callbacks
):
    # The first attempt failed; the operator silences the series before the retry runs.
    # The retry went out anyway: a silence was only looked at when the page was queued.
    from anomalies import services
    from anomalies.services.playbooks import queue_responses

    sent = _webhook_recorder(monkeypatch)
    queued = []
    monkeypatch.setattr("anomalies.tasks.execute_response.delay", queued.append)
    anomaly = AnomalyFactory(series=series_ensure(name="svc.retry.muted"))
    hook = ResponsePlaybook.objects.create(name="hook", action="webhook", target="http://h.ex/")
    execution = ResponseExecution.objects.create(
        playbook=hook, anomaly=anomaly, status="retrying", attempts=1
    )
    silence = services.silence_anomaly_series(
        anomaly_id=anomaly.pk, minutes=60, comment="fixing it", by="ops"
    )
    assert services.response_execute(execution_id=execution.pk) == {"cancelled": 1}
    execution.refresh_from_db()
    assert sent == [] and execution.status == "cancelled" and execution.attempts == 1
    assert f"silence {silence.pk}" in execution.error
    # A silence on other series changes nothing; once this one ends, the anomaly, still
    # going on, is paged on the next scoring run, like any other held back by a silence.
    services.silence_expire(silence_id=silence.pk)
    _silence("other.*", start=-timedelta(minutes=1), end=timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=True):
        queue_responses({anomaly.pk}, now=timezone.now())
    assert queued == [execution.pk]
    services.response_execute(execution_id=execution.pk)
    execution.refresh_from_db()
    assert execution.status == "succeeded" and [p["status"] for p in sent] == ["firing"]


def test_a_resolved_notice_still_goes_out_under_a_silence_made_after_the_page(monkeypatch):
    # The receiver was paged before the silence began: its incident must still close.
    from anomalies import services

    sent = _webhook_recorder(monkeypatch)
    anomaly = AnomalyFactory(series=series_ensure(name="svc.retry.closes"))
    hook = ResponsePlaybook.objects.create(name="hook", action="webhook", target="http://h.ex/")
    execution = ResponseExecution.objects.create(playbook=hook, anomaly=anomaly)
    services.response_execute(execution_id=execution.pk)
    services.silence_anomaly_series(anomaly_id=anomaly.pk, minutes=60, comment="fixing it")
    Anomaly.objects.filter(pk=anomaly.pk).update(ended_at=timezone.now())
    assert services.response_notify_resolved(execution_id=execution.pk) == {"notified": 1}
    assert [p["status"] for p in sent] == ["firing", "resolved"]
