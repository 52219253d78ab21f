"""A playbook's `group_by`: anomalies whose series share the named labels are one
notification group, as Alertmanager's route `group_by` makes them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from anomalies.models import Anomaly, ResponseExecution, ResponsePlaybook
from tests.anomalies.test_inhibition import _anomaly, _statuses

pytestmark = pytest.mark.django_db

INHIBITED = ResponseExecution.Status.INHIBITED
SUCCEEDED = ResponseExecution.Status.SUCCEEDED


def _mail_to(address: str) -> list:
    return [m for m in mail.outbox if m.to == [address]]


def _pager(**fields) -> ResponsePlaybook:
    """The on-call's e-mail playbook, grouping by service."""
    return ResponsePlaybook.objects.create(
        **{
            "name": "pager",
            "action": "email",
            "target": "oncall@example.com",
            "group_by": ["service"],
            **fields,
        }
    )


@pytest.mark.parametrize("inhibit_effects", [True, False])
def test_a_service_s_anomalies_are_one_group_that_outlives_its_first_page(eager, inhibit_effects):
    """The checkout service's first anomaly is paged; its later ones, on any series and
    more severe or not, join its group's notifications instead of paging; another
    service, and series without the label, page on their own. When the first anomaly
    ends, the next still abnormal is paged and carries the rest of the group on. Grouping
    does not need inhibition on."""
    t0 = timezone.now()
    _pager(inhibit_effects=inhibit_effects)
    # The same playbook without grouping: every anomaly is its own page (nothing ties
    # them in the root-cause ranking).
    ResponsePlaybook.objects.create(name="audit", action="email", target="audit@example.com")
    cart = _anomaly("http.latency.p95", t0, "warning", service="checkout", endpoint="/cart")
    eager([cart], t0)
    at = t0 + timedelta(minutes=1)
    errors = _anomaly("http.errors.ratio", at, service="checkout")
    payments = _anomaly("payments.failed", at + timedelta(seconds=30), service="checkout")
    queue = _anomaly("queue.depth", at, service="search")
    cron = _anomaly("cron.lag", at)
    every = [cart, errors, payments, queue, cron]
    eager(every, at)
    assert _statuses("pager") == {
        str(cart.series): SUCCEEDED,
        str(errors.series): INHIBITED,
        str(payments.series): INHIBITED,
        str(queue.series): SUCCEEDED,
        str(cron.series): SUCCEEDED,
    }
    assert set(_statuses("audit").values()) == {SUCCEEDED}
    held = ResponseExecution.objects.get(playbook__name="pager", anomaly=errors)
    assert held.result["group"] == {"service": "checkout"}
    assert held.result["inhibited_by"] == cart.pk
    assert held.error.startswith(
        'not sent: the first of its group {service="checkout"} this playbook paged, '
        f"anomaly {cart.pk} on {cart.series}, goes on;"
    )
    # The group's update names what joined it, at once: critical members behind a
    # warning's page are an escalation (warnings wait for the update interval, below).
    (update,) = _mail_to("oncall@example.com")[3:]
    assert update.subject == (
        "Update: http.latency.p95{endpoint=/cart,service=checkout} is abnormal (warning)"
    )
    assert (
        '; also abnormal in its group {service="checkout"}: '
        "http.errors.ratio{service=checkout} (critical), payments.failed{service=checkout} "
        "(critical)" in update.body
    )
    eager(every, t0 + timedelta(minutes=3))
    eager(every, t0 + timedelta(minutes=6))
    assert len(_mail_to("oncall@example.com")) == 4
    # The first anomaly ends: the group goes on through the next one by onset, paged now,
    # and the rest of the group is held back behind it.
    Anomaly.objects.filter(pk=cart.pk).update(ended_at=t0 + timedelta(minutes=9))
    eager([errors, payments, queue, cron], t0 + timedelta(minutes=10))
    statuses = _statuses("pager")
    assert statuses[str(errors.series)] == SUCCEEDED
    assert statuses[str(payments.series)] == INHIBITED
    moved = ResponseExecution.objects.get(playbook__name="pager", anomaly=payments)
    assert moved.result["inhibited_by"] == errors.pk
    (page,) = _mail_to("oncall@example.com")[4:]
    assert page.subject == "http.errors.ratio{service=checkout} is abnormal (critical)"
    assert (
        'also abnormal in its group {service="checkout"}: payments.failed{service=checkout}'
        in page.body
    )
    # Nothing new: nothing sent.
    eager([errors, payments, queue, cron], t0 + timedelta(minutes=16))
    assert len(_mail_to("oncall@example.com")) == 5


