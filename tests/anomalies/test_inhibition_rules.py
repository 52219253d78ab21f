"""Inhibition rules: dependencies an operator declares, holding pages back where the
root-cause ranking would not (Alertmanager's inhibit_rules)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from anomalies.models import Anomaly, InhibitionRule, ResponseExecution, ResponsePlaybook
from anomalies.responses import alertmanager_payload
from telemetry.models import Series
from tests.anomalies.test_inhibition import _anomaly, _statuses

pytestmark = pytest.mark.django_db

INHIBITED = ResponseExecution.Status.INHIBITED
SUCCEEDED = ResponseExecution.Status.SUCCEEDED


def _rule(**fields) -> InhibitionRule:
    return InhibitionRule.objects.create(
        **{"name": "db takes http down", "source_series": "db.*", "target_series": "http.*"}
        | fields
    )


@pytest.mark.parametrize(
    ("source", "target", "held"),
    [
        (("db.connections.active", {"env": "prod"}), ("http.latency.p95", {"env": "prod"}), True),
        # `equal`: staging's database does not hold back production's pages.
        (
            ("db.connections.active", {"env": "staging"}),
            ("http.latency.p95", {"env": "prod"}),
            False,
        ),
        # An absent label counts as empty on both sides.
        (("db.connections.active", {}), ("http.latency.p95", {}), True),
        (("db.connections.active", {}), ("http.latency.p95", {"env": "prod"}), False),
        # Source and target the wrong way round.
        (("http.latency.p95", {"env": "prod"}), ("db.connections.active", {"env": "prod"}), False),
        (("cache.hits", {"env": "prod"}), ("http.latency.p95", {"env": "prod"}), False),
    ],
)
def test_a_rule_holds_back_its_targets_behind_its_sources_with_equal_labels(source, target, held):
    rule = InhibitionRule(source_series="db.*", target_series="http.*", equal=["env"])
    a = Series(pk=1, name=source[0], labels=source[1])
    b = Series(pk=2, name=target[0], labels=target[1])
    assert rule.holds_back(a, b) is held


def test_a_series_never_holds_itself_back():
    rule = InhibitionRule(source_series="*", target_series="*")
    series = Series(pk=1, name="http.latency.p95", labels={})
    assert not rule.holds_back(series, series)
    assert rule.holds_back(Series(pk=2, name="db.cpu", labels={}), series)


def test_a_declared_dependency_holds_back_what_the_ranking_did_not_tie_to_its_cause(
    eager, client_with_role, admin_client
):
    """The ranking named no cause for the endpoints (an onset long after the database's is
    outside its window), so the database outage paged once per endpoint; with a rule,
    once."""
    t0 = timezone.now()
    ResponsePlaybook.objects.create(name="pager", action="email", target="oncall@example.com")
    db = _anomaly("db.connections.active", t0 - timedelta(minutes=40))
    eager([db], t0 - timedelta(minutes=40))
    feed = _anomaly("http.latency.p95", t0, endpoint="/api/feed")
    eager([db, feed], t0)
    assert len(mail.outbox) == 2  # the ranking alone: the endpoint is its own page
    assert _statuses("pager")["http.latency.p95{endpoint=/api/feed}"] == SUCCEEDED

    rule = _rule(comment="every endpoint waits on the database")
    search = _anomaly("http.latency.p95", t0 + timedelta(minutes=1), endpoint="/api/search")
    eager([db, feed, search], t0 + timedelta(minutes=1))
    assert len(mail.outbox) == 2
    held = ResponseExecution.objects.get(anomaly=search)
    assert held.status == INHIBITED
    assert held.result["inhibited_by"] == db.pk and held.result["rule"] == rule.name
    assert held.error.startswith(
        f"not sent: its source by inhibition rule {rule.name!r}, anomaly {db.pk} on "
        "db.connections.active, goes on and its incident was paged by this playbook"
    )
    # The rule says what it holds back: the API and the admin's list.
    url = "/admin/api/phase3/anomaly/inhibition-rules"
    (listed,) = client_with_role("viewer").get(url).json()["results"]
    assert listed["holding_back"] == [search.pk]
    page = admin_client.get("/admin/anomalies/inhibitionrule/")
    assert page.status_code == 200 and "1 ongoing anomaly" in page.content.decode()
    # The database's group carries it, though the ranking does not call it an effect.
    playbook = ResponsePlaybook.objects.get(name="pager")
    group = alertmanager_payload(db, playbook)["alerts"]
    assert [(a["labels"]["series"], a["labels"].get("endpoint")) for a in group] == [
        ("db.connections.active", None),
        ("http.latency.p95", "/api/search"),
    ]
    # The on-call hears of it: an incident update, as for the ranking's effects, once.
    eager([db, feed, search], t0 + timedelta(minutes=6))
    assert len(mail.outbox) == 3
    update = mail.outbox[2]
    assert update.subject == "Update: db.connections.active is abnormal (critical)"
    assert "; holds back by inhibition rules: http.latency.p95{endpoint=/api/search}" in update.body
    eager([db, feed, search], t0 + timedelta(minutes=12))
    assert len(mail.outbox) == 3
    # Switched off, the next run pages it.
    InhibitionRule.objects.update(enabled=False)
    eager([db, feed, search], t0 + timedelta(minutes=13))
    assert ResponseExecution.objects.get(anomaly=search).status == SUCCEEDED
    assert len(mail.outbox) == 4
    assert client_with_role("viewer").get(url).json()["results"][0]["holding_back"] == []
    assert (
        "0 ongoing anomalies"
        in admin_client.get("/admin/anomalies/inhibitionrule/").content.decode()
    )


def test_a_rule_holds_back_behind_a_paged_source_at_least_as_severe(eager):
    t0 = timezone.now()
    _rule()
    ResponsePlaybook.objects.create(name="pager", action="email", target="oncall@example.com")
    ResponsePlaybook.objects.create(
        name="api", action="email", target="api@example.com", series_name="http.*"
    )
    db = _anomaly("db.connections.active", t0 - timedelta(minutes=5), severity="warning")
    eager([db], t0 - timedelta(minutes=5))
    warning = _anomaly("http.latency.p95", t0, severity="warning", endpoint="/a")
    critical = _anomaly("http.latency.p95", t0, severity="critical", endpoint="/b")
    eager([db, warning, critical], t0)
    # A critical endpoint behind a warning database is worse than what was paged.
    assert _statuses("pager") == {
        "db.connections.active": SUCCEEDED,
        "http.latency.p95{endpoint=/a}": INHIBITED,
        "http.latency.p95{endpoint=/b}": SUCCEEDED,
    }
    # The API team does not cover the database: it hears of the incident through its
    # first endpoint (the most severe of those opening together), and no more pages.
    assert _statuses("api") == {
        "http.latency.p95{endpoint=/a}": INHIBITED,
        "http.latency.p95{endpoint=/b}": SUCCEEDED,
    }


def test_a_target_that_outlives_its_source_past_the_grace_is_paged(eager):
    t0 = timezone.now()
    _rule()
    ResponsePlaybook.objects.create(
        name="pager", action="email", target="oncall@example.com", effect_grace_seconds=600
    )
    db = _anomaly("db.connections.active", t0 - timedelta(minutes=5))
    eager([db], t0 - timedelta(minutes=5))
    feed = _anomaly("http.latency.p95", t0, endpoint="/api/feed")
    eager([db, feed], t0)
    assert _statuses("pager")["http.latency.p95{endpoint=/api/feed}"] == INHIBITED
    # The database recovers at t0 + 1 min; the endpoint is still abnormal 5 min later: tail.
    Anomaly.objects.filter(pk=db.pk).update(
        ended_at=t0 + timedelta(minutes=1), last_seen_at=t0 + timedelta(minutes=1)
    )
    Anomaly.objects.filter(pk=feed.pk).update(last_seen_at=t0 + timedelta(minutes=6))
    eager([feed], t0 + timedelta(minutes=6))
    assert _statuses("pager")["http.latency.p95{endpoint=/api/feed}"] == INHIBITED
    # Still abnormal 12 minutes after the database recovered: its own problem.
    Anomaly.objects.filter(pk=feed.pk).update(last_seen_at=t0 + timedelta(minutes=13))
    eager([feed], t0 + timedelta(minutes=13))
    assert _statuses("pager")["http.latency.p95{endpoint=/api/feed}"] == SUCCEEDED
    assert len(mail.outbox) == 2


def test_an_admin_declares_a_rule_and_bad_input_is_refused_naming_the_field(client_with_role):
    body = {
        "name": "db takes http down",
        "source_series": "db.*",
        "source_labels": {"env": "prod"},
        "target_series": "http.*",
        "equal": ["region"],
    }
    url = "/admin/api/phase3/anomaly/inhibition-rules"
    assert client_with_role("operator").post(url, body, format="json").status_code == 403
    created = client_with_role("admin").post(url, body, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["equal"] == ["region"] and created.json()["enabled"] is True
    listed = client_with_role("viewer").get(url).json()
    assert [r["name"] for r in listed["results"]] == ["db takes http down"]
    for field, value in [
        ("source_series", ""),
        ("target_series", "  "),
        ("target_labels", {"env": 3}),
        ("equal", "env"),
        ("equal", ["not a label"]),
    ]:
        refused = client_with_role("admin").post(
            url, {**body, "name": f"bad {field}", field: value}, format="json"
        )
        assert refused.status_code == 400, (field, value)
        assert field in refused.json(), (field, refused.json())
    assert InhibitionRule.objects.count() == 1
    rule = InhibitionRule.objects.get()
    patched = client_with_role("admin").patch(f"{url}/{rule.pk}", {"equal": [1]}, format="json")
    assert patched.status_code == 400 and "equal" in patched.json()


def test_a_rule_written_from_a_shell_that_the_checks_refuse_is_skipped(eager, caplog):
    t0 = timezone.now()
    InhibitionRule.objects.create(name="broken", source_series="", target_series="http.*")
    ResponsePlaybook.objects.create(name="pager", action="email", target="oncall@example.com")
    db = _anomaly("db.connections.active", t0 - timedelta(minutes=5))
    feed = _anomaly("http.latency.p95", t0)
    eager([db, feed], t0)
    assert set(_statuses("pager").values()) == {SUCCEEDED}
    assert "inhibition rule 'broken' skipped" in caplog.text


def test_a_preview_names_the_series_a_rule_ties_and_what_it_would_hold_back_now(
    client_with_role,
):
    t0 = timezone.now()
    db = _anomaly("db.connections.active", t0 - timedelta(minutes=5), env="prod")
    feed = _anomaly("http.latency.p95", t0, env="prod", endpoint="/api/feed")
    _anomaly("http.latency.p95", t0, env="staging", endpoint="/api/feed")
    worse = _anomaly("http.errors.ratio", t0, severity="critical", env="prod")
    Anomaly.objects.filter(pk=db.pk).update(severity="warning")
    Anomaly.objects.filter(pk=feed.pk).update(severity="warning")
    url = "/admin/api/phase3/anomaly/inhibition-rules/preview"
    body = {"source_series": "db.*", "target_series": "http.*", "equal": ["env"]}
    assert client_with_role("viewer").post(url, body, format="json").status_code == 403
    answer = client_with_role("operator").post(url, body, format="json")
    assert answer.status_code == 200, answer.content
    preview = answer.json()
    assert preview["source_series"] == 1 and preview["target_series"] == 3
    assert preview["source_names"] == ["db.connections.active{env=prod}"]
    # Staging's endpoint has no staging database; the errors are worse than the database.
    assert preview["would_hold_back"] == 1
    assert preview["pairs"] == [{"anomaly": feed.pk, "held_back_behind": db.pk}]
    assert worse.pk not in {p["anomaly"] for p in preview["pairs"]}
    # A typo names nothing, at once.
    typo = client_with_role("operator").post(url, {**body, "source_series": "bd.*"}, format="json")
    assert typo.json()["source_series"] == 0 and typo.json()["would_hold_back"] == 0
    refused = client_with_role("operator").post(url, {**body, "equal": "env"}, format="json")
    assert refused.status_code == 400 and "equal" in refused.json()
    assert not InhibitionRule.objects.exists()


def test_the_admin_form_refuses_what_the_api_refuses(admin_client):
    url = "/admin/anomalies/inhibitionrule/add/"
    form = {
        "name": "db takes http down",
        "enabled": "on",
        "source_series": "db.*",
        "source_labels": "{}",
        "target_series": "http.*",
        "target_labels": "{}",
        "equal": '"env"',
        "comment": "",
    }
    refused = admin_client.post(url, form)
    assert refused.status_code == 200 and "give a list of label names" in refused.content.decode()
    assert not InhibitionRule.objects.exists()
    saved = admin_client.post(url, {**form, "equal": '["env"]'})
    assert saved.status_code == 302, saved.content.decode()[:2000]
    rule = InhibitionRule.objects.get()
    assert rule.equal == ["env"]
    # Its page says what its patterns name.
    _anomaly("db.connections.active", timezone.now())
    page = admin_client.get(f"/admin/anomalies/inhibitionrule/{rule.pk}/change/").content.decode()
    assert "source: 1 series (db.connections.active); target: 0 series" in page


def test_a_team_that_does_not_cover_the_source_is_paged_once_and_hears_the_incident_grow(
    eager,
):
    """The API team's playbook covers `http.*`, not the database: a rule's database outage
    pages it once, through its first endpoint, and later endpoints are held back behind
    the database, across runs, and told in an update, as the ranking's effects are."""
    t0 = timezone.now()
    _rule()
    ResponsePlaybook.objects.create(
        name="dba", action="email", target="dba@example.com", series_name="db.*"
    )
    api = ResponsePlaybook.objects.create(
        name="api", action="email", target="api@example.com", series_name="http.*"
    )
    db = _anomaly("db.connections.active", t0 - timedelta(minutes=1))
    first = _anomaly("http.latency.p95", t0, endpoint="/a")
    eager([db, first], t0)
    assert sorted(m.to[0] for m in mail.outbox) == ["api@example.com", "dba@example.com"]
    page = ResponseExecution.objects.get(playbook=api, anomaly=first)
    assert page.result["incident_of"] == db.pk and page.notified_effects == 1
    api_mail = next(m for m in mail.outbox if m.to == ["api@example.com"])
    assert f"part of the incident of anomaly {db.pk} on db.connections.active" in api_mail.body
    # A later run: more endpoints, held back behind the database (the page is news of it).
    more = [_anomaly("http.latency.p95", t0, endpoint=e) for e in ("/b", "/c")]
    eager([db, first, *more], t0 + timedelta(minutes=2))
    assert len(mail.outbox) == 2
    held = ResponseExecution.objects.get(playbook=api, anomaly=more[0])
    assert held.status == INHIBITED and held.result["inhibited_by"] == db.pk
    assert "through another of its effects" in held.error
    # Five minutes on, one update tells the team that its incident grew.
    eager([db, first, *more], t0 + timedelta(minutes=6))
    (update,) = [m for m in mail.outbox[2:] if m.to == ["api@example.com"]]
    assert update.subject == "Update: http.latency.p95{endpoint=/a} is abnormal (critical)"
    assert "which also holds back http.latency.p95{endpoint=/b}, " in update.body
    # Its webhook group would carry the endpoints it held back.
    group = alertmanager_payload(first, api)["alerts"]
    assert [a["labels"]["endpoint"] for a in group] == ["/a", "/b", "/c"]
    eager([db, first, *more], t0 + timedelta(minutes=12))
    assert [m.to for m in mail.outbox[2:]].count(["api@example.com"]) == 1


