"""One page per incident: a playbook does not page the effects of a cause it has paged.

Unit cases build anomalies and their root-cause rows by hand and queue responses through
the real tasks (run eagerly, e-mail through Django's locmem backend); the last test runs
the scoring job through a demo-world incident, minute by minute as beat would.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from anomalies import responses, services
from anomalies.models import (
    Anomaly,
    ResponseExecution,
    ResponsePlaybook,
    RootCauseCandidate,
    Silence,
)
from anomalies.responses import alertmanager_payload, slack_payload
from anomalies.services.playbooks import queue_responses
from telemetry.demo import DemoConfig, seed_demo
from telemetry.models import DemoIncident
from telemetry.selectors import to_datetime
from telemetry.services import series_ensure
from tests.anomalies.factories import AnomalyFactory

pytestmark = pytest.mark.django_db

INHIBITED = ResponseExecution.Status.INHIBITED


def _anomaly(name: str, at, severity: str = "critical", **labels) -> Anomaly:
    return AnomalyFactory(
        series=series_ensure(name=name, labels=labels), started_at=at, severity=severity
    )


def _blames(effect: Anomaly, cause: Anomaly, rank: int = 1) -> None:
    RootCauseCandidate.objects.create(
        anomaly=effect,
        series=cause.series,
        cause_anomaly=cause,
        rank=rank,
        score=1.0,
        lead_seconds=(effect.started_at - cause.started_at).total_seconds(),
    )


def _statuses(playbook: str) -> dict[str, str]:
    return {
        str(e.anomaly.series): e.status
        for e in ResponseExecution.objects.filter(playbook__name=playbook).select_related(
            "anomaly__series"
        )
    }


def test_the_effects_of_a_paged_cause_are_inhibited_not_paged(
    eager, client_with_role, admin_client, monkeypatch
):
    t0 = timezone.now()
    cause = _anomaly("db.connections.active", t0 - timedelta(minutes=10))
    ResponsePlaybook.objects.create(name="pager", action="email", target="oncall@example.com")
    ResponsePlaybook.objects.create(
        name="audit", action="email", target="audit@example.com", inhibit_effects=False
    )
    eager([cause], t0 - timedelta(minutes=9))
    assert len(mail.outbox) == 2
    effects = [
        _anomaly("http.latency.p95", t0, endpoint=e) for e in ("/api/feed", "/api/search", "/x")
    ]
    for effect in effects:
        _blames(effect, cause)
    # A chain: the error ratio's likeliest cause is the feed's latency, itself inhibited.
    errors = _anomaly("http.errors.ratio", t0 + timedelta(minutes=1))
    _blames(errors, effects[0])
    eager([*effects, errors], t0 + timedelta(minutes=2))
    pager = _statuses("pager")
    assert pager.pop("db.connections.active") == ResponseExecution.Status.SUCCEEDED
    assert set(pager.values()) == {INHIBITED} and len(pager) == 4
    # The playbook that does not inhibit pages every anomaly.
    assert set(_statuses("audit").values()) == {ResponseExecution.Status.SUCCEEDED}
    to = [m.to for m in mail.outbox]
    assert to.count(["oncall@example.com"]) == 1 and to.count(["audit@example.com"]) == 5
    feed = ResponseExecution.objects.get(playbook__name="pager", anomaly=effects[0])
    assert feed.result["inhibited_by"] == cause.pk and "db.connections.active" in feed.error
    chained = ResponseExecution.objects.get(playbook__name="pager", anomaly=errors)
    assert chained.result["inhibited_by"] == effects[0].pk
    # Later runs only count the repeats; nothing more is sent.
    eager([cause, *effects, errors], t0 + timedelta(minutes=3))
    assert len(mail.outbox) == 6
    assert ResponseExecution.objects.get(pk=feed.pk).repeats == 1
    # The cause's record names what it explains (the chained one is put down to the feed).
    api = client_with_role("viewer").get(f"/admin/api/phase3/anomaly/anomalies/{cause.pk}")
    assert api.json()["explains"] == sorted(e.pk for e in effects)
    listed = client_with_role("viewer").get("/admin/api/phase3/anomaly/anomalies").json()
    by_id = {a["id"]: a["explains"] for a in listed["results"]}
    assert by_id[effects[0].pk] == [errors.pk] and by_id[errors.pk] == []
    # A reminder or an escalation of the cause's page says how large the incident is.
    playbook = ResponsePlaybook.objects.get(name="pager")
    page = alertmanager_payload(cause, playbook)
    note = page["alerts"][0]["annotations"]["description"]
    # Through chains (the error ratio is put down to the feed's latency), by onset.
    assert note.endswith(
        "; likeliest root cause of 4 other anomalies: http.latency.p95{endpoint=/api/feed}, "
        "http.latency.p95{endpoint=/api/search}, http.latency.p95{endpoint=/x}, "
        "http.errors.ratio"
    )
    assert (
        "likeliest root cause of 1 other anomaly: http.errors.ratio"
        in slack_payload(effects[0])["blocks"][0]["text"]["text"]
    )
    # The page's group carries what the playbook held back as alerts of their own, by
    # onset, each with its own labels and fingerprint (Alertmanager's group of alerts).
    assert [(a["labels"]["series"], a["labels"].get("endpoint")) for a in page["alerts"]] == [
        ("db.connections.active", None),
        ("http.latency.p95", "/api/feed"),
        ("http.latency.p95", "/api/search"),
        ("http.latency.p95", "/x"),
        ("http.errors.ratio", None),
    ]
    assert len({a["fingerprint"] for a in page["alerts"]}) == 5
    assert page["commonLabels"] == {"alertname": "Phase3Anomaly", "severity": "critical"}
    assert page["alerts"][1]["annotations"]["description"].endswith(
        f"; held back, part of the incident paged as anomaly {cause.pk} on db.connections.active"
    )
    # A group larger than a notification holds is cut, and says how much was left out.
    monkeypatch.setattr(responses, "MAX_GROUP_ALERTS", 3)
    cut = alertmanager_payload(cause, playbook)
    assert len(cut["alerts"]) == 3 and cut["truncatedAlerts"] == 2
    assert cut["alerts"] == page["alerts"][:3]
    # The playbook that pages every effect on its own sends the cause alone.
    audit = ResponsePlaybook.objects.get(name="audit")
    assert len(alertmanager_payload(cause, audit)["alerts"]) == 1
    note = alertmanager_payload(errors, playbook)["alerts"][0]["annotations"]["description"]
    assert "other anomal" not in note
    # An effect's notifications say what it is put down to.
    assert note.endswith(
        f"; likeliest root cause: http.latency.p95{{endpoint=/api/feed}} (anomaly "
        f"{effects[0].pk}, critical, abnormal since {effects[0].started_at:%Y-%m-%d %H:%M} UTC)"
    )
    assert (
        "likeliest root cause:"
        not in alertmanager_payload(cause, playbook)["alerts"][0]["annotations"]["description"]
    )
    # The detect view reads the window as one incident of five anomalies.
    since = (t0 - timedelta(hours=1)).isoformat()
    detect = (
        client_with_role("viewer").get("/admin/api/phase3/anomaly/detect", {"since": since}).json()
    )
    assert detect["count"] == 5 and detect["incident_count"] == 1
    (incident,) = detect["incidents"]
    assert incident["cause"] == cause.pk and incident["cause_series"] == "db.connections.active"
    assert incident["anomalies"] == 5 and incident["ongoing"] and incident["severity"] == "critical"
    assert incident["anomaly_ids"][0] == cause.pk and set(incident["anomaly_ids"]) == {
        cause.pk,
        errors.pk,
        *(e.pk for e in effects),
    }
    page = admin_client.get(f"/admin/anomalies/anomaly/{cause.pk}/change/").content.decode()
    assert "Likeliest cause of" in page and f"/admin/anomalies/anomaly/{effects[2].pk}/" in page


def test_the_receiver_of_a_cause_hears_when_its_incident_grows(eager, monkeypatch):
    """Alertmanager's group_interval: effects held back since the last notice are told in
    one update, no sooner than five minutes after it, naming them."""
    from anomalies.responses import NAMED_EFFECTS

    t0 = timezone.now()
    cause = _anomaly("db.connections.active", t0 - timedelta(minutes=1))
    ResponsePlaybook.objects.create(name="pager", action="email", target="oncall@example.com")
    eager([cause], t0)  # the page: sent now (the clock of `notified_at` is the real one)
    page = ResponseExecution.objects.get(anomaly=cause)
    first = [_anomaly("http.latency.p95", t0, endpoint=f"/e{i}") for i in range(3)]
    for effect in first:
        _blames(effect, cause)
    eager([cause, *first], t0 + timedelta(minutes=2))
    assert len(mail.outbox) == 1  # held back, and too soon after the page to tell
    eager([cause, *first], t0 + timedelta(minutes=6))
    update = mail.outbox[-1]
    assert len(mail.outbox) == 2 and update.subject.startswith("Update: db.connections.active")
    assert "likeliest root cause of 3 other anomalies: http.latency.p95{endpoint=/e0}" in (
        update.body
    )
    page.refresh_from_db()
    assert page.notified_effects == 3 and page.status == ResponseExecution.Status.SUCCEEDED
    # Nothing new: nothing sent. More join: not before five minutes after the update.
    eager([cause, *first], t0 + timedelta(minutes=8))
    more = [
        _anomaly("http.errors.ratio", t0 + timedelta(minutes=8), endpoint=f"/e{i}")
        for i in range(5)
    ]
    for effect in more:
        _blames(effect, first[0])  # through the latency: they count for the database
    eager([cause, *more], t0 + timedelta(minutes=9))
    assert len(mail.outbox) == 2
    eager([cause], t0 + timedelta(minutes=12))
    assert len(mail.outbox) == 3 and f"and {8 - NAMED_EFFECTS} more" in mail.outbox[-1].body
    assert ResponseExecution.objects.get(pk=page.pk).notified_effects == 8
    # Effects that end are no longer counted, so a second wave is news again.
    Anomaly.objects.filter(pk__in=[a.pk for a in more]).update(ended_at=t0 + timedelta(minutes=13))
    eager([cause], t0 + timedelta(minutes=14))
    assert ResponseExecution.objects.get(pk=page.pk).notified_effects == 3
    wave = _anomaly("http.latency.p95", t0 + timedelta(minutes=20), endpoint="/late")
    _blames(wave, cause)
    # A silence on the cause holds the update back, and it goes out once it ends.
    silence = services.silence_anomaly_series(
        anomaly_id=cause.pk, minutes=30, comment="deploy", by="ops"
    )
    eager([cause, wave], t0 + timedelta(minutes=20))
    assert len(mail.outbox) == 3
    held = ResponseExecution.objects.get(pk=page.pk)
    assert held.notified_effects == 3 and "incident update not sent: held back" in held.error
    services.silence_expire(silence_id=silence.pk)
    eager([cause, wave], t0 + timedelta(minutes=21))
    assert len(mail.outbox) == 4 and "4 other anomalies" in mail.outbox[-1].body


@pytest.mark.parametrize(
    ("interval", "sent_by_minute"), [(900, {6: 0, 14: 0, 16: 1}), (None, {6: 0, 60: 0})]
)
def test_a_playbook_sets_how_often_its_incident_updates_go_out(eager, interval, sent_by_minute):
    t0 = timezone.now()
    cause = _anomaly("db.connections.active", t0 - timedelta(minutes=1))
    ResponsePlaybook.objects.create(
        name="pager", action="email", target="oncall@example.com", update_interval_seconds=interval
    )
    eager([cause], t0)
    effect = _anomaly("http.latency.p95", t0)
    _blames(effect, cause)
    for minutes, updates in sent_by_minute.items():
        eager([cause, effect], t0 + timedelta(minutes=minutes))
        assert len(mail.outbox) - 1 == updates, minutes


def test_an_incident_that_opens_in_one_run_pages_once(eager):
    t0 = timezone.now()
    cause = _anomaly("db.connections.active", t0 - timedelta(minutes=2))
    effects = [_anomaly("http.latency.p95", t0, endpoint=e) for e in ("/a", "/b")]
    for effect in effects:
        _blames(effect, cause)
    ResponsePlaybook.objects.create(name="pager", action="email", target="oncall@example.com")
    eager([*reversed(effects), cause], t0)  # the order given does not matter
    assert len(mail.outbox) == 1 and "db.connections.active" in mail.outbox[0].subject
    assert sorted(_statuses("pager").values()) == ["inhibited", "inhibited", "succeeded"]
    # The page named both effects: no update says it again (it did, five minutes later).
    assert "likeliest root cause of 2 other anomalies" in mail.outbox[0].body
    eager([cause, *effects], t0 + timedelta(minutes=6))
    assert len(mail.outbox) == 1


def test_an_effect_pages_when_it_is_worse_than_its_cause_or_outlives_it(eager):
    t0 = timezone.now()
    cause = _anomaly("db.connections.active", t0 - timedelta(minutes=10), severity="warning")
    ResponsePlaybook.objects.create(
        name="pager", action="email", target="oncall@example.com", min_severity="warning"
    )
    eager([cause], t0 - timedelta(minutes=9))
    worse = _anomaly("http.errors.ratio", t0, severity="critical")
    same = _anomaly("http.latency.p95", t0, severity="warning")
    _blames(worse, cause)
    _blames(same, cause)
    eager([worse, same], t0)
    assert _statuses("pager") == {
        "db.connections.active": "succeeded",
        "http.errors.ratio": "succeeded",  # the receiver was told of a warning only
        "http.latency.p95": "inhibited",
    }
    # The cause recovers. The latency, minutes behind it, is the incident's tail: not paged
    # while it is abnormal within half an hour of the cause, nor once it is calm again.
    Anomaly.objects.filter(pk=cause.pk).update(ended_at=t0 + timedelta(minutes=5))
    # (The cause was last abnormal at t0 - 10 minutes.)
    for seen, calm in ((6, None), (19, None), (21, 22)):
        Anomaly.objects.filter(pk=same.pk).update(
            last_seen_at=t0 + timedelta(minutes=seen),
            recovered_at=calm and t0 + timedelta(minutes=calm),
        )
        eager([Anomaly.objects.get(pk=same.pk)], t0 + timedelta(minutes=seen + 2))
        assert _statuses("pager")["http.latency.p95"] == "inhibited"
    # Abnormal again past that: its own problem, paged on its own now.
    Anomaly.objects.filter(pk=same.pk).update(
        last_seen_at=t0 + timedelta(minutes=24), recovered_at=None
    )
    eager([same], t0 + timedelta(minutes=24))
    assert _statuses("pager")["http.latency.p95"] == "succeeded"
    assert "http.latency.p95" in mail.outbox[-1].subject and len(mail.outbox) == 3


def test_how_long_an_effect_may_outlive_its_cause_is_the_playbooks_setting(eager, client_with_role):
    """A service that warms its caches for an hour after the database is back: its team
    keeps the endpoint's anomaly as the incident's tail for an hour, where the default
    half hour pages it as its own problem."""
    t0 = timezone.now()
    admin = client_with_role("admin")
    for name, grace in (("pager", None), ("patient", 3600), ("prompt", 0)):
        body = {"name": name, "action": "email", "target": f"{name}@example.com"}
        if grace is not None:
            body["effect_grace_seconds"] = grace
        created = admin.post("/admin/api/phase3/anomaly/playbooks", body, format="json")
        assert created.status_code == 201, created.content
        assert created.json()["effect_grace_seconds"] == (1800 if grace is None else grace)
    too_long = {"name": "x", "action": "email", "target": "x@example.com"}
    refused = admin.post(
        "/admin/api/phase3/anomaly/playbooks",
        {**too_long, "effect_grace_seconds": 86401},
        format="json",
    )
    assert refused.status_code == 400 and "effect_grace_seconds" in refused.json()
    cause = _anomaly("db.connections.active", t0 - timedelta(minutes=10))
    eager([cause], t0 - timedelta(minutes=9))
    endpoint = _anomaly("http.latency.p95", t0)
    _blames(endpoint, cause)
    eager([endpoint], t0)
    assert set(_statuses("pager").values()) == {"succeeded", "inhibited"}
    last_seen = cause.last_seen_at
    Anomaly.objects.filter(pk=cause.pk).update(ended_at=last_seen + timedelta(minutes=15))

    def abnormal_at(minutes: int) -> dict[str, str]:
        Anomaly.objects.filter(pk=endpoint.pk).update(
            last_seen_at=last_seen + timedelta(minutes=minutes)
        )
        eager([endpoint], last_seen + timedelta(minutes=minutes + 1))
        return {p: _statuses(p)["http.latency.p95"] for p in ("pager", "patient", "prompt")}

    held = {
        e.playbook.name: e.error
        for e in ResponseExecution.objects.filter(status=INHIBITED).select_related("playbook")
    }
    assert held["pager"].endswith("still abnormal 30 min after it recovers")
    assert held["patient"].endswith("still abnormal 1 h after it recovers")
    assert held["prompt"].endswith("sent if this anomaly outlives it")
    assert abnormal_at(20) == {"pager": "inhibited", "patient": "inhibited", "prompt": "succeeded"}
    assert abnormal_at(40) == {"pager": "succeeded", "patient": "inhibited", "prompt": "succeeded"}
    assert abnormal_at(61)["patient"] == "succeeded"


def test_only_a_cause_the_receiver_was_told_of_inhibits(eager):
    t0 = timezone.now()
    ResponsePlaybook.objects.create(name="pager", action="email", target="oncall@example.com")
    failed = _anomaly("db.connections.active", t0 - timedelta(minutes=10))
    ResponseExecution.objects.create(
        playbook=ResponsePlaybook.objects.get(), anomaly=failed, status="failed", attempts=4
    )
    after_failed = _anomaly("http.latency.p95", t0)
    _blames(after_failed, failed)
    # Its own likeliest cause (the earliest of its incident), or blamed only at rank 2.
    itself = _anomaly("queue.depth", t0)
    _blames(itself, itself)
    second = _anomaly("http.errors.ratio", t0)
    _blames(second, failed, rank=2)
    eager([after_failed, itself, second], t0)
    statuses = _statuses("pager")
    assert statuses.pop("db.connections.active") == "failed"
    assert set(statuses.values()) == {"succeeded"} and len(mail.outbox) == 3
    # A false positive explains nothing either.
    fp = _anomaly("cache.hit.ratio", t0)
    eager([fp], t0)
    services.anomaly_mark_false_positive(anomaly_id=fp.pk, by="ops")
    effect = _anomaly("cache.misses", t0 + timedelta(minutes=1))
    _blames(effect, fp)
    eager([effect], t0 + timedelta(minutes=1))
    assert _statuses("pager")["cache.misses"] == "succeeded"


def test_a_cause_resolved_while_still_abnormal_is_paged_again_and_keeps_holding(eager):
    """An operator resolves the database's anomaly while its series is still abnormal: the
    next run opens a new one there (a recurrence of a confirmed incident). It is the cause
    going on: the receiver hears it is abnormal again, and its twin and the endpoints,
    blamed on the resolved anomaly, stay held back behind it. Before, the new anomaly was
    held back behind its twin (itself held back behind the resolved one), and half an hour
    later the twin and the endpoint were paged as the resolved cause's tail ran out."""
    t0 = timezone.now()
    ResponsePlaybook.objects.create(name="pager", action="email", target="oncall@example.com")
    active = _anomaly("db.connections.active", t0)
    twin = _anomaly("db.connections.utilization", t0 + timedelta(microseconds=50))
    endpoint = _anomaly("http.latency.p95", t0 + timedelta(minutes=10))
    _blames(active, twin)
    _blames(twin, active)
    _blames(endpoint, active)
    eager([active, twin, endpoint], t0 + timedelta(minutes=11))
    assert len(mail.outbox) == 1
    services.anomaly_resolve(anomaly_id=active.pk, by="ops")
    Anomaly.objects.filter(pk=active.pk).update(
        ended_at=t0 + timedelta(minutes=20), last_seen_at=t0 + timedelta(minutes=20)
    )
    # Reopened with the onset traced back as before; the ranking names the twin.
    again = _anomaly("db.connections.active", t0 - timedelta(microseconds=50))
    _blames(again, twin)
    for minutes in (21, 40, 60, 90):
        now = t0 + timedelta(minutes=minutes)
        Anomaly.objects.filter(ended_at__isnull=True).update(last_seen_at=now)
        eager(list(Anomaly.objects.filter(ended_at__isnull=True)), now)
    assert [m.subject for m in mail.outbox] == ["db.connections.active is abnormal (critical)"] * 2
    # The new page names the incident the resolved anomaly had, and not its twin as its
    # cause (the twin was put down to the resolved one).
    assert mail.outbox[1].body.startswith(
        "observed 10 vs expected 1; methods: statistical, pattern; likeliest root cause of "
        "2 other anomalies: db.connections.utilization, http.latency.p95\n"
    )
    statuses = {
        e.anomaly_id: (e.status, e.result.get("inhibited_by"))
        for e in ResponseExecution.objects.all()
    }
    assert statuses[again.pk] == ("succeeded", None)
    # Recorded behind the cause going on, which is what the admin shows.
    assert statuses[twin.pk] == statuses[endpoint.pk] == ("inhibited", again.pk)


