"""Signal layer rules: what an operator knows about metrics whose names do not say where
they sit in load → saturation → symptoms, read by root-cause ranking."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from anomalies.engine.signal_layers import Layer, named_layer, signal_layer
from anomalies.matching import most_specific
from anomalies.models import RootCauseCandidate, SignalLayerRule
from telemetry.services import series_ensure
from tests.anomalies.factories import AnomalyFactory

URL = "/admin/api/phase3/anomaly/layer-rules"


@pytest.mark.parametrize(
    ("name", "layer"),
    [
        ("checkout.orders.created", None),  # nothing it knows
        ("queue.latency", Layer.OUTCOME),  # latency: the wrong layer for a queue's wait
        ("db.time.ms", Layer.OUTCOME),  # a unit of time alone is an outcome
        ("http.requests.rate", Layer.DEMAND),
        ("requests.per_user", Layer.OUTCOME),
        ("system.cpu.utilization", Layer.RESOURCE),
        ("", None),
    ],
)
def test_a_name_gives_a_layer_or_says_it_knows_none(name, layer):
    assert named_layer(name) is layer


def test_a_declared_layer_wins_over_the_name_but_only_for_a_rise():
    assert signal_layer("checkout.orders.created") is Layer.OUTCOME  # the default
    assert signal_layer("checkout.orders.created", 1, Layer.DEMAND) is Layer.DEMAND
    assert signal_layer("queue.latency", 1, Layer.RESOURCE) is Layer.RESOURCE
    # Fewer orders during an outage are customers leaving: an effect, declared or not.
    assert signal_layer("checkout.orders.created", -1, Layer.DEMAND) is Layer.OUTCOME


def test_the_most_specific_rule_applies():
    rules = [
        SignalLayerRule(name="b queues", series_name="queue.*", layer="resource"),
        SignalLayerRule(name="a everything", series_name="*", layer="outcome"),
        SignalLayerRule(
            name="c eu", series_name="queue.*", labels={"region": "eu"}, layer="demand"
        ),
        SignalLayerRule(name="d this one", series_name="queue.latency", layer="demand"),
        SignalLayerRule(name="e same", series_name="queue.*", layer="outcome"),
    ]

    def rule(name: str, **labels: str) -> str | None:
        found = most_specific(rules, name, labels)
        return None if found is None else found.name

    assert rule("queue.depth") == "b queues"  # a pattern over `*`, then the first name
    assert rule("queue.depth", region="eu") == "c eu"  # more labels over fewer
    assert rule("queue.latency", region="eu") == "d this one"  # its own name over both
    assert rule("orders") == "a everything"
    assert most_specific(rules[:1], "orders", {}) is None


def _simultaneous(direction: int = 1) -> tuple:
    """Orders and the checkout latency moved in the same five-minute step, the latency
    by far the more: by sizes alone the endpoint is its own cause."""
    now = timezone.now()
    orders = AnomalyFactory(
        series=series_ensure(name="checkout.orders.created", labels={"region": "eu"}),
        started_at=now - timedelta(seconds=20),
        peak_surprisal=20.0,
        peak_z=9.0 * direction,
        direction=direction,
    )
    latency = AnomalyFactory(
        series=series_ensure(name="http.latency.p95", labels={"endpoint": "/checkout"}),
        started_at=now,
        peak_surprisal=61.0,
        peak_z=38.0,
    )
    return orders, latency


def _top(orders, latency) -> RootCauseCandidate:
    from anomalies.services.causes import causes_rank_around

    causes_rank_around({orders.pk, latency.pk})
    return RootCauseCandidate.objects.get(anomaly=latency, rank=1)


@pytest.mark.django_db
def test_a_declared_demand_ranks_first_among_simultaneous_onsets_and_says_why(admin_client):
    orders, latency = _simultaneous()
    assert _top(orders, latency).cause_anomaly_id == latency.pk
    SignalLayerRule.objects.create(
        name="orders are demand", series_name="*.orders.*", layer="demand"
    )
    first = _top(orders, latency)
    assert first.cause_anomaly_id == orders.pk
    assert first.evidence["layer"] == "demand"
    assert first.evidence["layer_rule"] == "orders are demand"
    page = admin_client.get(f"/admin/anomalies/anomaly/{latency.pk}/change/").content.decode()
    assert "a demand signal (signal layer rule &#x27;orders are demand&#x27;)" in page
    # A more specific rule for the region wins; disabled, the name rules again.
    SignalLayerRule.objects.create(
        name="eu orders are outcomes",
        series_name="*.orders.*",
        labels={"region": "eu"},
        layer="outcome",
    )
    assert _top(orders, latency).cause_anomaly_id == latency.pk
    SignalLayerRule.objects.update(enabled=False)
    assert _top(orders, latency).cause_anomaly_id == latency.pk
    assert "layer_rule" not in RootCauseCandidate.objects.get(anomaly=latency, rank=2).evidence


@pytest.mark.django_db
def test_a_declared_layer_does_not_lift_a_fall():
    orders, latency = _simultaneous(direction=-1)
    SignalLayerRule.objects.create(
        name="orders are demand", series_name="*.orders.*", layer="demand"
    )
    first = _top(orders, latency)
    assert first.cause_anomaly_id == latency.pk
    second = RootCauseCandidate.objects.get(anomaly=latency, rank=2)
    assert second.evidence["layer"] == "outcome" and "layer_rule" not in second.evidence


@pytest.mark.django_db
def test_a_rule_written_from_a_shell_that_the_checks_refuse_is_skipped():
    orders, latency = _simultaneous()
    SignalLayerRule.objects.create(
        name="bad labels", series_name="*.orders.*", labels={"region": 3}, layer="demand"
    )
    SignalLayerRule.objects.create(name="bad layer", series_name="*.orders.*", layer="load")
    assert _top(orders, latency).cause_anomaly_id == latency.pk


@pytest.mark.django_db
def test_admins_edit_rules_and_a_bad_one_is_refused_naming_the_field(client_with_role):
    admin, viewer = client_with_role("admin"), client_with_role("viewer")
    fields = {"name": "orders", "series_name": "orders.*", "layer": "demand"}
    assert viewer.post(URL, fields, format="json").status_code == 403
    created = admin.post(URL, fields, format="json")
    assert created.status_code == 201, created.content
    assert viewer.get(URL).json()["results"][0]["layer"] == "demand"
    for bad, field in [
        ({"layer": "load"}, "layer"),
        ({"labels": {"region": 3}}, "labels"),
        ({"labels": ["eu"]}, "labels"),
        ({"series_name": "  "}, "series_name"),
    ]:
        answer = admin.post(URL, fields | {"name": "other"} | bad, format="json")
        assert answer.status_code == 400 and field in answer.json(), (bad, answer.content)
    rule = created.json()["id"]
    answer = admin.patch(f"{URL}/{rule}", {"labels": {"region": None}}, format="json")
    assert answer.status_code == 400 and "labels" in answer.json()
    assert admin.patch(f"{URL}/{rule}", {"layer": "resource"}, format="json").status_code == 200
    assert SignalLayerRule.objects.get().layer == "resource"


@pytest.mark.django_db
def test_coverage_lists_each_metric_s_layer_and_the_ones_with_none(client_with_role):
    for endpoint in ("/a", "/b"):
        series_ensure(name="layers.test.latency.p95", labels={"endpoint": endpoint})
    for region in ("eu", "us"):
        series_ensure(name="checkout.orders.created", labels={"region": region})
    series_ensure(name="jobs.pending")
    SignalLayerRule.objects.create(
        name="eu orders", series_name="*.orders.*", labels={"region": "eu"}, layer="demand"
    )
    viewer = client_with_role("viewer")
    answer = viewer.get(f"{URL}/coverage").json()
    by_name = {m["series_name"]: m for m in answer["metrics"]}
    assert answer["names"] == len(answer["metrics"]) and not answer["capped"]
    assert answer["names"] >= 3
    assert by_name["layers.test.latency.p95"] == {
        "series_name": "layers.test.latency.p95",
        "series": 2,
        "layer_by_name": "outcome",
        "rules": {},
        "layers": {"outcome": 2},
    }
    orders = by_name["checkout.orders.created"]
    assert orders["layer_by_name"] is None
    assert orders["rules"] == {"eu orders": 1}
    assert orders["layers"] == {"demand": 1, "outcome": 1}
    undeclared = viewer.get(f"{URL}/coverage?undeclared=true").json()
    listed = {m["series_name"] for m in undeclared["metrics"]}
    assert "jobs.pending" in listed
    assert not listed & {"layers.test.latency.p95", "checkout.orders.created"}
    assert viewer.get(f"{URL}/coverage?undeclared=maybe").status_code == 400


@pytest.mark.django_db
def test_the_admin_lists_metrics_without_a_layer_and_fills_in_the_rule(admin_client):
    series_ensure(name="jobs.pending")
    series_ensure(name="http.requests.rate")
    listing = admin_client.get("/admin/anomalies/signallayerrule/").content.decode()
    assert "/admin/anomalies/signallayerrule/coverage/" in listing
    page = admin_client.get("/admin/anomalies/signallayerrule/coverage/").content.decode()
    assert "http.requests.rate" in page and "demand" in page
    add = "/admin/anomalies/signallayerrule/add/?name=jobs.pending&amp;series_name=jobs.pending"
    assert add in page and "series_name=http.requests.rate" not in page
    only = admin_client.get("/admin/anomalies/signallayerrule/coverage/?undeclared=1")
    assert "http.requests.rate" not in only.content.decode()
    form = admin_client.get(add.replace("&amp;", "&")).content.decode()
    assert 'value="jobs.pending"' in form
    saved = admin_client.post(
        "/admin/anomalies/signallayerrule/add/",
        {"name": "jobs", "series_name": "jobs.*", "labels": "{}", "layer": "resource"},
    )
    assert saved.status_code == 302
    refused = admin_client.post(
        "/admin/anomalies/signallayerrule/add/",
        {"name": "bad", "series_name": "jobs.*", "labels": '{"a": 1}', "layer": "resource"},
    )
    assert refused.status_code == 200 and "errorlist" in refused.content.decode()
    assert list(SignalLayerRule.objects.values_list("name", flat=True)) == ["jobs"]


@pytest.mark.django_db
def test_coverage_costs_the_same_queries_however_many_series(client_with_role):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    viewer = client_with_role("viewer")
    SignalLayerRule.objects.create(name="orders", series_name="orders.*", layer="demand")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert viewer.get(f"{URL}/coverage").status_code == 200
        return len(captured.captured_queries)

    series_ensure(name="orders.created", labels={"region": "eu"})
    queries()  # the key's first use of the minute is recorded: not the answer's cost
    few = queries()
    for i in range(30):
        series_ensure(name=f"orders.kind{i % 3}", labels={"region": f"r{i}"})
    assert queries() == few
