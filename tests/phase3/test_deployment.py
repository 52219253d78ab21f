"""Development settings on an address others reach are said out loud (runstack, overview)."""

from __future__ import annotations

import signal

import pytest
from django.core.management import CommandError, call_command

from phase3.deployment import bind_address_host, debug_exposure_warning, is_local_host


@pytest.mark.parametrize(
    ("addr", "local"),
    [
        ("127.0.0.1:8000", True),
        ("8000", True),
        ("localhost:8000", True),
        ("[::1]:8000", True),
        ("0.0.0.0:8000", False),
        ("[::]:8000", False),
        ("10.1.2.3:8000", False),
        ("phase3.example.com:80", False),
    ],
)
def test_a_bind_address_is_local_only_on_loopback(addr, local):
    assert is_local_host(bind_address_host(addr)) is local


def test_the_warning_needs_debug_and_a_reachable_address(settings):
    settings.DEBUG = True
    assert "DJANGO_ENV=production" in debug_exposure_warning(host="0.0.0.0")
    assert debug_exposure_warning(host="127.0.0.1") is None
    settings.DEBUG = False
    assert debug_exposure_warning(host="0.0.0.0") is None


class _Exited:
    """A process that has already stopped: runstack's loop ends at once."""

    def __init__(self, *args, **kwargs):
        pass

    def poll(self):
        return 0

    def wait(self, timeout=None):
        return 0


def _runstack(monkeypatch, capsys, addr):
    monkeypatch.setattr("phase3.management.commands.runstack.subprocess.Popen", _Exited)
    monkeypatch.setattr(signal, "signal", lambda *args: None)
    with pytest.raises(CommandError):
        call_command("runstack", addr=addr)
    return capsys.readouterr().err


def test_runstack_warns_when_debug_listens_beyond_this_machine(settings, monkeypatch, capsys):
    settings.DEBUG = True
    assert "DEBUG is on and this server listens on 0.0.0.0" in _runstack(
        monkeypatch, capsys, "0.0.0.0:8000"
    )
    assert "DEBUG is on" not in _runstack(monkeypatch, capsys, "127.0.0.1:8000")
    settings.DEBUG = False
    assert "DEBUG is on" not in _runstack(monkeypatch, capsys, "0.0.0.0:8000")


@pytest.mark.django_db
def test_the_overview_warns_when_read_through_a_public_name_with_debug_on(
    settings, client_with_role
):
    settings.ALLOWED_HOSTS = ["*"]
    client = client_with_role("viewer")

    def deployment(host):
        response = client.get("/admin/api/phase3/overview", HTTP_HOST=host)
        assert response.status_code == 200
        return response.json()["deployment"]

    settings.DEBUG = True
    exposed = deployment("phase3.example.com")
    assert exposed["debug"] is True and "phase3.example.com" in exposed["warnings"][0]
    assert deployment("127.0.0.1:8000")["warnings"] == []
    settings.DEBUG = False
    assert deployment("phase3.example.com") == {**exposed, "debug": False, "warnings": []}