def test_a_silenced_cause_holds_its_effects_back_until_the_silence_ends(eager):
    """Maintenance on the database, silenced (`db.*`): the endpoints it slows down stay
    quiet too, as under Alertmanager's inhibit rules, whose sources include silenced
    alerts. Before, the database paged nothing and every endpoint paged on its own. If the
    database is still abnormal when the silence ends, it is paged, and its effects stay
    held back behind it."""
    t0 = timezone.now()
    ResponsePlaybook.objects.create(name="pager", action="email", target="oncall@example.com")
    silence = Silence.objects.create(
        series_pattern="db.*",
        starts_at=t0 - timedelta(minutes=1),
        ends_at=t0 + timedelta(hours=1),
        comment="maintenance",
    )
    db = _anomaly("db.connections.active", t0)
    endpoints = [_anomaly("http.latency.p95", t0, endpoint=e) for e in ("/a", "/b", "/c")]
    worse = _anomaly("http.errors.ratio", t0)
    db.severity = "warning"
    db.save()
    for e in endpoints:
        e.severity = "warning"
        e.save()
        _blames(e, db)
    _blames(worse, db)
    eager([db, *endpoints, worse], t0)
    # More severe than its cause: paged, as when the cause was paged at a lower severity.
    assert [m.subject for m in mail.outbox] == ["http.errors.ratio is abnormal (critical)"]
    held = ResponseExecution.objects.filter(status=INHIBITED)
    assert held.count() == 3 and all("a silence mutes it" in e.error for e in held)
    # (On the real clock: the page's task asks whether a silence mutes it when it runs.)
    services.silence_expire(silence_id=silence.pk)
    eager([db, *endpoints], timezone.now())
    assert mail.outbox[-1].subject == "db.connections.active is abnormal (warning)"
    assert len(mail.outbox) == 2 and held.count() == 3


