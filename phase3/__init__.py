"""The Phase 3 Django project: settings, urls, the Celery app, keys, roles and job records."""

from .celery import app as celery_app

__all__ = ("celery_app",)
