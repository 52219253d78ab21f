"""The anomaly API: roles, validation (400 naming the field) and operator actions."""

from __future__ import annotations

import pytest

from anomalies.models import Anomaly, DismissedPattern, RootCauseCandidate
from telemetry.services import series_ensure
from tests.anomalies.factories import AnomalyFactory

pytestmark = pytest.mark.django_db

BASE = "/admin/api/phase3/"


def _anomaly(name: str = "api.latency", **kw) -> Anomaly:
    return AnomalyFactory(series=series_ensure(name=name), **kw)


def test_detect_lists_recent_anomalies_with_causes_and_method_counts(client_with_role):
    a = _anomaly()
    cause = series_ensure(name="api.db.connections")
    RootCauseCandidate.objects.create(
        anomaly=a, series=cause, rank=1, score=0.9, lead_seconds=600, evidence={}
    )
    _anomaly(name="api.cpu", severity="critical", methods=["learned"])
    _anomaly(name="api.exporter", methods=["pattern", "stalled"])
    response = client_with_role("viewer").get(BASE + "anomaly/detect")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert body["by_method"]["statistical"] == 1 and body["by_method"]["learned"] == 1
    assert body["by_method"]["stalled"] == 1 and body["by_method"]["pattern"] == 2
    listed = {x["id"]: x for x in body["anomalies"]}
    assert listed[a.pk]["root_causes"][0]["series_id"] == cause.pk
    only_critical = client_with_role("viewer").get(BASE + "anomaly/detect/?severity=critical")
    assert only_critical.json()["count"] == 1


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("severity=huge", "severity"),
        ("series=abc", "series"),
        ("since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "until"),
        ("limit=0", "limit"),
    ],
)
def test_detect_rejects_bad_filters_naming_the_field(client_with_role, query, field):
    response = client_with_role("viewer").get(BASE + "anomaly/detect?" + query)
    assert response.status_code == 400
    assert field in response.json()


def test_operator_actions_need_the_operator_role(client_with_role):
    a = _anomaly()
    url = f"{BASE}anomaly/anomalies/{a.pk}/acknowledge"
    assert client_with_role("viewer").post(url).status_code == 403
    response = client_with_role("operator").post(url)
    assert response.status_code == 200 and response.json()["status"] == "acknowledged"


def test_false_positive_through_the_api_records_the_pattern(client_with_role):
    a = _anomaly()
    response = client_with_role("operator").post(
        f"{BASE}anomaly/anomalies/{a.pk}/false-positive/", {"note": "nightly backup"}, format="json"
    )
    assert response.status_code == 200 and response.json()["status"] == "false_positive"
    pattern = DismissedPattern.objects.get(anomaly=a)
    assert pattern.peak_z == a.peak_z and pattern.direction == a.direction


def test_resolve_unknown_anomaly_is_404(client_with_role):
    assert (
        client_with_role("operator").post(f"{BASE}anomaly/anomalies/999999/resolve").status_code
        == 404
    )


def test_rules_are_edited_by_admins_and_validated(client_with_role):
    rule = {"name": "p95 too slow", "series_name": "http.latency.p95", "above": 800}
    assert (
        client_with_role("operator").post(BASE + "anomaly/rules", rule, format="json").status_code
        == 403
    )
    admin = client_with_role("admin")
    assert admin.post(BASE + "anomaly/rules", rule, format="json").status_code == 201
    no_bound = {"name": "empty", "series_name": "x"}
    response = admin.post(BASE + "anomaly/rules", no_bound, format="json")
    assert response.status_code == 400 and "above" in response.json()


def test_playbook_validation_names_the_field(client_with_role):
    admin = client_with_role("admin")
    bad_hook = {"name": "hook", "action": "webhook", "target": "not a url"}
    response = admin.post(BASE + "anomaly/playbooks", bad_hook, format="json")
    assert response.status_code == 400 and "target" in response.json()
    bad_severity = {"name": "x", "action": "email", "target": "a@b.co", "min_severity": "huge"}
    response = admin.post(BASE + "anomaly/playbooks", bad_severity, format="json")
    assert response.status_code == 400 and "min_severity" in response.json()
    good = {"name": "scale", "action": "celery_task", "target": "scaling.evaluate"}
    assert admin.post(BASE + "anomaly/playbooks", good, format="json").status_code == 201


def test_executions_are_read_only(client_with_role):
    assert client_with_role("viewer").get(BASE + "anomaly/executions").status_code == 200
    assert client_with_role("admin").post(BASE + "anomaly/executions", {}).status_code == 405


def test_admin_pages_and_chart_render(admin_client):
    a = _anomaly(points=[[1.7e9, 10.0, 1.0, 0.5, 0.9], [1.7e9 + 300, 9.0, 1.0, 0.5, 0.85]])
    for url in (
        "/admin/anomalies/anomaly/",
        f"/admin/anomalies/anomaly/{a.pk}/change/",
        f"/admin/anomalies/anomaly/{a.pk}/chart/",
        "/admin/anomalies/responseplaybook/",
        "/admin/anomalies/detectorstate/",
    ):
        response = admin_client.get(url)
        assert response.status_code == 200, url
    chart = admin_client.get(f"/admin/anomalies/anomaly/{a.pk}/chart/").content.decode()
    assert "expected band" in chart and "abnormal points" in chart


def test_admin_false_positive_action_records_the_pattern(admin_client):
    a = _anomaly()
    response = admin_client.post(
        "/admin/anomalies/anomaly/",
        {"action": "false_positive", "_selected_action": [a.pk]},
    )
    assert response.status_code == 302
    a.refresh_from_db()
    assert a.status == "false_positive" and DismissedPattern.objects.filter(anomaly=a).exists()


def test_detect_anomalies_command_fails_clearly_on_bad_input(tmp_path):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="no such file"):
        call_command("detect_anomalies", str(tmp_path / "missing.csv"), out_dir=str(tmp_path))
    bad = tmp_path / "bad.csv"
    bad.write_text("time,val\n1,2\n")
    with pytest.raises(CommandError, match="missing column"):
        call_command("detect_anomalies", str(bad), out_dir=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_overview_endpoint_carries_the_anomaly_section(client_with_role):
    before = client_with_role("viewer").get(BASE + "overview").json()["anomalies"]
    _anomaly(severity="critical")
    after = client_with_role("viewer").get(BASE + "overview").json()["anomalies"]
    assert after["open_anomalies"] == before["open_anomalies"] + 1