def test_a_team_whose_playbook_does_not_match_the_cause_hears_of_its_incident_once(eager):
    """The DBAs' playbook matches `db.*`, the API team's `http.*`. A database outage pages
    the DBAs for the database and the API team for its first endpoint, not once per
    endpoint: that page says what it is put down to, and the team's other endpoints are
    held back behind it, unless one turns more severe than what the team was told."""
    t0 = timezone.now()
    ResponsePlaybook.objects.create(
        name="dba", action="email", target="dba@example.com", series_name="db.*"
    )
    ResponsePlaybook.objects.create(
        name="api", action="email", target="api@example.com", series_name="http.*"
    )
    db = _anomaly("db.connections.active", t0)
    first = _anomaly("http.latency.p95", t0 + timedelta(seconds=30), "warning", endpoint="/a")
    others = [
        _anomaly("http.latency.p95", t0 + timedelta(seconds=40), "warning", endpoint=e)
        for e in ("/b", "/c")
    ]
    for e in (first, *others):
        _blames(e, db)
    errors = _anomaly("http.errors.ratio", t0 + timedelta(seconds=50), "warning")
    _blames(errors, first)
    eager([db, first, *others, errors], t0 + timedelta(minutes=1))
    assert [(m.to, m.subject) for m in mail.outbox] == [
        (["dba@example.com"], "db.connections.active is abnormal (critical)"),
        (["api@example.com"], "http.latency.p95{endpoint=/a} is abnormal (warning)"),
    ]
    assert (
        f"likeliest root cause: db.connections.active (anomaly {db.pk}, critical, abnormal "
        "since " in mail.outbox[1].body
    )
    # ... and how large its incident is: the team's three endpoints and the error ratio.
    assert "), to which 4 ongoing anomalies are put down" in mail.outbox[1].body
    held = ResponseExecution.objects.filter(playbook__name="api", status=INHIBITED)
    assert {e.anomaly_id for e in held} == {o.pk for o in others} | {errors.pk}
    assert all(
        e.error.endswith(
            "goes on and this playbook paged its incident through another of its effects; "
            "sent if this anomaly is still abnormal 30 min after it recovers"
        )
        for e in held
        if e.anomaly_id != errors.pk
    )
    # Later runs send nothing more, until an endpoint turns worse than the team was told.
    eager([db, first, *others, errors], t0 + timedelta(minutes=2))
    assert len(mail.outbox) == 2
    Anomaly.objects.filter(pk=others[1].pk).update(severity="critical")
    eager([db, first, *others, errors], t0 + timedelta(minutes=3))
    assert [m.subject for m in mail.outbox[2:]] == [
        "http.latency.p95{endpoint=/c} is abnormal (critical)"
    ]
    # The endpoints paged recover while the database goes on: the team is paged for one
    # still down (an alert that is still firing), not left with only resolved ones.
    Anomaly.objects.filter(pk__in=[first.pk, others[1].pk]).update(
        ended_at=t0 + timedelta(minutes=4)
    )
    eager([db, others[0]], t0 + timedelta(minutes=5))
    assert [m.subject for m in mail.outbox[3:]] == [
        "http.latency.p95{endpoint=/b} is abnormal (warning)"
    ]


