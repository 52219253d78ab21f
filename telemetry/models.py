"""The data every system reads: metric series and samples, end-user events, demo ground truth."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from . import conf

# labels_key stays importable from here: other apps (anomalies) use it.
from .labels import labels_key, labels_normalize
from .validation import change_errors


class Series(models.Model):
    """A metric identified by name + labels, e.g. ``http.latency.p95{endpoint=/api/search}``."""

    class Kind(models.TextChoices):
        GAUGE = "gauge"
        COUNTER = "counter"

    name = models.CharField(max_length=200, db_index=True)
    labels = models.JSONField(default=dict, blank=True)
    # A canonical text form of labels: JSON equality is not portable across databases.
    labels_key = models.CharField(max_length=500, default="", editable=False)
    unit = models.CharField(max_length=30, blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.GAUGE)
    description = models.TextField(blank=True)
    importance = models.FloatField(
        default=1.0, help_text="Weight of this series in severities and scores (1 = normal)."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name_plural = "series"
        ordering = ["name", "labels_key"]
        constraints = [
            models.UniqueConstraint(fields=["name", "labels_key"], name="series_name_labels_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.name}{{{self.labels_key}}}" if self.labels_key else self.name

    def save(self, *args, **kwargs):
        self.labels = labels_normalize(self.labels)
        self.labels_key = labels_key(self.labels)
        super().save(*args, **kwargs)


class Sample(models.Model):
    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="samples")
    ts = models.DateTimeField()
    value = models.FloatField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["series", "ts"], name="sample_series_ts_uniq")
        ]
        # The unique index on (series, ts) serves range scans by series and time.

    def __str__(self) -> str:
        return f"{self.series_id}@{self.ts:%Y-%m-%d %H:%M}={self.value:g}"


class Event(models.Model):
    user_id = models.CharField(max_length=100, db_index=True)
    name = models.CharField(max_length=100)
    ts = models.DateTimeField()
    session_id = models.CharField(max_length=100, blank=True)
    properties = models.JSONField(default=dict, blank=True)
    client_id = models.CharField(
        max_length=100,
        null=True,
        blank=True,
        unique=True,
        help_text="Optional client-side id making re-sent events idempotent.",
    )

    class Meta:
        indexes = [
            models.Index(fields=["ts"]),
            models.Index(fields=["name", "ts"]),
            models.Index(fields=["user_id", "ts"]),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.name} @ {self.ts:%Y-%m-%d %H:%M}"


class ChangeEvent(models.Model):
    """Something someone changed in the running product: a deploy, a configuration or
    feature-flag change, a scaling action, maintenance.

    The first question of an incident is "what changed?" (Datadog's change tracking,
    Sentry's releases, Grafana's annotations): a deploy four minutes before the latency
    rose is the likeliest suspect. CI pipelines post their deploys here, the scaling
    system records what its actuators applied, and the anomaly system names the changes
    just before each anomaly's onset on the series they concern. `labels` say which
    series: a change with `{"service": "checkout"}` concerns every series that carries
    that label; one without labels concerns them all.
    """

    class Kind(models.TextChoices):
        DEPLOY = "deploy"
        CONFIG = "config"
        FEATURE_FLAG = "feature_flag", "feature flag"
        SCALING = "scaling"
        MAINTENANCE = "maintenance"
        OTHER = "other"

    at = models.DateTimeField(db_index=True, help_text="When the change took effect.")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.DEPLOY)
    title = models.CharField(max_length=200, help_text="What changed: `checkout 1.4.2`.")
    labels = models.JSONField(
        default=dict, blank=True, help_text="The series it concerns; none: every series."
    )
    url = models.URLField(max_length=500, blank=True, help_text="The pipeline run, the PR.")
    source = models.CharField(max_length=100, blank=True, help_text="What recorded it.")
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.kind} {self.title} @ {self.at:%Y-%m-%d %H:%M}"

    def save(self, *args, **kwargs):
        self.labels = labels_normalize(self.labels)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        errors = change_errors(
            at=self.at,
            title=self.title,
            labels=self.labels,
            now=timezone.now(),
            max_future_seconds=conf.max_future_seconds(),
        )
        if errors:
            raise ValidationError(errors)

    def concerns(self, labels: dict | None) -> bool:
        """Whether it concerns a series with these labels: every label it names is there
        with the same value."""
        have = labels_normalize(labels)
        return all(have.get(k) == v for k, v in (self.labels or {}).items())


class DemoIncident(models.Model):
    """Ground truth of an incident injected by ``seed_demo``: what the systems should find."""

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=50)
    cause_series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="+")
    effect_series = models.ManyToManyField(Series, related_name="+", blank=True)
    start = models.DateTimeField()
    end = models.DateTimeField()
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["start"]

    def __str__(self) -> str:
        return f"{self.name} ({self.start:%Y-%m-%d %H:%M})"


class DemoUser(models.Model):
    """Ground truth of a demo end user's behavioural kind, to measure persona accuracy."""

    user_id = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, db_index=True)

    def __str__(self) -> str:
        return f"{self.user_id} ({self.kind})"


class SampleRollup(models.Model):
    """One hour of one series summarised, so long-range reads skip the raw samples.

    Raw samples are deleted after the retention window; their rollups stay, so a year
    of history costs 24 rows a day per series. count/sum/min/max combine exactly into
    any coarser step; mean is kept for people reading the admin.
    """

    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="rollups")
    bucket = models.DateTimeField(help_text="Start of the hour (UTC).")
    count = models.PositiveIntegerField()
    sum = models.FloatField()
    min = models.FloatField()
    max = models.FloatField()
    mean = models.FloatField()

    class Meta:
        ordering = ["series", "bucket"]
        constraints = [
            models.UniqueConstraint(fields=["series", "bucket"], name="rollup_series_bucket_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.series_id}@{self.bucket:%Y-%m-%d %H:00} n={self.count} mean={self.mean:g}"


class RollupState(models.Model):
    """How far rollups are complete, and the earliest late sample that made them stale.

    Every bucket before ``rolled_until`` is summarised, except from ``dirty_from`` on: a
    sample ingested there after its hour was rolled up marks it, and the next rollup run
    recomputes from that point. Raw samples are never deleted at or after either mark.
    """

    step_seconds = models.PositiveIntegerField(unique=True, default=3600)
    rolled_until = models.DateTimeField(null=True, blank=True)
    dirty_from = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"rollup {self.step_seconds}s until {self.rolled_until}"
