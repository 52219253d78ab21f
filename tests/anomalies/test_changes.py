"""Change events (deploys, config, flags, scaling) and the anomalies that name the ones
just before their onset: "what changed?" answered on the page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from anomalies.models import ResponsePlaybook
from scaling import services as scaling_services
from scaling.models import ScalingDecision
from telemetry.models import ChangeEvent
from telemetry.services import change_record, series_ensure
from tests.anomalies.factories import AnomalyFactory
from tests.scaling.factories import resource
from tests.scaling.test_concurrency import RecordingActuator

pytestmark = pytest.mark.django_db

CHANGES = "/admin/api/phase3/telemetry/changes"
ANOMALIES = "/admin/api/phase3/anomaly/anomalies"


def _checkout_anomaly(at=None):
    return AnomalyFactory(
        series=series_ensure(
            name="http.latency.p95", labels={"service": "checkout", "endpoint": "/pay"}
        ),
        started_at=at or timezone.now() - timedelta(minutes=5),
        severity="critical",
    )


def test_a_pipeline_posts_a_deploy_and_reads_it_back(client_with_role):
    operator = client_with_role("operator")
    at = timezone.now() - timedelta(minutes=3)
    answer = operator.post(
        CHANGES,
        {
            "at": at.isoformat(),
            "kind": "deploy",
            "title": "checkout 1.4.2",
            "labels": {"service": "checkout"},
            "url": "https://ci.example/runs/812",
            "source": "github-actions",
        },
        format="json",
    )
    assert answer.status_code == 201, answer.content
    change = ChangeEvent.objects.get(title="checkout 1.4.2")
    assert change.created_by and change.labels == {"service": "checkout"}
    listed = client_with_role("viewer").get(CHANGES, {"kind": "deploy"}).json()["results"]
    assert "checkout 1.4.2" in [c["title"] for c in listed]
    since = (at + timedelta(minutes=1)).isoformat()
    assert client_with_role("viewer").get(CHANGES, {"since": since}).json()["results"] == []
    assert client_with_role("viewer").get(CHANGES, {"kind": "scaling"}).json()["results"] == []
    # Now, when `at` is left out.
    later = operator.post(CHANGES, {"title": "flag new-cart on", "kind": "feature_flag"})
    assert later.status_code == 201
    made = ChangeEvent.objects.get(title__startswith="flag").at
    assert abs((made - timezone.now()).total_seconds()) < 60


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x", "kind": "rollback"}, "kind"),
        ({"title": "x", "labels": {"service": 3}}, "labels"),
        ({"title": "x", "labels": ["checkout"]}, "labels"),
        ({"title": "x", "at": "yesterday"}, "at"),
        ({"title": "x", "at": "2999-01-01T00:00:00Z"}, "at"),
        ({"title": "x", "url": "not a url"}, "url"),
        ({"title": "x" * 201}, "title"),
    ],
)
def test_a_change_that_cannot_work_is_refused_naming_the_field(client_with_role, body, field):
    answer = client_with_role("operator").post(CHANGES, body, format="json")
    assert answer.status_code == 400 and field in answer.json(), answer.content
    assert not ChangeEvent.objects.exclude(source="demo").exists()


def test_viewers_read_operators_post_admins_delete(client_with_role):
    viewer, operator = client_with_role("viewer"), client_with_role("operator")
    assert viewer.post(CHANGES, {"title": "x"}).status_code == 403
    made = operator.post(CHANGES, {"title": "x"}).json()["id"]
    assert operator.delete(f"{CHANGES}/{made}").status_code == 403
    assert client_with_role("admin").delete(f"{CHANGES}/{made}").status_code == 204


def test_an_anomaly_names_the_changes_on_its_labels_just_before_its_onset(client_with_role):
    anomaly = _checkout_anomaly()
    onset = anomaly.started_at
    deploy = change_record(
        title="checkout 1.4.2", at=onset - timedelta(minutes=4), labels={"service": "checkout"}
    )
    flag = change_record(title="new-cart on", kind="feature_flag", at=onset - timedelta(minutes=20))
    change_record(title="search 2.0", at=onset - timedelta(minutes=2), labels={"service": "search"})
    change_record(
        title="checkout 1.4.1", at=onset - timedelta(minutes=45), labels={"service": "checkout"}
    )
    change_record(
        title="checkout 1.4.3", at=onset + timedelta(minutes=3), labels={"service": "checkout"}
    )
    answer = client_with_role("viewer").get(f"{ANOMALIES}/{anomaly.pk}").json()
    assert [(c["id"], c["seconds_before_onset"]) for c in answer["changes"]] == [
        (deploy.pk, 240.0),
        (flag.pk, 1200.0),
    ]
    listed = client_with_role("viewer").get(ANOMALIES).json()["results"]
    (row,) = [r for r in listed if r["id"] == anomaly.pk]
    assert [c["title"] for c in row["changes"]] == ["checkout 1.4.2", "new-cart on"]


def test_the_list_reads_the_changes_once_whatever_its_length(client_with_role):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    viewer = client_with_role("viewer")
    change_record(title="checkout 1.4.2", at=timezone.now() - timedelta(minutes=10))

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert viewer.get(ANOMALIES, {"limit": 1000}).status_code == 200
        return len(captured.captured_queries)

    _checkout_anomaly()
    queries()  # the key's first use of the minute is recorded
    few = queries()
    for _ in range(5):
        _checkout_anomaly()
    assert queries() == few


def test_the_page_and_the_admin_say_what_changed_before_it(eager, admin_client):
    ResponsePlaybook.objects.create(name="pager", action="email", target="oncall@example.com")
    anomaly = _checkout_anomaly(at=timezone.now())
    change_record(
        title="checkout 1.4.2",
        at=anomaly.started_at - timedelta(minutes=4),
        labels={"service": "checkout"},
        url="https://ci.example/runs/812",
    )
    eager([anomaly], timezone.now())
    (page,) = mail.outbox
    assert "; changed just before: deploy checkout 1.4.2 (4 min before)" in page.body
    html = admin_client.get(f"/admin/anomalies/anomaly/{anomaly.pk}/change/").content.decode()
    assert '<a href="https://ci.example/runs/812">deploy checkout 1.4.2 (4 min before)</a>' in html
    assert admin_client.get("/admin/telemetry/changeevent/").status_code == 200


def _scale(monkeypatch, desired: int, **resource_fields) -> None:
    """A proposed change of a resource from 4 units to `desired`, executed by a recording
    actuator, whatever the resource's actuator kind says."""
    monkeypatch.setattr(scaling_services, "actuator_for", lambda kind: RecordingActuator())
    row = ScalingDecision.objects.create(
        resource=resource(**resource_fields),
        at=timezone.now(),
        current_units=4,
        desired_units=desired,
        recommendation=desired,
        action="scale_up" if desired > 4 else "scale_down",
        status="proposed",
    )
    assert scaling_services.decision_execute(decision_id=row.pk).status == "executed"