def test_the_effects_of_a_dismissed_cause_are_paged_as_one_group(eager):
    """The on-call dismisses the paged database anomaly as a false positive while the
    endpoints it was blamed for are still abnormal: they are no longer explained, so they
    are paged, but as one group, as Alertmanager groups the alerts of one incident: the
    first now, the others held back while a page for one of them goes on. Before, every
    endpoint was paged at once."""
    t0 = timezone.now()
    ResponsePlaybook.objects.create(name="pager", action="email", target="oncall@example.com")
    db = _anomaly("db.connections.active", t0)
    endpoints = [
        _anomaly("http.latency.p95", t0 + timedelta(seconds=10 * i), endpoint=f"/{i}")
        for i in range(1, 4)
    ]
    for e in endpoints:
        _blames(e, db)
    eager([db, *endpoints], t0 + timedelta(minutes=1))
    assert len(mail.outbox) == 1
    services.anomaly_mark_false_positive(anomaly_id=db.pk, by="ops")
    eager(endpoints, t0 + timedelta(minutes=2))
    assert [m.subject for m in mail.outbox[1:]] == [
        "http.latency.p95{endpoint=/1} is abnormal (critical)"
    ]
    assert f"(anomaly {db.pk}, critical, dismissed as a false positive" in mail.outbox[1].body
    held = ResponseExecution.objects.filter(status=INHIBITED).order_by("anomaly__started_at")
    assert [e.anomaly_id for e in held] == [endpoints[1].pk, endpoints[2].pk]
    assert all("was dismissed as a false positive" in e.error for e in held)
    # The paged one recovers; the next still abnormal is paged, and holds the last back.
    Anomaly.objects.filter(pk=endpoints[0].pk).update(ended_at=t0 + timedelta(minutes=3))
    eager(endpoints[1:], t0 + timedelta(minutes=4))
    assert [m.subject for m in mail.outbox[2:]] == [
        "http.latency.p95{endpoint=/2} is abnormal (critical)"
    ]
    assert ResponseExecution.objects.filter(status=INHIBITED).count() == 1


