"""The settings module's promises: an embedded default with nothing set, a hardened production."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLEAN = {
    k: v
    for k, v in os.environ.items()
    if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_ENV"}
}


def _run(args, env):
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_nothing_set_means_sqlite_and_the_filesystem_broker(tmp_path):
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='phase3.settings'; django.setup();"
        "from django.conf import settings as s;"
        "print(s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL, s.DEBUG,"
        " (s.VAR_DIR / 'secret_key').exists())"
    )
    out = _run(["-c", code], {**CLEAN, "PHASE3_VAR_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [
        "django.db.backends.sqlite3",
        "filesystem://localhost//",
        "False",
        "True",
    ]


def test_production_passes_check_deploy_without_warnings(tmp_path):
    env = {
        **CLEAN,
        "DJANGO_ENV": "production",
        "DJANGO_ALLOWED_HOSTS": "phase3.example.com",
        "PHASE3_VAR_DIR": str(tmp_path),
    }
    out = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "WARNING" not in out.stderr and "issues" in out.stdout


def _settings(env, *names):
    code = (
        "import django, json, os; os.environ['DJANGO_SETTINGS_MODULE']='phase3.settings';"
        "django.setup(); from django.conf import settings as s;"
        f"print(json.dumps([getattr(s, n) for n in {list(names)!r}]))"
    )
    out = _run(["-c", code], env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_deployment_that_forgets_django_env_has_debug_off_and_answers_local_names_only(tmp_path):
    # DEBUG used to be on unless DJANGO_ENV=production: a server started without it showed
    # tracebacks with the settings (broker and cache URLs) to anyone, under any Host name.
    debug, hosts = _settings({**CLEAN, "PHASE3_VAR_DIR": str(tmp_path)}, "DEBUG", "ALLOWED_HOSTS")
    assert debug is False
    assert hosts and all(h in {"localhost", "127.0.0.1", "[::1]"} for h in hosts)


def test_development_is_asked_for_by_name(tmp_path):
    env = {**CLEAN, "PHASE3_VAR_DIR": str(tmp_path), "DJANGO_ENV": "development"}
    assert _settings(env, "DEBUG", "ALLOWED_HOSTS") == [True, ["*"]]


def test_make_run_asks_for_development_unless_told_otherwise(tmp_path):
    # The recipe's commands run with a stand-in for the venv's python that prints the mode;
    # -o keeps make from (re)building the venv.
    fake = tmp_path / "py"
    fake.write_text('#!/bin/sh\necho "mode=$DJANGO_ENV"\n')
    fake.chmod(0o755)

    def modes(env):
        out = subprocess.run(
            ["make", "-s", "-o", ".venv/.runtime", "run", f"PY={fake}"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        return set(out.stdout.split())

    assert modes(CLEAN) == {"mode=development"}
    assert modes({**CLEAN, "DJANGO_ENV": "production"}) == {"mode=production"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, host: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
def test_the_bare_default_still_serves_the_admin_with_its_css(tmp_path):
    # DEBUG off: runserver no longer serves static files itself; WhiteNoise reads them from
    # the apps (no collectstatic before a first start).
    port = _free_port()
    env = {**CLEAN, "PHASE3_VAR_DIR": str(tmp_path), "PHASE3_PERFORMANCE_MIDDLEWARE": "0"}
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                status = _get(f"{base}/static/admin/css/base.css")
                break
            except OSError:
                time.sleep(0.3)
        else:
            pytest.fail("runserver did not answer within 60 s")
        assert status == 200
        assert _get(f"{base}/static/plotly/plotly.min.js") == 200
        assert _get(f"{base}/admin/login/") == 200
        assert _get(f"{base}/admin/login/", host="phase3.example.com") == 400
    finally:
        proc.terminate()
        proc.wait(timeout=20)