def test_a_size_an_actuator_applied_is_recorded_as_a_change_and_a_dry_run_is_not(monkeypatch):
    labels = {"service": "checkout"}
    _scale(monkeypatch, 2, name="dry", actuator="dry_run", load_series_labels=labels)
    assert not ChangeEvent.objects.filter(source="scaling").exists()
    _scale(monkeypatch, 2, name="web", actuator="webhook", load_series_labels=labels)
    change = ChangeEvent.objects.get(source="scaling")
    assert (change.kind, change.source, change.labels) == (
        "scaling",
        "scaling",
        {"service": "checkout"},
    )
    assert change.title == "web: 4 -> 2 units (scale_down)"
    anomaly = _checkout_anomaly(at=timezone.now() + timedelta(minutes=1))
    from anomalies.selectors import changes_before

    assert changes_before([anomaly])[anomaly.pk] == [change]


def test_detect_names_an_incident_s_suspects_from_any_of_its_members(client_with_role):
    """The deploy is labelled with the endpoint it broke; the incident is led by the
    database the endpoint overloaded, whose series has no such label."""
    from tests.anomalies.test_inhibition import _blames

    onset = timezone.now() - timedelta(minutes=20)
    db = AnomalyFactory(series=series_ensure(name="db.connections.active"), started_at=onset)
    checkout = _checkout_anomaly(at=onset + timedelta(minutes=2))
    _blames(checkout, db)
    deploy = change_record(
        title="checkout 1.4.2", at=onset - timedelta(minutes=3), labels={"service": "checkout"}
    )
    answer = client_with_role("viewer").get("/admin/api/phase3/anomaly/detect").json()
    (incident,) = [i for i in answer["incidents"] if i["cause"] == db.pk]
    assert [(c["id"], c["seconds_before_onset"]) for c in incident["changes"]] == [
        (deploy.pk, 180.0)
    ]
    (row,) = [a for a in answer["anomalies"] if a["id"] == db.pk]
    assert row["changes"] == []  # on its own, the database's series is not the deploy's


