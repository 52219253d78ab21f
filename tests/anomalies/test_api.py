"""The anomaly API: roles, validation (400 naming the field) and operator actions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from anomalies.models import (
    Anomaly,
    DetectionRule,
    DismissedPattern,
    ResponsePlaybook,
    RootCauseCandidate,
)
from telemetry.services import series_ensure
from tests.anomalies.factories import AnomalyFactory
from tests.choices import assert_names_valid_choices

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
    _anomaly(name="api.revenue", methods=["pattern", "collapse"])
    response = client_with_role("viewer").get(BASE + "anomaly/detect")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 4
    assert body["by_method"]["statistical"] == 1 and body["by_method"]["learned"] == 1
    assert body["by_method"]["stalled"] == 1 and body["by_method"]["pattern"] == 3
    assert body["by_method"]["collapse"] == 1
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


def test_detect_reads_times_as_telemetry_does(client_with_role):
    """Epoch seconds are a moment here as in telemetry's reads; milliseconds are refused
    with the ingestion's words instead of DRF's "wrong format" list."""
    _anomaly(name="api.epoch", severity="warning", methods=["statistical"])
    client = client_with_role("viewer")
    now = timezone.now()
    hour_ago = str(int((now - timedelta(hours=1)).timestamp()))
    body = client.get(BASE + "anomaly/detect", {"since": hour_ago}).json()
    assert body["count"] == 1
    assert body["since"].startswith((now - timedelta(hours=1)).strftime("%Y-%m-%dT%H"))
    earlier = int((now - timedelta(days=3)).timestamp())
    before = client.get(BASE + "anomaly/detect", {"since": earlier, "until": earlier + 3600})
    assert before.json()["count"] == 0
    refused = client.get(BASE + "anomaly/detect", {"since": hour_ago + "000"})
    assert refused.status_code == 400
    assert "milliseconds" in refused.json()["since"][0]


def test_detect_counts_every_anomaly_of_the_window_not_only_the_listed_ones(client_with_role):
    # A fleet-wide incident: 5 critical anomalies and one warning, listed 2 at a time. The
    # summary said "2 anomalies, 2 critical": the on-call read the incident as small.
    for k in range(5):
        _anomaly(name=f"api.fleet.{k}", severity="critical", methods=["statistical"])
    _anomaly(name="api.fleet.cpu", severity="warning", methods=["learned"])
    body = client_with_role("viewer").get(BASE + "anomaly/detect?limit=2").json()
    assert len(body["anomalies"]) == 2
    assert body["count"] == 6
    assert body["by_severity"] == {"info": 0, "warning": 1, "critical": 5}
    assert body["by_method"]["statistical"] == 5 and body["by_method"]["learned"] == 1
    # The filters still apply to the counts.
    body = client_with_role("viewer").get(BASE + "anomaly/detect?limit=1&severity=warning").json()
    assert body["count"] == 1 and body["by_severity"]["critical"] == 0


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


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"action": "celery_task", "target": "no.such.task"}, "target"),
        ({"action": "celery_task", "target": "celery.backend_cleanup"}, "target"),
        (
            {"action": "celery_task", "target": "scaling.evaluate", "arguments": {"x": 1}},
            "arguments",
        ),
        ({"action": "celery_task", "target": "scaling.evaluate", "arguments": [1]}, "arguments"),
        ({"action": "webhook", "target": "http://"}, "target"),
        ({"action": "webhook", "target": "http://exa mple.com/x"}, "target"),
        ({"action": "slack", "target": "#ops-alerts"}, "target"),
        ({"action": "email", "target": " , "}, "target"),
        ({"action": "email", "target": "ops@example.com, not-an-address"}, "target"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 11}, "max_attempts"),
        ({"labels": ["env", "prod"]}, "labels"),
        ({"labels": {"env": 1}}, "labels"),
    ],
)
def test_playbooks_the_job_could_not_run_are_refused(client_with_role, change, field):
    playbook = {"name": "p", "action": "email", "target": "ops@example.com", **change}
    response = client_with_role("admin").post(BASE + "anomaly/playbooks", playbook, format="json")
    assert response.status_code == 400 and field in response.json(), response.json()


def test_rule_bounds_and_labels_are_checked_on_update_too(client_with_role):
    admin = client_with_role("admin")
    rule = {"name": "band", "series_name": "cpu", "above": 90, "below": 10}
    created = admin.post(BASE + "anomaly/rules", rule, format="json")
    assert created.status_code == 201
    url = f"{BASE}anomaly/rules/{created.json()['id']}"
    inverted = admin.patch(url, {"below": 95}, format="json")  # every value would breach
    assert inverted.status_code == 400 and "below" in inverted.json()
    bad_labels = admin.patch(url, {"labels": {"env": ["prod"]}}, format="json")
    assert bad_labels.status_code == 400 and "labels" in bad_labels.json()


def test_invalid_status_changes_are_refused_naming_the_status(client_with_role):
    operator = client_with_role("operator")
    a = _anomaly()
    url = f"{BASE}anomaly/anomalies/{a.pk}/"
    noted = operator.post(url + "acknowledge", {"note": "on it"}, format="json").json()
    assert noted["status"] == "acknowledged" and noted["note"] == "on it"
    resolved = operator.post(url + "resolve").json()
    assert resolved["status"] == "resolved" and resolved["resolved_by"]
    again = operator.post(url + "acknowledge")
    assert again.status_code == 400 and "resolved" in again.json()["status"][0]
    assert operator.post(url + "resolve").status_code == 200  # resolving twice is harmless


def test_detect_window_ends_at_until_when_since_is_missing(client_with_role):
    a = _anomaly()
    until = (a.started_at + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    body = client_with_role("viewer").get(BASE + "anomaly/detect", {"until": until}).json()
    assert body["count"] == 1 and body["since"] < body["until"]
    huge = client_with_role("viewer").get(BASE + "anomaly/detect?series=" + "9" * 25)
    assert huge.status_code == 400 and "series" in huge.json()


def test_admin_forms_refuse_rows_the_job_could_not_use(admin_client):
    response = admin_client.post(
        "/admin/anomalies/detectionrule/add/",
        {"name": "r", "series_name": "cpu", "labels": "[1, 2]", "min_duration_seconds": 0},
    )
    assert response.status_code == 200  # the form again, with its errors
    errors = response.context["adminform"].form.errors
    assert "labels" in errors and "above" in errors
    response = admin_client.post(
        "/admin/anomalies/responseplaybook/add/",
        {
            "name": "p",
            "action": "celery_task",
            "target": "no.such.task",
            "labels": "{}",
            "arguments": "{}",
            "min_severity": "warning",
            "max_attempts": 4,
        },
    )
    assert "target" in response.context["adminform"].form.errors
    assert not DetectionRule.objects.exists() and not ResponsePlaybook.objects.exists()


def test_admin_cannot_edit_status_around_the_actions(admin_client):
    # A status typed into the form would skip ending the anomaly and learning the pattern.
    a = _anomaly()
    form = admin_client.get(f"/admin/anomalies/anomaly/{a.pk}/change/").context["adminform"].form
    assert "note" in form.fields and "status" not in form.fields


def test_a_note_saved_in_the_admin_keeps_what_the_job_wrote_meanwhile():
    from django.contrib import admin
    from django.utils import timezone

    a = _anomaly()
    page = Anomaly.objects.get(pk=a.pk)  # the change page as the operator loaded it
    ended = timezone.now()
    Anomaly.objects.filter(pk=a.pk).update(ended_at=ended, status="resolved", peak_score=0.99)
    page.note = "failed over to the replica"
    admin.site._registry[Anomaly].save_model(None, page, None, change=True)
    a.refresh_from_db()
    assert a.note == "failed over to the replica"
    assert (a.ended_at, a.status, a.peak_score) == (ended, "resolved", 0.99)


def test_admin_action_reports_anomalies_it_could_not_change(admin_client):
    resolved = _anomaly(status="resolved")
    response = admin_client.post(
        "/admin/anomalies/anomaly/",
        {"action": "acknowledge", "_selected_action": [resolved.pk]},
        follow=True,
    )
    texts = [str(m) for m in response.context["messages"]]
    assert any("only an open anomaly" in t for t in texts)
    resolved.refresh_from_db()
    assert resolved.status == "resolved"


def test_executions_are_read_only(client_with_role):
    assert client_with_role("viewer").get(BASE + "anomaly/executions").status_code == 200
    assert client_with_role("admin").post(BASE + "anomaly/executions", {}).status_code == 405


def _executions_world():
    """Two anomalies, two playbooks, executions in three states created at three times."""
    from django.utils import timezone

    from anomalies.models import ResponseExecution

    now = timezone.now()
    first, second = _anomaly("exec.a"), _anomaly("exec.b")
    hook = ResponsePlaybook.objects.create(name="hook", action="webhook", target="http://h.ex/")
    mail = ResponsePlaybook.objects.create(name="mail", action="email", target="ops@example.com")
    rows = {
        "old": ResponseExecution.objects.create(
            playbook=hook, anomaly=first, status="failed", created_at=now - timedelta(days=2)
        ),
        "hour": ResponseExecution.objects.create(
            playbook=mail, anomaly=first, status="succeeded", created_at=now - timedelta(hours=1)
        ),
        "now": ResponseExecution.objects.create(
            playbook=hook, anomaly=second, status="succeeded", created_at=now
        ),
    }
    return now, first, second, hook, mail, rows


def test_executions_filter_by_anomaly_playbook_status_and_time(client_with_role):
    now, first, second, hook, mail, rows = _executions_world()
    client = client_with_role("viewer")

    def listed(**query) -> set[str]:
        response = client.get(BASE + "anomaly/executions", query)
        assert response.status_code == 200, response.json()
        ids = {r["id"] for r in response.json()["results"]}
        return {name for name, e in rows.items() if e.pk in ids}

    assert listed() == {"old", "hour", "now"}
    assert listed(anomaly=first.pk) == {"old", "hour"}
    assert listed(playbook=hook.pk) == {"old", "now"}
    assert listed(status="succeeded") == {"hour", "now"}
    assert listed(anomaly=first.pk, status="succeeded") == {"hour"}
    day_ago = (now - timedelta(days=1)).isoformat()
    half_hour_ago = (now - timedelta(minutes=30)).isoformat()
    assert listed(since=day_ago) == {"hour", "now"}
    assert listed(until=half_hour_ago) == {"old", "hour"}
    assert listed(since=day_ago, until=half_hour_ago) == {"hour"}
    # Epoch seconds, as telemetry's reads take them: a script's `date +%s` works everywhere.
    epoch = str(int((now - timedelta(days=1)).timestamp()))
    assert listed(since=epoch, until=str((now - timedelta(minutes=30)).timestamp())) == {"hour"}
    assert listed(anomaly=second.pk, playbook=mail.pk) == set()


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("anomaly=abc", "anomaly"),
        ("anomaly=0", "anomaly"),
        ("playbook=" + "9" * 30, "playbook"),
        ("status=sent", "status"),
        ("since=yesterday", "since"),
        ("until=2026-13-01", "until"),
        ("since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "until"),
        ("since=1700000000000", "since"),
    ],
)
def test_executions_refuse_bad_filters_naming_the_field(client_with_role, query, field):
    response = client_with_role("viewer").get(BASE + "anomaly/executions?" + query)
    assert response.status_code == 400
    assert field in response.json()


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
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(CommandError, match="empty"):
        call_command("detect_anomalies", str(empty), out_dir=str(tmp_path / "out"))
    good = "timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:05:00,2\n"
    for folder in ("a", "b"):
        (tmp_path / folder / "data").mkdir(parents=True)
        (tmp_path / folder / "data" / "x.csv").write_text(good)
    same_name = [str(tmp_path / f / "data" / "x.csv") for f in ("a", "b")]
    with pytest.raises(CommandError, match="both be written"):
        call_command("detect_anomalies", *same_name, out_dir=str(tmp_path / "out"))
    with pytest.raises(CommandError, match="cannot create"):
        call_command("detect_anomalies", same_name[0], out_dir=str(empty / "out"))
    assert not (tmp_path / "out").exists()


def test_overview_endpoint_carries_the_anomaly_section(client_with_role):
    before = client_with_role("viewer").get(BASE + "overview").json()["anomalies"]
    _anomaly(severity="critical")
    after = client_with_role("viewer").get(BASE + "overview").json()["anomalies"]
    assert after["open_anomalies"] == before["open_anomalies"] + 1


SLACK = "https://hooks.slack.com/services/T0SECRET/B0SECRET/xoxbSECRETtoken"
HOOK = "https://events.pagerduty.example:8443/v2/enqueue?routing_key=SECRETkey"


def _playbooks_with_secrets():
    from anomalies.models import ResponseExecution

    slack = ResponsePlaybook.objects.create(name="slack", action="slack", target=SLACK)
    hook = ResponsePlaybook.objects.create(name="pd", action="webhook", target=HOOK)
    mail = ResponsePlaybook.objects.create(name="mail", action="email", target="ops@example.com")
    anomaly = _anomaly("secret.latency")
    ResponseExecution.objects.create(
        playbook=slack,
        anomaly=anomaly,
        status="retrying",
        error=(
            "Slack failed: HTTPSConnectionPool(host='hooks.slack.com', port=443): Max retries "
            "exceeded with url: /services/T0SECRET/B0SECRET/xoxbSECRETtoken (Caused by x)"
        ),
    )
    ResponseExecution.objects.create(
        playbook=hook,
        anomaly=anomaly,
        status="failed",
        error=f"webhook answered HTTP 302 (redirect to {HOOK}&v=2): not followed",
    )
    return slack, hook, mail


def _secret_free(body: bytes) -> bool:
    return b"SECRET" not in body


@pytest.mark.parametrize(
    ("role", "masked"), [("viewer", True), ("operator", True), ("admin", False)]
)
def test_playbook_urls_are_credentials_shown_to_admins_only(client_with_role, role, masked):
    slack, _, _ = _playbooks_with_secrets()
    client = client_with_role(role)
    listed = client.get(BASE + "anomaly/playbooks")
    targets = {p["name"]: p["target"] for p in listed.json()["results"]}
    one = client.get(BASE + f"anomaly/playbooks/{slack.pk}").json()["target"]
    executions = client.get(BASE + "anomaly/executions")
    assert targets["mail"] == "ops@example.com"  # who is paged is no credential
    if masked:
        assert targets == {
            "slack": "https://hooks.slack.com/…",
            "pd": "https://events.pagerduty.example:8443/…",
            "mail": "ops@example.com",
        }
        assert one == "https://hooks.slack.com/…"
        assert _secret_free(listed.content) and _secret_free(executions.content)
        errors = [e["error"] for e in executions.json()["results"]]
        assert all("…" in error for error in errors)  # the reason stays readable
    else:
        assert (targets["slack"], targets["pd"], one) == (SLACK, HOOK, SLACK)
        assert not _secret_free(executions.content)


def test_staff_sessions_see_playbook_urls_by_role(admin_client):
    from django.contrib.auth.models import Group, Permission, User
    from rest_framework.test import APIClient

    _playbooks_with_secrets()
    user = User.objects.create_user("look", password="pw", is_staff=True)
    user.groups.add(Group.objects.create(name="phase3-viewer"))
    for codename in ("view_responseplaybook", "view_responseexecution", "view_anomaly"):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = APIClient()
    client.force_login(user)
    for path in ("anomaly/playbooks", "anomaly/executions"):
        response = client.get(BASE + path)
        assert response.status_code == 200 and _secret_free(response.content)
        assert not _secret_free(admin_client.get(BASE + path).content)  # a superuser is admin
    # The admin pages a viewer may open show the same masks, and its search cannot be
    # used to guess a token letter by letter.
    admin = APIClient()
    admin.force_login(user)
    for url in (
        "/admin/anomalies/responseplaybook/",
        "/admin/anomalies/responseexecution/",
        f"/admin/anomalies/responseplaybook/{ResponsePlaybook.objects.get(name='slack').pk}/change/",
    ):
        page = admin.get(url)
        assert page.status_code == 200 and _secret_free(page.content), url
    # (The page repeats the search words, so only the count is looked at.)
    assert b"0 results" in admin.get("/admin/anomalies/responseplaybook/?q=xoxbSECRET").content
    assert b"1 result" in admin_client.get("/admin/anomalies/responseplaybook/?q=xoxb").content
    assert not _secret_free(admin_client.get("/admin/anomalies/responseplaybook/").content)


TASK_ARGUMENTS = {
    "resource_ids": [3, 4],
    "api_key": "SECRETkey1",
    "Options": {"DB_Password": "SECRETpw", "hosts": ["postgres://ops:SECRETpw2@db:5432/x"]},
    "headers": [{"Authorization": "Bearer SECRETjwt"}],
    "callback": "https://hooks.example/cb/SECRETpath?sig=1",
    "note": "scale out",
}


def _task_playbook_with_secrets() -> ResponsePlaybook:
    from anomalies.models import ResponseExecution

    task = ResponsePlaybook.objects.create(
        name="scale", action="celery_task", target="scaling.evaluate", arguments=TASK_ARGUMENTS
    )
    ResponseExecution.objects.create(
        playbook=task,
        anomaly=_anomaly("secret.cpu"),
        status="succeeded",
        result={"task": "scaling.evaluate", "task_id": "t-1", "kwargs": TASK_ARGUMENTS},
    )
    return task


@pytest.mark.parametrize(
    ("role", "masked"), [("viewer", True), ("operator", True), ("admin", False)]
)
def test_a_task_playbooks_secret_arguments_are_shown_to_admins_only(client_with_role, role, masked):
    # The arguments were shown to every viewer as typed: an API key or a DSN among a
    # scaling task's kwargs was readable by anyone with a read-only key.
    task = _task_playbook_with_secrets()
    client = client_with_role(role)
    listed = client.get(BASE + "anomaly/playbooks")
    one = client.get(BASE + f"anomaly/playbooks/{task.pk}").json()["arguments"]
    executions = client.get(BASE + "anomaly/executions")
    if not masked:
        assert one == TASK_ARGUMENTS and not _secret_free(executions.content)
        return
    assert _secret_free(listed.content) and _secret_free(executions.content)
    assert one == {
        "resource_ids": [3, 4],  # what the task is told to act on stays readable
        "api_key": "[Filtered]",
        "Options": {"DB_Password": "[Filtered]", "hosts": ["postgres://db:5432/…"]},
        "headers": [{"Authorization": "[Filtered]"}],
        "callback": "https://hooks.example/…",
        "note": "scale out",
    }
    assert executions.json()["results"][0]["result"]["kwargs"] == one


def test_staff_below_admin_see_task_arguments_scrubbed_in_the_admin(admin_client):
    from django.contrib.auth.models import Group, Permission, User
    from rest_framework.test import APIClient

    task = _task_playbook_with_secrets()
    user = User.objects.create_user("ops", password="pw", is_staff=True)
    user.groups.add(Group.objects.create(name="phase3-operator"))
    for codename in ("view_responseplaybook", "view_responseexecution"):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    staff = APIClient()
    staff.force_login(user)
    execution = task.runs.get()
    for url in (
        "/admin/anomalies/responseplaybook/",
        f"/admin/anomalies/responseplaybook/{task.pk}/change/",
        f"/admin/anomalies/responseexecution/{execution.pk}/change/",
    ):
        page = staff.get(url)
        assert page.status_code == 200 and _secret_free(page.content), url
        assert b"[Filtered]" in page.content or url.endswith("playbook/"), url
    assert b"0 results" in staff.get("/admin/anomalies/responseplaybook/?q=SECRETkey1").content
    page = admin_client.get(f"/admin/anomalies/responseplaybook/{task.pk}/change/")
    assert b"SECRETkey1" in page.content  # an admin edits them as they are


def _staff_operator(*codenames: str):
    from django.contrib.auth.models import Group, Permission, User
    from django.test import Client

    user = User.objects.create_user("oncall", password="pw", is_staff=True)
    user.groups.add(Group.objects.get_or_create(name="phase3-operator")[0])
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client()
    client.force_login(user)
    return client


def _playbook_form(playbook: ResponsePlaybook, **changes) -> dict:
    import json

    data = {
        "name": playbook.name,
        "enabled": "on",
        "series_name": playbook.series_name,
        "labels": "{}",
        "min_severity": playbook.min_severity,
        "action": playbook.action,
        "max_attempts": str(playbook.max_attempts),
        "effect_grace_seconds": str(playbook.effect_grace_seconds),
        # What the form shows them as, and a browser sends back.
        "group_by": "[]",
        "group_wait_seconds": str(playbook.group_wait_seconds),
        "active_weekdays": "[]",
        "active_time_zone": playbook.active_time_zone,
        "created_at_0": f"{playbook.created_at:%Y-%m-%d}",
        "created_at_1": f"{playbook.created_at:%H:%M:%S}",
    }
    data.update(changes)
    if isinstance(data.get("arguments"), dict):
        data["arguments"] = json.dumps(data["arguments"])
    return data


def test_staff_who_may_change_playbooks_replace_a_url_they_cannot_read(admin_client):
    # Staff below the admin role saw the URL masked and read-only: a webhook that moved
    # could not be repointed by the on-call allowed to change playbooks.
    hook = ResponsePlaybook.objects.create(
        name="pd", action="webhook", target=HOOK, arguments={"token": "SECRETextra", "n": 1}
    )
    staff = _staff_operator("view_responseplaybook", "change_responseplaybook")
    url = f"/admin/anomalies/responseplaybook/{hook.pk}/change/"
    page = staff.get(url)
    assert page.status_code == 200 and _secret_free(page.content)
    form = page.context["adminform"].form
    shown_target, shown_arguments = form.initial["target"], form.initial["arguments"]
    assert shown_target == "https://events.pagerduty.example:8443/…"
    assert "target" in form.fields and "arguments" in form.fields  # editable, not read-only

    # Left as shown (or empty), the stored values are kept while the rest is edited.
    for target, arguments in ((shown_target, shown_arguments), ("", "")):
        data = _playbook_form(hook, target=target, arguments=arguments, min_severity="critical")
        saved = staff.post(url, data)
        assert saved.status_code == 302, saved.context["adminform"].form.errors
        hook.refresh_from_db()
        assert (hook.target, hook.min_severity) == (HOOK, "critical")
        assert hook.arguments == {"token": "SECRETextra", "n": 1}
        ResponsePlaybook.objects.filter(pk=hook.pk).update(min_severity="warning")
        hook.refresh_from_db()

    # Kept, the URL cannot become another action's target (the check would quote it).
    refused = staff.post(url, _playbook_form(hook, target=shown_target, action="email"))
    assert refused.status_code == 200 and "target" in refused.context["adminform"].form.errors
    assert _secret_free(refused.content)
    hook.refresh_from_db()
    assert (hook.action, hook.target) == ("webhook", HOOK)

    # A new value replaces it, and is checked like any other.
    bad = staff.post(url, _playbook_form(hook, target="not a url", arguments=shown_arguments))
    assert "target" in bad.context["adminform"].form.errors and _secret_free(bad.content)
    moved = "https://events.pagerduty.example/v2/enqueue?routing_key=NEWkey"
    assert (
        staff.post(url, _playbook_form(hook, target=moved, arguments={"n": 2})).status_code == 302
    )
    hook.refresh_from_db()
    assert (hook.target, hook.arguments) == (moved, {"n": 2})

    assert b"NEWkey" in admin_client.get(url).content  # an admin reads it


def test_a_bad_status_filter_is_400_listing_the_valid_statuses(client_with_role):
    response = client_with_role("viewer").get(BASE + "anomaly/anomalies", {"status": "fixed"})
    assert_names_valid_choices(response, "status", "fixed", Anomaly.Status.values)