def test_a_team_paged_through_one_effect_hears_when_the_incident_grows(eager):
    """The API team was paged for its first endpoint of a database outage: more of its
    endpoints going down behind the database is news to it, told in one update no sooner
    than five minutes after the page, as a cause's receiver hears of its effects."""
    t0 = timezone.now()
    ResponsePlaybook.objects.create(
        name="dba", action="email", target="dba@example.com", series_name="db.*"
    )
    ResponsePlaybook.objects.create(
        name="api", action="email", target="api@example.com", series_name="http.*"
    )
    db = _anomaly("db.connections.active", t0 - timedelta(minutes=1))
    first = _anomaly("http.latency.p95", t0, endpoint="/a")
    _blames(first, db)
    eager([db, first], t0)  # the pages: sent now (the clock of `notified_at` is the real one)
    assert [m.to for m in mail.outbox] == [["dba@example.com"], ["api@example.com"]]
    page = ResponseExecution.objects.get(playbook__name="api")
    assert page.notified_effects == 1  # the incident its page named: this endpoint
    more = [_anomaly("http.latency.p95", t0, endpoint=e) for e in ("/b", "/c")]
    for effect in more:
        _blames(effect, db)
    eager([db, first, *more], t0 + timedelta(minutes=2))
    assert len(mail.outbox) == 2  # held back, and too soon to tell
    eager([db, first, *more], t0 + timedelta(minutes=6))
    # The DBAs held nothing back, but the endpoints are not theirs to page: that the
    # database now takes three of them down is news to them too.
    api, dba = sorted(mail.outbox[2:], key=lambda m: m.to)
    assert api.to == ["api@example.com"]
    assert api.subject == "Update: http.latency.p95{endpoint=/a} is abnormal (critical)"
    assert "to which 3 ongoing anomalies are put down" in api.body
    assert dba.to == ["dba@example.com"]
    assert dba.subject == "Update: db.connections.active is abnormal (critical)"
    assert all(f"endpoint={e}" in dba.body for e in ("/a", "/b", "/c"))
    # Nothing new: nothing more.
    eager([db, first, *more], t0 + timedelta(minutes=12))
    assert len(mail.outbox) == 4
    # To a webhook, the API team's page is the group of its endpoints it held back behind
    # the database; the DBAs' is the database alone (the endpoints are not theirs).
    api, dba = (ResponsePlaybook.objects.get(name=n) for n in ("api", "dba"))
    group = alertmanager_payload(first, api)["alerts"]
    assert [a["labels"]["endpoint"] for a in group] == ["/a", "/b", "/c"]
    assert len(alertmanager_payload(db, dba)["alerts"]) == 1