def test_the_detect_view_reads_a_rule_s_source_and_targets_as_one_incident(client_with_role):
    t0 = timezone.now()
    earlier = _anomaly("db.pool.wait", t0 - timedelta(hours=3))
    Anomaly.objects.filter(pk=earlier.pk).update(ended_at=t0 - timedelta(hours=2))
    db = _anomaly("db.connections.active", t0 - timedelta(minutes=5))
    feed = _anomaly("http.latency.p95", t0, endpoint="/api/feed")
    search = _anomaly("http.latency.p95", t0, endpoint="/api/search")
    _anomaly("cache.hits", t0)

    def detect() -> dict:
        since = (t0 - timedelta(hours=4)).isoformat()
        url = "/admin/api/phase3/anomaly/detect"
        return client_with_role("viewer").get(url, {"since": since}).json()

    # The ranking tied nothing: five incidents of one anomaly each.
    assert detect()["incident_count"] == 5 and detect()["incidents"] == []
    _rule()
    answer = detect()
    # The database's outage and its endpoints are one; the pool's wait, over before the
    # endpoints went down, and the cache are not part of it.
    assert answer["incident_count"] == 3
    (incident,) = answer["incidents"]
    assert incident["cause"] == db.pk and incident["anomalies"] == 3
    assert set(incident["anomaly_ids"]) == {db.pk, feed.pk, search.pk}


