"""State of the optimization system: profiles, baselines, health history, analyses, recommendations."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class EndpointProfile(models.Model):
    """Hourly totals of the request profiler for one endpoint (the middleware's own record).

    Telemetry gets per-minute series; this table keeps the counts the N+1 and slow-query
    detectors need as denominators (how many requests the shapes were seen in).
    """

    endpoint = models.CharField(max_length=300)
    hour = models.DateTimeField()
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    latency_ms_sum = models.FloatField(default=0.0)
    queries = models.PositiveIntegerField(default=0)
    db_ms_sum = models.FloatField(default=0.0)

    class Meta:
        ordering = ["-hour", "endpoint"]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "hour"], name="opt_profile_endpoint_hour")
        ]
        indexes = [models.Index(fields=["hour"])]

    def __str__(self) -> str:
        return f"{self.endpoint} @ {self.hour:%Y-%m-%d %H:00}"


class QueryShapeStat(models.Model):
    """Hourly figures of one SQL shape in one endpoint: executions, time, N+1 runs."""

    endpoint = models.CharField(max_length=300)
    hour = models.DateTimeField()
    shape_key = models.CharField(max_length=16)
    shape = models.TextField()
    # the database alias the statements ran on (a replica's cost is fixed on the replica); the
    # shape text of a non-default alias starts with it too, so findings quoting it say where
    database = models.CharField(max_length=100, default="default")
    executions = models.PositiveIntegerField(default=0)
    total_ms = models.FloatField(default=0.0)
    max_ms = models.FloatField(default=0.0)
    n_plus_one_requests = models.PositiveIntegerField(default=0)
    repeats_sum = models.PositiveIntegerField(default=0)
    pattern_ms_sum = models.FloatField(default=0.0)

    class Meta:
        ordering = ["-hour", "-total_ms"]
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "hour", "shape_key"], name="opt_shape_endpoint_hour_key"
            )
        ]
        indexes = [models.Index(fields=["hour"])]

    def __str__(self) -> str:
        return f"{self.endpoint} {self.shape[:60]}"


class Baseline(models.Model):
    """Hour-of-week baseline and robust trend of one telemetry series (one row per series)."""

    series = models.OneToOneField(
        "telemetry.Series", on_delete=models.CASCADE, related_name="optimization_baseline"
    )
    metric = models.CharField(max_length=200, db_index=True)
    endpoint = models.CharField(max_length=300, blank=True, db_index=True)
    computed_at = models.DateTimeField(default=timezone.now)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    points = models.PositiveIntegerField()
    median = models.JSONField(help_text="168 values, Monday 00:00 UTC first.")
    mad = models.JSONField()
    p95 = models.JSONField()
    support = models.JSONField()
    source = models.JSONField(help_text="0 own hour of week, 1 same hour of day, 2 whole series.")
    trend_slope_per_day = models.FloatField(null=True, blank=True)
    trend_relative_change_per_week = models.FloatField(null=True, blank=True)
    trend_p_value = models.FloatField(null=True, blank=True)
    trend_significant = models.BooleanField(default=False)

    class Meta:
        ordering = ["metric", "endpoint"]

    def __str__(self) -> str:
        return f"baseline of {self.series}"


class HealthSnapshot(models.Model):
    """The health score at one hour, with the points each part lost: the health history."""

    at = models.DateTimeField(unique=True)
    score = models.FloatField()
    breakdown = models.JSONField()
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at"]
        get_latest_by = "at"

    def __str__(self) -> str:
        return f"{self.score:.1f} @ {self.at:%Y-%m-%d %H:%M}"


class AnalysisReport(models.Model):
    """One run of the analysis: baselines vs now, bottlenecks, calibration in force."""

    at = models.DateTimeField(unique=True)
    computed_at = models.DateTimeField(default=timezone.now)
    health = models.ForeignKey(
        HealthSnapshot, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    baselines_vs_now = models.JSONField(default=list)
    bottlenecks = models.JSONField(default=dict)
    calibration = models.JSONField(default=dict)
    recommendations_seen = models.PositiveIntegerField(default=0)
    recommendations_created = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-at"]
        get_latest_by = "at"

    def __str__(self) -> str:
        return f"analysis @ {self.at:%Y-%m-%d %H:%M}"


class Recommendation(models.Model):
    """A change worth making, with its evidence, and what happened once it was made.

    Lifecycle as in Google's Recommender: ACTIVE -> CLAIMED (an operator took it; ``applied_at``
    once the change is live) -> SUCCEEDED / FAILED (decided by measuring the metric before and
    after against its baseline), or DISMISSED. At most one open (active or claimed)
    recommendation exists per ``dedup_key``: the analysis refreshes it while the cause persists.
    """

    class State(models.TextChoices):
        ACTIVE = "active"
        CLAIMED = "claimed"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        DISMISSED = "dismissed"

    class Category(models.TextChoices):
        N_PLUS_ONE = "n_plus_one", "N+1 queries"
        SLOW_QUERY = "slow_query", "slow query"
        REGRESSION = "regression", "regression vs baseline"
        SATURATION = "saturation", "saturated resource"
        HOTSPOT = "hotspot", "time hotspot"

    class Level(models.TextChoices):
        LOW = "low"
        MEDIUM = "medium"
        HIGH = "high"

    OPEN_STATES = (State.ACTIVE, State.CLAIMED)

    dedup_key = models.CharField(max_length=64, db_index=True)
    category = models.CharField(max_length=20, choices=Category.choices)
    state = models.CharField(max_length=10, choices=State.choices, default=State.ACTIVE)
    title = models.CharField(max_length=300)
    endpoint = models.CharField(max_length=300, blank=True)
    resource = models.CharField(max_length=200, blank=True)
    evidence = models.JSONField(default=dict)
    confidence = models.FloatField()
    confidence_explanation = models.TextField()
    predicted_ms_saved_per_day = models.FloatField()
    predicted_db_ms_saved_per_day = models.FloatField()
    calibration = models.JSONField(default=dict, blank=True)
    complexity = models.CharField(max_length=6, choices=Level.choices)
    risk = models.CharField(max_length=6, choices=Level.choices)
    rollback_plan = models.TextField()
    metric_series = models.ForeignKey(
        "telemetry.Series", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    lower_is_better = models.BooleanField(default=True)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    times_seen = models.PositiveIntegerField(default=1)
    state_changed_at = models.DateTimeField(default=timezone.now)
    claimed_by = models.CharField(max_length=150, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    rolled_back_at = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    realised_ms_saved_per_day = models.FloatField(null=True, blank=True)
    realised = models.JSONField(default=dict, blank=True)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["-confidence", "-predicted_ms_saved_per_day"]
        constraints = [
            models.UniqueConstraint(
                fields=["dedup_key"],
                condition=Q(state__in=["active", "claimed"]),
                name="opt_recommendation_one_open_per_key",
            ),
            models.CheckConstraint(
                condition=Q(confidence__gte=0) & Q(confidence__lte=1),
                name="opt_recommendation_confidence_0_1",
            ),
        ]
        indexes = [models.Index(fields=["state", "category"])]

    def __str__(self) -> str:
        return self.title

    @classmethod
    def with_outcome(cls) -> Q:
        """Recommendations whose outcome is known: verified, or rolled back (a failure).

        A change reverted before the verifier ran never gets ``verified_at``; it failed all
        the same, and the overview's success rate and calibration count it.
        """
        return Q(state__in=[cls.State.SUCCEEDED, cls.State.FAILED]) & (
            Q(verified_at__isnull=False) | Q(rolled_back_at__isnull=False)
        )

    @property
    def expected_value(self) -> float:
        """Confidence x predicted saving: the order operators should work in."""
        return self.confidence * (
            self.predicted_ms_saved_per_day + self.predicted_db_ms_saved_per_day
        )