def test_a_playbook_paged_for_each_effect_gets_no_incident_update(eager):
    """A playbook that matches the effects and holds none back (they are more severe than
    the warning it was paged for) pages each on its own: an update naming them would
    tell the receiver what it was already paged for."""
    t0 = timezone.now()
    ResponsePlaybook.objects.create(
        name="pager", action="email", target="oncall@example.com", min_severity="warning"
    )
    db = _anomaly("db.connections.active", t0 - timedelta(minutes=1), severity="warning")
    eager([db], t0)
    effects = [_anomaly("http.latency.p95", t0, endpoint=e) for e in ("/a", "/b")]
    for effect in effects:
        _blames(effect, db)
    eager([db, *effects], t0 + timedelta(minutes=1))
    assert len(mail.outbox) == 3 and set(_statuses("pager").values()) == {"succeeded"}
    eager([db, *effects], t0 + timedelta(minutes=7))
    assert len(mail.outbox) == 3


def test_task_playbooks_run_for_every_anomaly(django_capture_on_commit_callbacks):
    t0 = timezone.now()
    cause = _anomaly("db.connections.active", t0 - timedelta(minutes=10))
    effect = _anomaly("http.latency.p95", t0)
    _blames(effect, cause)
    ResponsePlaybook.objects.create(name="scale", action="celery_task", target="scaling.evaluate")
    with django_capture_on_commit_callbacks(execute=False):
        queue_responses({cause.pk}, now=t0)
        queue_responses({effect.pk}, now=t0)
    assert set(_statuses("scale").values()) == {"pending"}