@pytest.mark.parametrize("db_env", ["prod", "staging"])
def test_a_rule_ranks_its_source_first_among_simultaneous_onsets(db_env):
    """The checkout latency and the orders database moved in the same step, the latency by
    far the more: by sizes alone the endpoint is its own cause. An operator's rule says it
    waits on the database, and the ranking (which inhibition, incidents and descriptions
    read) follows it, with the rule named in the evidence; a database of another `env`
    is not what it waits on."""
    from anomalies.models import RootCauseCandidate
    from anomalies.services.causes import causes_rank_around
    from telemetry.services import series_ensure
    from tests.anomalies.factories import AnomalyFactory

    now = timezone.now()
    db = AnomalyFactory(
        series=series_ensure(name="db.query.latency", labels={"env": db_env}),
        started_at=now - timedelta(seconds=20),
        peak_surprisal=20.0,
        peak_z=9.0,
    )
    checkout = AnomalyFactory(
        series=series_ensure(
            name="http.latency.p95", labels={"env": "prod", "endpoint": "/checkout"}
        ),
        started_at=now,
        peak_surprisal=61.0,
        peak_z=38.0,
    )

    def top() -> tuple[int, dict]:
        causes_rank_around({db.pk, checkout.pk})
        first = RootCauseCandidate.objects.get(anomaly=checkout, rank=1)
        return first.cause_anomaly_id, first.evidence

    assert top()[0] == checkout.pk
    _rule(name="checkout waits on the database", equal=["env"])
    cause, evidence = top()
    assert cause == (db.pk if db_env == "prod" else checkout.pk)
    if db_env == "prod":
        assert evidence["declared_by"] == "checkout waits on the database"
    InhibitionRule.objects.update(enabled=False)
    assert top()[0] == checkout.pk