def test_a_group_member_that_turns_critical_is_news_for_the_group(eager):
    """Paged for a warning, the receiver hears at the next run that a member held back in
    the group is now critical, without waiting for the update interval (as the page's own
    escalation would not), once."""
    t0 = timezone.now()
    _pager()
    cart = _anomaly("http.latency.p95", t0, "warning", service="checkout")
    errors = _anomaly("http.errors.ratio", t0 + timedelta(minutes=1), "warning", service="checkout")
    eager([cart], t0)
    eager([cart, errors], t0 + timedelta(minutes=1))
    eager([cart, errors], t0 + timedelta(minutes=6))
    assert [m.subject.split(" ")[0] for m in mail.outbox] == [
        "http.latency.p95{service=checkout}",
        "Update:",
    ]
    assert "http.errors.ratio{service=checkout} (warning)" in mail.outbox[1].body
    eager([cart, errors], t0 + timedelta(minutes=7))
    assert len(mail.outbox) == 2  # nothing new
    Anomaly.objects.filter(pk=errors.pk).update(severity="critical")
    # Two minutes after the last update, inside the five-minute update interval.
    eager([cart, errors], t0 + timedelta(minutes=8))
    assert len(mail.outbox) == 3
    assert mail.outbox[2].subject.startswith("Update:")
    assert "http.errors.ratio{service=checkout} (critical)" in mail.outbox[2].body
    page = ResponseExecution.objects.get(anomaly=cart)
    assert page.notified_severity == "critical"
    eager([cart, errors], t0 + timedelta(minutes=9))
    eager([cart, errors], t0 + timedelta(minutes=20))
    assert len(mail.outbox) == 3  # told once


def test_a_reminder_sent_when_a_member_turns_critical_tells_of_it_once(eager):
    """The page's reminder is due in the run where a member turns critical: it names the
    member with its new severity, so no update follows it."""
    t0 = timezone.now()
    _pager(repeat_interval_seconds=600, update_interval_seconds=3600)
    cart = _anomaly("http.latency.p95", t0, "warning", service="checkout")
    errors = _anomaly("http.errors.ratio", t0 + timedelta(minutes=1), "warning", service="checkout")
    eager([cart], t0)
    eager([cart, errors], t0 + timedelta(minutes=1))
    assert len(mail.outbox) == 1
    Anomaly.objects.filter(pk=errors.pk).update(severity="critical")
    eager([cart, errors], t0 + timedelta(minutes=11))
    assert [m.subject.split(" ")[0] for m in mail.outbox] == [
        "http.latency.p95{service=checkout}",
        "Reminder:",
    ]
    assert "http.errors.ratio{service=checkout} (critical)" in mail.outbox[1].body
    assert ResponseExecution.objects.get(anomaly=cart).notified_severity == "critical"
    eager([cart, errors], t0 + timedelta(minutes=12))
    assert len(mail.outbox) == 2


