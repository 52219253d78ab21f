"""A real Celery worker with embedded beat, on Redis, runs a scheduled job and records it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from phase3.models import JobRun

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_beat_and_worker_run_a_scheduled_job(redis_url, postgres, tmp_path):
    queue = f"e2e-{uuid.uuid4().hex[:8]}"
    every, _ = IntervalSchedule.objects.get_or_create(every=2, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(
        name="e2e heartbeat", task="phase3.heartbeat", interval=every, queue=queue
    )
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": redis_url,
        "PHASE3_VAR_DIR": str(tmp_path),
        "PHASE3_CELERY_QUEUE": queue,
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "phase3",
            "worker",
            "-B",
            "-Q",
            queue,
            "--concurrency",
            "1",
            "--pool",
            "solo",
            "-l",
            "WARNING",
            "--schedule",
            str(tmp_path / "beat-schedule"),
            "--scheduler",
            "django_celery_beat.schedulers:DatabaseScheduler",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            if JobRun.objects.filter(task_name="phase3.heartbeat", status="success").exists():
                break
            if proc.poll() is not None:
                break
            time.sleep(1)
        ok = JobRun.objects.filter(task_name="phase3.heartbeat", status="success").first()
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert ok is not None, f"no JobRun recorded; worker output:\n{out[-3000:]}"
    assert ok.counts == {"ok": 1} and ok.worker
