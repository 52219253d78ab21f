"""The Celery app. Every task of every app gets the JobTask base (lock, JobRun, retries)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "phase3.settings")

app = Celery("phase3", task_cls="phase3.tasks:JobTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