def test_an_experiment_s_lifecycle_is_recorded_as_feature_flag_changes():
    """Starting, stopping, shipping, ramping and rolling back an experiment change what
    users see: each is a change event, and an anomaly soon after names it."""
    from personalization.models import Experiment
    from personalization.services.experiments import experiment_start
    from personalization.services.shipping import (
        experiment_rollout_set,
        experiment_ship,
        experiment_unship,
    )
    from tests.personalization.factories import ExperimentFactory

    exp = ExperimentFactory(status=Experiment.Status.DRAFT, starts_at=None)
    experiment_start(experiment_id=exp.pk)
    experiment_ship(experiment_id=exp.pk, variant="treatment", rollout_percent=10, by="ana")
    experiment_rollout_set(experiment_id=exp.pk, rollout_percent=50, by="ana")
    experiment_unship(experiment_id=exp.pk, by="ana")
    recorded = ChangeEvent.objects.filter(source="personalization").order_by("pk")
    assert [c.title for c in recorded] == [
        f"experiment {exp.key}: started",
        f"experiment {exp.key}: stopped",
        f'experiment {exp.key}: "treatment" shipped to 10 %',
        f'experiment {exp.key}: "treatment" at 50 %',
        f'experiment {exp.key}: "treatment" rolled back',
    ]
    assert all((c.kind, c.labels) == ("feature_flag", {}) for c in recorded)
    assert recorded.last().created_by == "ana"
    anomaly = _checkout_anomaly(at=timezone.now() + timedelta(minutes=1))
    from anomalies.selectors import changes_before

    named = changes_before([anomaly])[anomaly.pk]
    assert {c.source for c in named} == {"personalization"} and len(named) == 5


def test_an_applied_recommendation_is_a_change_on_its_endpoint():
    from optimization import services as optimization
    from optimization.models import Recommendation

    series = series_ensure(name="db.time.ms", labels={"endpoint": "/api/checkout"})
    rec = Recommendation.objects.create(
        dedup_key="k",
        category="n_plus_one",
        title="Batch the order lines query",
        endpoint="/api/checkout",
        confidence=0.8,
        confidence_explanation="e",
        predicted_ms_saved_per_day=1e6,
        predicted_db_ms_saved_per_day=1e6,
        complexity="low",
        risk="low",
        rollback_plan="r",
        metric_series=series,
        first_seen_at=timezone.now() - timedelta(days=7),
    )
    applied = timezone.now() - timedelta(minutes=10)
    optimization.recommendation_mark_applied(
        recommendation_id=rec.pk, actor="ana", applied_at=applied
    )
    optimization.recommendation_rollback(recommendation_id=rec.pk, actor="ana", reason="slower")
    recorded = list(ChangeEvent.objects.filter(source="optimization").order_by("pk"))
    assert [(c.title, c.kind, c.labels, c.created_by) for c in recorded] == [
        ("optimization applied: Batch the order lines query", "config",
         {"endpoint": "/api/checkout"}, "ana"),
        ("optimization rolled back: Batch the order lines query", "config",
         {"endpoint": "/api/checkout"}, "ana"),
    ]  # fmt: skip
    assert recorded[0].at == applied
    slower = AnomalyFactory(
        series=series_ensure(name="http.latency.p95", labels={"endpoint": "/api/checkout"}),
        started_at=applied + timedelta(minutes=5),
    )
    from anomalies.selectors import changes_before

    assert changes_before([slower])[slower.pk][0] == recorded[0]


def test_an_action_stands_when_its_change_record_is_refused(monkeypatch, caplog):
    """Labels written from a shell that the checks refuse: the scaling change is applied
    and recorded as executed, and only the change event is left out, with a warning."""
    _scale(monkeypatch, 6, name="odd", actuator="webhook", load_series_labels={"service": 3})
    assert not ChangeEvent.objects.filter(source="scaling").exists()
    assert "odd: 4 -> 6 units (scale_up)" in caplog.text and "not recorded" in caplog.text