def test_a_rule_of_everything_over_everything_groups_pages_by_a_label(eager):
    """Alertmanager's `group_by: [service]`, as far as a rule gives it: `*` over `*` with
    `equal: [service]` pages a service's first anomaly, carries the service's later ones
    in its group (whatever their series, related or not), and pages another service's on
    their own; two that open in one run page once."""
    t0 = timezone.now()
    _rule(name="one page per service", source_series="*", target_series="*", equal=["service"])
    ResponsePlaybook.objects.create(name="pager", action="email", target="oncall@example.com")
    cart = _anomaly("http.latency.p95", t0, service="checkout", endpoint="/cart")
    eager([cart], t0)
    at = t0 + timedelta(minutes=1)
    errors = _anomaly("http.errors.ratio", at, service="checkout")
    queue = _anomaly("queue.depth", at, service="search")
    billing = [_anomaly(name, at, service="billing") for name in ("jobs.failed", "jobs.lag")]
    eager([cart, errors, queue, *billing], at)
    statuses = _statuses("pager")
    assert statuses["http.errors.ratio{service=checkout}"] == INHIBITED
    assert statuses["queue.depth{service=search}"] == SUCCEEDED
    assert sorted(statuses[f"{a.series}"] for a in billing) == [INHIBITED, SUCCEEDED]
    assert len(mail.outbox) == 3
    eager([cart, errors, queue, *billing], t0 + timedelta(minutes=6))
    updates = {m.subject: m.body for m in mail.outbox[3:]}
    assert (
        "; holds back by inhibition rules: http.errors.ratio{service=checkout}"
        in (
            updates[
                "Update: http.latency.p95{endpoint=/cart,service=checkout} is abnormal (critical)"
            ]
        )
    )


