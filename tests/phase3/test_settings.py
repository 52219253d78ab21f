"""The settings module's promises: an embedded default with nothing set, a hardened production."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
    assert out.stdout.split() == ["django.db.backends.sqlite3", "filesystem://", "True", "True"]


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
