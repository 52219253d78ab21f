"""Inhibition rules suggested by incident history: the pure miner on links with known
answers, then the API on stored rankings."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from anomalies.engine.dependency_mining import Link, suggest_dependencies
from anomalies.models import Anomaly
from telemetry.services import series_ensure
from tests.anomalies.factories import AnomalyFactory
from tests.anomalies.test_inhibition import _blames


def _link(
    cause: int,
    effect: int,
    cause_name="db.connections.active",
    effect_name="http.latency.p95",
    *,
    env="prod",
    endpoint="/a",
    lead=120.0,
) -> Link:
    return Link(
        cause_anomaly=cause,
        effect_anomaly=effect,
        cause_name=cause_name,
        cause_labels={"env": env},
        effect_name=effect_name,
        effect_labels={"env": "prod", "endpoint": endpoint},
        lead_seconds=lead,
    )


def test_a_pair_seen_in_enough_incidents_one_way_is_suggested_with_what_supports_it():
    links = [
        # Four database incidents, two endpoints each: one incident per cause anomaly.
        *(
            _link(c, 10 * c + k, endpoint=e, lead=60.0 * c)
            for c in range(1, 5)
            for k, e in enumerate(["/a", "/b"])
        ),
        # Once the other way round.
        _link(5, 51, "http.latency.p95", "db.connections.active"),
        # Two incidents only: a coincidence.
        _link(6, 61, "cache.hits", "http.latency.p95"),
        _link(7, 71, "cache.hits", "http.latency.p95"),
        # One endpoint before another: a metric over itself.
        *(_link(c, 10 * c, "http.latency.p95", "http.latency.p95") for c in range(8, 12)),
    ]
    (found,) = suggest_dependencies(links, {"http.latency.p95": 16, "db.connections.active": 5})
    assert (found.source_series, found.target_series) == (
        "db.connections.active",
        "http.latency.p95",
    )
    assert found.name == "db.connections.active takes http.latency.p95 down"
    assert (found.incidents, found.reverse) == (4, 1)
    assert found.confidence == pytest.approx(0.8)
    assert found.effects == 8 and found.coverage == pytest.approx(8 / 16)
    assert found.equal == ["env"]
    assert found.median_lead_seconds == pytest.approx(150.0)
    assert found.examples == [4, 3, 2, 1]
    # A second reverse incident tips it under the confidence needed.
    assert (
        suggest_dependencies(
            [*links, _link(12, 121, "http.latency.p95", "db.connections.active")], {}
        )
        == []
    )
    # Fewer incidents asked for: the cache pair too, after the database's.
    assert [s.source_series for s in suggest_dependencies(links, {}, min_incidents=2)] == [
        "db.connections.active",
        "cache.hits",
    ]


def test_a_label_the_sides_do_not_always_share_is_not_in_equal():
    links = [_link(c, 10 * c) for c in range(1, 4)] + [_link(4, 40, env="staging")]
    (found,) = suggest_dependencies(links, {})
    assert found.equal == []
    assert found.coverage == 1.0  # no count given: what it explained is all there was


def _incident(
    at, *, cause_name="db.connections.active", effect_names=("http.latency.p95",), status="open"
):
    cause = AnomalyFactory(
        series=series_ensure(name=cause_name, labels={"env": "prod"}), started_at=at, status=status
    )
    for name in effect_names:
        effect = AnomalyFactory(
            series=series_ensure(name=name, labels={"env": "prod", "endpoint": "/a"}),
            started_at=at + timedelta(minutes=2),
        )
        _blames(effect, cause)
        _blames(effect, effect, rank=2)  # the effect's own series second: never a link
    return cause


URL = "/admin/api/phase3/anomaly/inhibition-rules"


@pytest.mark.django_db
def test_the_api_suggests_a_rule_ready_to_post_and_forgets_it_once_declared(client_with_role):
    now = timezone.now()
    causes = [_incident(now - timedelta(days=d)) for d in (1, 3, 5)]
    _incident(now - timedelta(days=40))  # outside the 28 days read
    viewer = client_with_role("viewer")
    answer = viewer.get(f"{URL}/suggestions")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["links_read"] == 3
    (found,) = body["suggestions"]
    assert found["incidents"] == 3 and found["equal"] == ["env"]
    assert found["examples"] == sorted((c.pk for c in causes), reverse=True)
    # Over 60 days, the fourth incident counts too.
    assert viewer.get(f"{URL}/suggestions?days=60").json()["suggestions"][0]["incidents"] == 4
    # Accepted as it comes: the rule is made, and no longer suggested.
    fields = {k: found[k] for k in ("name", "source_series", "target_series", "equal")}
    assert client_with_role("admin").post(URL, fields, format="json").status_code == 201
    assert viewer.get(f"{URL}/suggestions").json()["suggestions"] == []


@pytest.mark.django_db
def test_a_dismissed_incident_does_not_count(client_with_role):
    now = timezone.now()
    causes = [_incident(now - timedelta(days=d)) for d in (1, 3, 5)]
    Anomaly.objects.filter(pk=causes[0].pk).update(status=Anomaly.Status.FALSE_POSITIVE)
    viewer = client_with_role("viewer")
    assert viewer.get(f"{URL}/suggestions").json()["suggestions"] == []
    assert len(viewer.get(f"{URL}/suggestions?min_incidents=2").json()["suggestions"]) == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("days=0", "days"),
        ("days=91", "days"),
        ("days=week", "days"),
        ("min_incidents=1", "min_incidents"),
    ],
)
def test_a_suggestion_query_that_cannot_work_is_refused_naming_the_field(
    client_with_role, query, field
):
    answer = client_with_role("viewer").get(f"{URL}/suggestions?{query}")
    assert answer.status_code == 400 and field in answer.json()


@pytest.mark.django_db
def test_the_admin_lists_the_suggestions_and_fills_in_the_rule(admin_client):
    import html

    now = timezone.now()
    for d in (1, 3, 5):
        _incident(now - timedelta(days=d))
    listing = admin_client.get("/admin/anomalies/inhibitionrule/").content.decode()
    assert "Suggested by incidents" in listing
    page = admin_client.get("/admin/anomalies/inhibitionrule/suggestions/")
    assert page.status_code == 200
    text = html.unescape(page.content.decode())
    assert "<td>db.connections.active</td><td>http.latency.p95</td><td>env</td>" in text
    add = text.split('<a href="/admin/anomalies/inhibitionrule/add/?', 1)[1].split('"', 1)[0]
    form = html.unescape(
        admin_client.get(f"/admin/anomalies/inhibitionrule/add/?{add}").content.decode()
    )
    assert 'value="db.connections.active takes http.latency.p95 down"' in form
    assert '["env"]</textarea>' in form


@pytest.mark.django_db
def test_the_suggestions_cost_the_same_queries_whatever_the_history(client_with_role):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    now = timezone.now()
    viewer = client_with_role("viewer")

    def queries() -> int:
        with CaptureQueriesContext(connection) as read:
            assert viewer.get(f"{URL}/suggestions").status_code == 200
        return len(read)

    queries()  # the key's first use of the minute is recorded: not the suggestions' cost
    for d in (1, 3, 5):
        _incident(now - timedelta(days=d), effect_names=("http.latency.p95", "http.errors.ratio"))
    few = queries()
    for d in (2, 4, 6, 8, 10):
        _incident(now - timedelta(days=d), cause_name="cache.hits")
    assert queries() == few
