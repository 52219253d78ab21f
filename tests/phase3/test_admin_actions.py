"""Admin actions change state, so they need the model's "change" permission, not just view."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User

from anomalies.models import Anomaly, Silence
from telemetry.services import series_ensure
from tests.anomalies.factories import AnomalyFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/anomalies/anomaly/"


def _staff(client, *codenames: str) -> User:
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return user


def _offered(client, url: str) -> set[str]:
    form = client.get(url).context["action_form"]
    return {name for name, _ in form.fields["action"].choices if name} if form else set()


@pytest.mark.parametrize(
    "action", ["acknowledge", "resolve", "false_positive", "silence_two_hours"]
)
def test_a_view_only_user_cannot_run_anomaly_actions(client, action):
    anomaly = AnomalyFactory(series=series_ensure(name="adm.latency"))
    _staff(client, "view_anomaly")
    client.post(CHANGELIST, {"action": action, "_selected_action": [anomaly.pk]})
    anomaly.refresh_from_db()
    assert anomaly.status == Anomaly.Status.OPEN and not Silence.objects.exists()


def test_actions_offered_follow_change_and_add_permissions(client):
    AnomalyFactory(series=series_ensure(name="adm.offered"))
    user = _staff(client, "view_anomaly")
    assert _offered(client, CHANGELIST) == set()
    user.user_permissions.add(Permission.objects.get(codename="change_anomaly"))
    client.force_login(User.objects.get(pk=user.pk))
    assert _offered(client, CHANGELIST) == {"acknowledge", "resolve", "false_positive"}
    user.user_permissions.add(Permission.objects.get(codename="add_silence"))
    client.force_login(User.objects.get(pk=user.pk))
    assert "silence_two_hours" in _offered(client, CHANGELIST)


def test_a_read_only_results_admin_still_offers_its_actions_to_those_who_may_change(client):
    user = _staff(client, "view_insight")
    url = "/admin/insights/insight/"
    assert _offered(client, url) == set()
    user.user_permissions.add(Permission.objects.get(codename="change_insight"))
    client.force_login(User.objects.get(pk=user.pk))
    assert _offered(client, url) == {"acknowledge", "dismiss"}
