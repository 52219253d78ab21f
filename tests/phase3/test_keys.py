from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from phase3.keys import api_key_check, api_key_create, hash_secret
from phase3.models import ApiKey, Role

pytestmark = pytest.mark.django_db
API = "/admin/api/phase3/"


def test_only_a_hash_of_the_secret_is_stored():
    issued = api_key_create(name="ci", role=Role.OPERATOR)
    prefix, secret = issued.raw.split(".", 1)
    stored = ApiKey.objects.get(pk=issued.api_key.pk)
    assert stored.prefix == prefix
    assert secret not in stored.secret_hash
    assert stored.secret_hash == hash_secret(secret)
    assert stored.secret_hash.startswith("sha256$")


def test_check_accepts_the_key_and_rejects_a_changed_secret():
    issued = api_key_create(name="ci", role=Role.VIEWER)
    assert api_key_check(issued.raw) == issued.api_key
    assert api_key_check(issued.raw[:-1] + ("A" if issued.raw[-1] != "A" else "B")) is None
    assert api_key_check("no-dot-here") is None


def test_last_used_is_written_at_most_once_a_minute():
    issued = api_key_create(name="ci", role=Role.VIEWER)
    api_key_check(issued.raw)
    first = ApiKey.objects.get(pk=issued.api_key.pk).last_used_at
    assert first is not None
    ApiKey.objects.filter(pk=issued.api_key.pk).update(last_used_at=first - timedelta(hours=1))
    api_key_check(issued.raw)  # within the minute: no write
    assert ApiKey.objects.get(pk=issued.api_key.pk).last_used_at == first - timedelta(hours=1)


def test_expired_key_is_rejected():
    issued = api_key_create(name="ci", role=Role.VIEWER, expires_in_days=1)
    ApiKey.objects.filter(pk=issued.api_key.pk).update(expires_at=timezone.now())
    assert api_key_check(issued.raw) is None


def test_create_api_key_command_prints_the_key_once(capsys):
    call_command("create_api_key", "--name", "cli", "--role", "operator", "--quiet")
    raw = capsys.readouterr().out.strip()
    assert api_key_check(raw).role == Role.OPERATOR


def test_create_api_key_command_rejects_bad_input():
    with pytest.raises(CommandError):
        call_command(
            "create_api_key", "--name", "cli", "--role", "operator", "--expires-in-days", "0"
        )


def test_admins_create_and_revoke_keys_over_the_api(client_with_role):
    admin = client_with_role(Role.ADMIN)
    created = admin.post(f"{API}keys", {"name": "svc", "role": "viewer"}, format="json")
    assert created.status_code == 201
    raw = created.json()["key"]
    client = APIClient()
    client.credentials(HTTP_X_ADMIN_KEY=raw)
    assert client.get(f"{API}overview").status_code == 200
    listed = admin.get(f"{API}keys").json()["results"]
    assert all("key" not in row or row["key"] is None for row in listed)  # never shown again
    key_id = created.json()["id"]
    assert admin.post(f"{API}keys/{key_id}/revoke").status_code == 200
    assert client.get(f"{API}overview").status_code == 401


def test_bad_role_is_a_400_naming_the_field(client_with_role):
    response = client_with_role(Role.ADMIN).post(
        f"{API}keys", {"name": "x", "role": "god"}, format="json"
    )
    assert response.status_code == 400
    assert "role" in response.json()


def test_staff_session_follows_django_model_permissions():
    user = User.objects.create_user("ops", password="pw", is_staff=True)
    client = APIClient()
    client.force_login(user)
    assert client.get(f"{API}jobs").status_code == 403  # staff, but no view_jobrun
    user.user_permissions.add(Permission.objects.get(codename="view_jobrun"))
    assert client.get(f"{API}jobs").status_code == 200
    assert client.post(f"{API}jobs/run", {"schedule": "x"}, format="json").status_code == 403
    user.groups.add(Group.objects.create(name="phase3-operator"))
    user.user_permissions.add(Permission.objects.get(codename="add_jobrun"))
    assert client.post(f"{API}jobs/run", {"schedule": "x"}, format="json").status_code == 400


def test_superuser_session_is_admin():
    user = User.objects.create_superuser("root", password="pw")
    client = APIClient()
    client.force_login(user)
    assert client.get(f"{API}keys").status_code == 200


def test_staff_operator_acts_on_one_object_with_the_change_permission():
    from telemetry.services import series_ensure
    from tests.anomalies.factories import AnomalyFactory

    anomaly = AnomalyFactory(series=series_ensure(name="sess.latency"))
    user = User.objects.create_user("op", password="pw", is_staff=True)
    user.groups.add(Group.objects.create(name="phase3-operator"))
    user.user_permissions.add(Permission.objects.get(codename="view_anomaly"))
    client = APIClient()
    client.force_login(user)
    url = f"{API}anomaly/anomalies/{anomaly.pk}/acknowledge"
    assert client.post(url, {}, format="json").status_code == 403  # may only look
    user.user_permissions.add(Permission.objects.get(codename="change_anomaly"))
    user = User.objects.get(pk=user.pk)  # permissions are cached on the instance
    client.force_login(user)
    assert client.post(url, {}, format="json").status_code == 200
