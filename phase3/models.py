"""API keys and the record of every job run."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer (read)"
    OPERATOR = "operator", "Operator (read, run jobs, act)"
    ADMIN = "admin", "Admin (also edit rules, experiments, schedules)"


ROLE_RANK = {Role.VIEWER: 1, Role.OPERATOR: 2, Role.ADMIN: 3}


class ApiKey(models.Model):
    """A key presented as ``X-Admin-Key: <prefix>.<secret>``; only the secret's hash is kept."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=100, editable=False)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…, {self.role})"

    @property
    def is_active(self) -> bool:
        now = timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class JobRun(models.Model):
    """One execution of a Celery task, written by the JobTask base so operators see every run."""

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCESS = "success"
        FAILED = "failed"
        RETRYING = "retrying"
        SKIPPED = "skipped", "Skipped (already running)"

    task_name = models.CharField(max_length=200, db_index=True)
    task_id = models.CharField(max_length=64, blank=True)
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    counts = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=200, blank=True)
    #: Refreshed every minute by the worker process while the run executes
    #: (`phase3.heartbeat`): the lost-run sweep closes a run whose heartbeat stopped, not one
    #: that merely outlived its time limit (only the prefork pool enforces time limits).
    #: Empty on runs recorded before heartbeats existed, which are judged by that limit.
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["task_name", "-started_at"]),
            # Each task's last success, read by schedule health and kept by the prune, is
            # one probe here even behind a long run of failures.
            models.Index(
                fields=["task_name", "-started_at"],
                condition=models.Q(status="success"),
                name="phase3_jobrun_success_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task_name} {self.status} @ {self.started_at:%Y-%m-%d %H:%M:%S}"


class JobLock(models.Model):
    """The database lock used when no Redis is configured (the embedded default)."""

    key = models.CharField(max_length=250, unique=True)
    owner = models.CharField(max_length=64)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.key