@pytest.mark.parametrize("db_ended", [False, True])
def test_a_rule_s_source_that_began_before_the_window_is_ranked_while_it_goes_on(
    db_ended, admin_client
):
    """The database's outage began 40 minutes before the endpoint slowed down: outside the
    30-minute window, so by onsets alone the endpoint is its own cause. Declared, and
    still abnormal when the endpoint began, the database ranks first; over by then, it is
    no candidate."""
    from anomalies.models import RootCauseCandidate
    from anomalies.services.causes import causes_rank_around
    from telemetry.services import series_ensure
    from tests.anomalies.factories import AnomalyFactory

    now = timezone.now()
    db = AnomalyFactory(
        series=series_ensure(name="db.connections.active"),
        started_at=now - timedelta(minutes=40),
        ended_at=now - timedelta(minutes=10) if db_ended else None,
        peak_surprisal=30.0,
    )
    feed = AnomalyFactory(
        series=series_ensure(name="http.latency.p95", labels={"endpoint": "/api/feed"}),
        started_at=now,
        peak_surprisal=40.0,
    )
    _rule()
    causes_rank_around({feed.pk})
    ranked = list(RootCauseCandidate.objects.filter(anomaly=feed).order_by("rank"))
    if db_ended:
        assert [c.cause_anomaly_id for c in ranked] == [feed.pk]
        return
    assert [c.cause_anomaly_id for c in ranked] == [db.pk, feed.pk]
    assert ranked[0].lead_seconds == pytest.approx(2400.0)
    assert ranked[0].evidence["declared_by"] == "db takes http down"
    # The anomaly's page says why the database leads, in words.
    page = admin_client.get(f"/admin/anomalies/anomaly/{feed.pk}/change/").content.decode()
    assert "moved 40 min before it; declared a source by inhibition rule" in page
    assert "the anomaly&#x27;s own series" in page


def test_a_page_held_back_behind_a_declared_source_names_the_rule_though_the_ranking_agrees(
    eager,
):
    """The ranking reads the rules, so the database is the endpoint's likeliest cause too;
    the held-back page still says which declaration held it, and the rule counts it."""
    from anomalies.services.causes import causes_rank_around

    t0 = timezone.now()
    ResponsePlaybook.objects.create(name="pager", action="email", target="oncall@example.com")
    rule = _rule()
    db = _anomaly("db.connections.active", t0 - timedelta(minutes=40))
    eager([db], t0 - timedelta(minutes=40))
    feed = _anomaly("http.latency.p95", t0, endpoint="/api/feed")
    causes_rank_around({feed.pk})
    assert feed.causes.get(rank=1).cause_anomaly_id == db.pk
    eager([db, feed], t0)
    held = ResponseExecution.objects.get(anomaly=feed)
    assert held.status == INHIBITED and held.result["rule"] == rule.name
    assert held.error.startswith(f"not sent: its source by inhibition rule {rule.name!r}")