def test_a_group_member_calm_again_is_not_paged_when_the_first_ends(eager):
    """A held-back member waiting out its quiet period is part of the group's past, not a
    new page: it is paged only if it is abnormal again."""
    t0 = timezone.now()
    _pager()
    cart = _anomaly("http.latency.p95", t0, service="checkout")
    errors = _anomaly("http.errors.ratio", t0 + timedelta(minutes=1), service="checkout")
    eager([cart, errors], t0 + timedelta(minutes=1))
    assert len(mail.outbox) == 1
    Anomaly.objects.filter(pk=cart.pk).update(ended_at=t0 + timedelta(minutes=4))
    Anomaly.objects.filter(pk=errors.pk).update(recovered_at=t0 + timedelta(minutes=3))
    eager([errors], t0 + timedelta(minutes=5))
    assert _statuses("pager")[str(errors.series)] == INHIBITED
    assert len(mail.outbox) == 1
    Anomaly.objects.filter(pk=errors.pk).update(recovered_at=None)
    eager([errors], t0 + timedelta(minutes=6))
    assert _statuses("pager")[str(errors.series)] == SUCCEEDED
    assert len(mail.outbox) == 2


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"group_by": "service"}, "list"),
        ({"group_by": ["bad key!"]}, "must match"),
        ({"group_by": ["service", "service"]}, "twice"),
        ({"group_by": [f"l{i}" for i in range(11)]}, "at most 10"),
        (
            {"group_by": ["service"], "action": "celery_task", "target": "scaling.evaluate"},
            "only notifications",
        ),
    ],
)
def test_a_group_by_that_cannot_work_is_refused_naming_the_field(client_with_role, fields, problem):
    response = client_with_role("admin").post(
        "/admin/api/phase3/anomaly/playbooks",
        {"name": "p", "action": "webhook", "target": "https://hooks.example.com/x"} | fields,
        format="json",
    )
    assert response.status_code == 400, response.content
    assert problem in " ".join(response.json()["group_by"])
    assert not ResponsePlaybook.objects.exists()