def test_a_demo_incident_pages_the_on_call_once(
    empty_telemetry, eager, django_capture_on_commit_callbacks, monkeypatch
):
    """The job, run every five minutes through the demo's database incident and three
    hours past its end: every endpoint's latency, error ratio and database time goes
    critical within minutes, and recovers minutes after the database does.
    The clock is the run's, so that what is sent is stamped in the incident's time."""
    clock = [timezone.now()]
    monkeypatch.setattr(timezone, "now", lambda: clock[0])
    seed_demo(DemoConfig(days=7, users=20, seed=1, end=1_795_000_200.0))
    incident = max(DemoIncident.objects.all(), key=lambda i: i.effect_series.count())
    for name, inhibit in (("pager", True), ("everything", False)):
        ResponsePlaybook.objects.create(
            name=name,
            action="email",
            target=f"{name}@example.com",
            min_severity="critical",
            inhibit_effects=inhibit,
        )
    start = incident.start.timestamp()
    services.anomalies_score_recent(now=to_datetime(start - 3600))
    for minutes in range(-55, 240, 5):
        clock[0] = to_datetime(start + 60 * minutes)
        with django_capture_on_commit_callbacks(execute=True):
            services.anomalies_score_recent(now=clock[0])
    told = [m for m in mail.outbox if m.to == ["pager@example.com"]]
    pages = [m for m in told if not m.subject.startswith("Update: ")]
    updates = [m for m in told if m.subject.startswith("Update: ")]
    everything = [m for m in mail.outbox if m.to == ["everything@example.com"]]
    critical = Anomaly.objects.filter(
        severity="critical",
        started_at__gte=incident.start - timedelta(minutes=30),
        started_at__lte=incident.end,
    ).count()
    print(
        f"{incident.name}: {critical} critical anomalies, {len(everything)} pages without "
        f"inhibition, {len(pages)} with, and {len(updates)} updates naming the others"
    )
    assert len(everything) >= 10 and len(pages) <= 2
    assert incident.cause_series.name in pages[0].subject
    # The page came before the endpoints' anomalies; one update names them. (Counting
    # the anomalies this playbook held back instead, every effect that turned critical
    # later sent another update naming the same 23.)
    assert len(updates) == 1
    assert all(incident.cause_series.name in m.subject for m in updates)
    members = Anomaly.objects.filter(
        started_at__gte=incident.start - timedelta(minutes=30), started_at__lte=incident.end
    )
    assert f"likeliest root cause of {members.count() - 1} other anomalies" in updates[0].body
    # Run past the incident's end: its effects recover within minutes of the cause (they
    # used to stay "ongoing" for hours on the memory of the averages), so none is paged
    # as the cause resolves, and the month's time to recover reads the incident's hour.
    assert not members.filter(ended_at__isnull=True).exists()
    assert all(a.ended_at - a.started_at < timedelta(hours=2) for a in members)


