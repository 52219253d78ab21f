"""The data every system reads: metric series and samples, end-user events, demo ground truth."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

# labels_key stays importable from here: other apps (anomalies) use it.
from .labels import labels_key, labels_normalize


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