def test_a_group_by_is_saved_and_read_back(client_with_role):
    client = client_with_role("admin")
    created = client.post(
        "/admin/api/phase3/anomaly/playbooks",
        {
            "name": "p",
            "action": "webhook",
            "target": "https://hooks.example.com/x",
            "group_by": ["service", "env"],
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    url = f"/admin/api/phase3/anomaly/playbooks/{created.json()['id']}"
    assert client.get(url).json()["group_by"] == ["service", "env"]
    assert client.patch(url, {"group_by": []}, format="json").status_code == 200
    assert ResponsePlaybook.objects.get().group_by == []


def test_the_admin_form_refuses_a_grouped_task_and_shows_the_field(admin_client):
    """The admin's form runs the model's checks: a task playbook with `group_by` is
    refused on that field."""
    from django.core.exceptions import ValidationError

    playbook = ResponsePlaybook(
        name="scale", action="celery_task", target="scaling.evaluate", group_by=["service"]
    )
    with pytest.raises(ValidationError) as refused:
        playbook.full_clean()
    assert "group_by" in refused.value.message_dict
    page = admin_client.get("/admin/anomalies/responseplaybook/add/")
    assert page.status_code == 200 and 'name="group_by"' in page.content.decode()


@pytest.mark.parametrize("operator", ["acknowledge", "false_positive"])
def test_an_operator_on_the_first_anomaly_decides_whether_the_group_moves_on(
    eager, django_capture_on_commit_callbacks, operator
):
    """Acknowledged, the first anomaly still goes on and its page still stands for the
    group: the others stay held back. Dismissed as a false positive, it no longer stands
    for anything: the next member is paged at the next run, carrying the group."""
    from anomalies import services

    t0 = timezone.now()
    _pager()
    cart = _anomaly("http.latency.p95", t0, service="checkout")
    errors = _anomaly("http.errors.ratio", t0 + timedelta(minutes=1), service="checkout")
    eager([cart], t0)
    eager([cart, errors], t0 + timedelta(minutes=1))
    assert len(mail.outbox) == 1
    with django_capture_on_commit_callbacks(execute=True):
        if operator == "acknowledge":
            services.anomaly_acknowledge(anomaly_id=cart.pk, by="ops")
        else:
            services.anomaly_mark_false_positive(anomaly_id=cart.pk, by="ops")
    eager([cart, errors], t0 + timedelta(minutes=2))
    paged = _statuses("pager")[str(errors.series)] == SUCCEEDED
    assert paged is (operator == "false_positive")
    assert len(mail.outbox) == (2 if paged else 1)


def test_a_group_whose_first_page_has_a_cause_elsewhere_still_tells_of_its_members(eager):
    """The API team's playbook covers `http.*` only. Its first checkout page is put down to
    the database (which the DBAs page), so that page stands for the database's incident;
    the error ratio that joins the checkout group later, with no cause of its own, is
    still news for the group's update."""
    from tests.anomalies.test_inhibition import _blames

    t0 = timezone.now()
    _pager(name="api", target="api@example.com", series_name="http.*")
    db = _anomaly("db.connections.active", t0 - timedelta(minutes=2))
    cart = _anomaly("http.latency.p95", t0, service="checkout", endpoint="/cart")
    _blames(cart, db)
    eager([db, cart], t0)
    errors = _anomaly("http.errors.ratio", t0 + timedelta(minutes=1), service="checkout")
    eager([db, cart, errors], t0 + timedelta(minutes=1))
    assert _statuses("api")[str(errors.series)] == INHIBITED
    eager([db, cart, errors], t0 + timedelta(minutes=6))
    (update,) = _mail_to("api@example.com")[1:]
    assert update.subject.startswith("Update: http.latency.p95")
    assert "also abnormal in its group" in update.body and "http.errors.ratio" in update.body


def test_a_group_s_first_page_waits_for_the_rest_of_the_group(eager):
    """Alertmanager's group_wait: a deploy that breaks checkout opens its anomalies over a
    couple of scoring runs; with two minutes of wait, the first page names them all
    instead of one series, and later members join the group as before."""
    t0 = timezone.now()
    _pager(group_wait_seconds=120)
    cart = _anomaly("http.latency.p95", t0, service="checkout", endpoint="/cart")
    Anomaly.objects.filter(pk=cart.pk).update(detected_at=t0)
    eager([cart], t0)
    assert not ResponseExecution.objects.exists() and mail.outbox == []
    errors = _anomaly("http.errors.ratio", t0 + timedelta(minutes=1), service="checkout")
    eager([cart, errors], t0 + timedelta(minutes=1))
    assert not ResponseExecution.objects.exists()
    eager([cart, errors], t0 + timedelta(minutes=2))
    assert _statuses("pager") == {str(cart.series): SUCCEEDED, str(errors.series): INHIBITED}
    (page,) = mail.outbox
    assert (
        page.subject == "http.latency.p95{endpoint=/cart,service=checkout} is abnormal (critical)"
    )
    assert 'also abnormal in its group {service="checkout"}: http.errors.ratio' in page.body
    # A member after the page joins the group without waiting.
    payments = _anomaly("payments.failed", t0 + timedelta(minutes=3), service="checkout")
    eager([cart, errors, payments], t0 + timedelta(minutes=3))
    assert _statuses("pager")[str(payments.series)] == INHIBITED


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"group_wait_seconds": 60}, "only with group_by"),
        ({"group_by": ["service"], "group_wait_seconds": 3601}, "3600"),
        ({"group_by": ["service"], "group_wait_seconds": -1}, "0"),
    ],
)
def test_a_group_wait_that_cannot_work_is_refused_naming_the_field(
    client_with_role, fields, problem
):
    response = client_with_role("admin").post(
        "/admin/api/phase3/anomaly/playbooks",
        {"name": "p", "action": "webhook", "target": "https://hooks.example.com/x"} | fields,
        format="json",
    )
    assert response.status_code == 400, response.content
    assert problem in " ".join(response.json()["group_wait_seconds"])
