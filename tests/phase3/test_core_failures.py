"""The core under the failures production meets: shared addresses, forged headers, a broken
overview section, a dead process, a viewer with one permission too many."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from phase3.models import ApiKey, Role

API = "/admin/api/phase3/"
BAD = "p3k_000000000000.guess"


@pytest.mark.django_db
def test_a_good_key_is_served_from_an_address_a_bad_one_is_hammering(api_key_factory):
    # One broken script behind the office NAT must not lock out everyone behind it.
    _, good = api_key_factory(Role.VIEWER)
    script = APIClient(REMOTE_ADDR="10.0.0.1")
    script.credentials(HTTP_X_ADMIN_KEY=BAD)
    assert [script.get(f"{API}overview").status_code for _ in range(25)][-1] == 429
    colleague = APIClient(REMOTE_ADDR="10.0.0.1")
    colleague.credentials(HTTP_X_ADMIN_KEY=good)
    assert colleague.get(f"{API}overview").status_code == 200


@pytest.mark.django_db
def test_a_made_up_forwarded_for_header_does_not_dodge_the_throttle():
    codes = []
    for i in range(40):
        client = APIClient(REMOTE_ADDR="10.9.9.9", HTTP_X_FORWARDED_FOR=f"1.2.3.{i}")
        client.credentials(HTTP_X_ADMIN_KEY=BAD)
        codes.append(client.get(f"{API}overview").status_code)
    assert codes[-1] == 429


@pytest.mark.django_db
@pytest.mark.parametrize("raw", ["p3k_\x00abc.secret", "p3k_00000000000\x00.s", "x.y"])
def test_a_key_of_the_wrong_shape_is_a_401(raw):
    client = APIClient()
    client.raise_request_exception = False
    client.credentials(HTTP_X_ADMIN_KEY=raw)
    assert client.get(f"{API}overview").status_code == 401


@pytest.mark.django_db
@pytest.mark.parametrize("part", ["telemetry_section", "jobs_summary", "schedules_summary"])
def test_the_overview_answers_when_one_of_its_own_parts_fails(client_with_role, monkeypatch, part):
    import phase3.overview as overview

    def broken(*args, **kwargs):
        raise RuntimeError(f"{part} broke")

    monkeypatch.setattr(overview, part, broken)
    client = client_with_role(Role.VIEWER)
    client.raise_request_exception = False
    response = client.get(f"{API}overview")
    assert response.status_code == 200
    section = {"telemetry_section": "telemetry", "jobs_summary": "jobs"}.get(part, "schedules")
    assert response.json()[section] == {"error": f"RuntimeError: {part} broke"}


@pytest.mark.django_db
def test_a_staff_viewer_allowed_to_add_keys_cannot_mint_a_key_above_its_role(client):
    user = User.objects.create_user("v", password="pw-long-enough-123", is_staff=True)
    user.groups.add(Group.objects.create(name="phase3-viewer"))
    user.user_permissions.add(Permission.objects.get(codename="add_apikey"))
    client.force_login(user)
    client.post("/admin/phase3/apikey/add/", {"name": "mine", "role": "admin"})
    assert not ApiKey.objects.filter(name="mine").exists()
    client.post("/admin/phase3/apikey/add/", {"name": "mine", "role": "viewer"})
    assert ApiKey.objects.get(name="mine").role == Role.VIEWER


def test_runstack_fails_when_one_of_its_processes_dies(monkeypatch):
    import phase3.management.commands.runstack as runstack

    class Died:
        def __init__(self, *args, **kwargs):
            pass

        def poll(self):
            return 1

        def send_signal(self, sig):
            pass

        def wait(self, timeout=None):
            return 1

        def kill(self):
            pass

    monkeypatch.setattr(runstack.subprocess, "Popen", Died)
    monkeypatch.setattr(runstack.signal, "signal", lambda *args: None)
    with pytest.raises(CommandError, match="stopped unexpectedly"):
        call_command("runstack")