@pytest.mark.django_db(transaction=True)
def test_playbooks_written_before_inhibition_keep_paging_every_anomaly():
    """A receiver may open one ticket per anomaly: an upgrade must not start inhibiting a
    playbook its author wrote without the setting. New playbooks inhibit by default."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("anomalies", "0014_detection_tuning")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps.get_model("anomalies", "ResponsePlaybook")
    old.objects.create(name="tickets", action="webhook", target="https://tickets.example/hook")
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert ResponsePlaybook.objects.get(name="tickets").inhibit_effects is False
    new = ResponsePlaybook.objects.create(name="pager", action="email", target="a@example.com")
    assert new.inhibit_effects is True


def test_two_anomalies_that_blame_each_other_page_once_at_the_higher_severity(eager):
    # A tie at rank 1 (one signal seen twice): each is the other's likeliest cause. Judged
    # by onset alone, the first paged at info and the second, a warning, paged again.
    t0 = timezone.now()
    users = _anomaly("users.active", t0, severity="info")
    rate = _anomaly("http.requests.rate", t0 + timedelta(seconds=20), severity="warning")
    _blames(users, rate)
    _blames(rate, users)
    ResponsePlaybook.objects.create(
        name="pager", action="email", target="oncall@example.com", min_severity="info"
    )
    eager([users, rate], t0 + timedelta(minutes=1))
    assert _statuses("pager") == {"http.requests.rate": "succeeded", "users.active": "inhibited"}
    assert len(mail.outbox) == 1 and "(warning)" in mail.outbox[0].subject
    # Each is the other's likeliest cause: one signal seen twice, so neither names the other.
    assert "likeliest root cause:" not in mail.outbox[0].body
