"""State of the insights system: the model registry, segments, feature impact, state
patterns and the prioritised insights operators read.

Every score stored here was measured by a service on held-out data or computed from
the other rows; none is typed in.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class MLModel(models.Model):
    """One trained version of a named model, with its held-out metrics and artefact.

    Retraining adds a version; the previous ones stay for comparison and rollback. At
    most one version per name is active (a partial unique constraint enforces it).
    """

    class Kind(models.TextChoices):
        CLUSTERING = "clustering"
        ANOMALY = "anomaly"
        FEATURE_IMPACT = "feature_impact"

    class ActivationRule(models.TextChoices):
        FIRST = "first", "first version"
        INPUTS_CHANGED = "inputs_changed", "inputs changed (not compared on score)"
        PAIRED = "paired", "paired comparison on rows neither version saw"
        OWN_HOLDOUT = "own_holdout", "each version's own held-out score"
        MANUAL = "manual", "activated by hand"
        NOT_RECORDED = "", "not recorded (registered before rules were stored)"

    name = models.CharField(max_length=100, db_index=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    version = models.PositiveIntegerField()
    trained_at = models.DateTimeField(default=timezone.now)
    training_rows = models.PositiveIntegerField()
    holdout_rows = models.PositiveIntegerField(default=0)
    parameters = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(
        default=dict, blank=True, help_text="Measured on held-out data; null = not measurable."
    )
    primary_metric = models.CharField(max_length=30)
    primary_score = models.FloatField(
        null=True, blank=True, help_text="The primary metric's held-out value, for ranking."
    )
    artefact = models.BinaryField(editable=False)
    artefact_sha256 = models.CharField(max_length=64, editable=False)
    artefact_size = models.PositiveIntegerField(default=0, editable=False)
    is_active = models.BooleanField(default=False)
    activated_at = models.DateTimeField(null=True, blank=True)
    notes = models.TextField(blank=True)
    activation_rule = models.CharField(
        max_length=20,
        choices=ActivationRule.choices,
        blank=True,
        help_text="The rule that decided whether this version became active, last applied.",
    )
    activation_reason = models.TextField(
        blank=True, help_text="Why it was (or was not) activated, with the figures compared."
    )
    comparison = models.JSONField(
        default=dict,
        blank=True,
        help_text=(
            "Paired comparison with the version active at registration, on rows neither "
            "was trained on: n, new, old, diff, se, ci_low, ci_high, champion_version."
        ),
    )

    class Meta:
        verbose_name = "ML model"
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="mlmodel_name_version_uniq"),
            models.UniqueConstraint(
                fields=["name"], condition=Q(is_active=True), name="mlmodel_one_active_per_name"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}{' (active)' if self.is_active else ''}"


class Segment(models.Model):
    """A user segment found by one clustering model version."""

    class Trend(models.TextChoices):
        GROWING = "growing"
        SHRINKING = "shrinking"
        STABLE = "stable"

    model = models.ForeignKey(MLModel, on_delete=models.CASCADE, related_name="segments")
    label = models.PositiveIntegerField()
    name = models.CharField(max_length=200)
    size = models.PositiveIntegerField()
    share = models.FloatField()
    distinguishing = models.JSONField(
        default=list, blank=True, help_text="Features that set it apart: effect size and z."
    )
    recommendations = models.JSONField(default=list, blank=True)
    centroid = models.JSONField(
        default=list, blank=True, help_text="Centre in the model's standardised feature space."
    )
    spread = models.FloatField(
        null=True,
        blank=True,
        help_text=(
            "Root-mean-square distance of its users from the centroid, same space: how far "
            "a later version's centroid may be and still continue this segment."
        ),
    )
    trend = models.CharField(max_length=10, choices=Trend.choices, default=Trend.STABLE)
    trend_slope_per_day = models.FloatField(null=True, blank=True)
    trend_p_value = models.FloatField(null=True, blank=True)
    previous = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="continued_by",
        help_text="The segment of the previous model version this one continues.",
    )
    lineage = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        db_index=True,
        help_text=(
            "Id of the first segment of the line this one continues (its own id when new): "
            "a segment's identity across retrainings, whatever its label or name."
        ),
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["model", "-size"]
        constraints = [
            models.UniqueConstraint(fields=["model", "label"], name="segment_model_label_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.share:.0%})"


class SegmentSnapshot(models.Model):
    """Size of a segment on one day, assigned by its model: the sizes-over-time series."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="snapshots")
    day = models.DateField()
    size = models.PositiveIntegerField()
    share = models.FloatField()

    class Meta:
        ordering = ["segment", "day"]
        constraints = [
            models.UniqueConstraint(fields=["segment", "day"], name="segment_snapshot_day_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.segment_id} {self.day}: {self.size}"


class FeatureImpact(models.Model):
    """How use of one feature relates to one outcome, as measured by one model version."""

    class Suggestion(models.TextChoices):
        PROMOTE = "promote"
        REVIEW = "review"
        NONE = ""

    model = models.ForeignKey(MLModel, on_delete=models.CASCADE, related_name="feature_impacts")
    outcome = models.CharField(max_length=30)
    feature = models.CharField(max_length=100)
    adoption = models.FloatField()
    support = models.PositiveIntegerField()
    odds_ratio = models.FloatField()
    ci_low = models.FloatField()
    ci_high = models.FloatField()
    p_value = models.FloatField()
    q_value = models.FloatField()
    success_rate_used = models.FloatField()
    success_rate_unused = models.FloatField(null=True, blank=True)
    importance = models.FloatField(help_text="Drop of held-out AUC when the feature is shuffled.")
    importance_std = models.FloatField()
    cost = models.FloatField(null=True, blank=True)
    suggestion = models.CharField(
        max_length=10, choices=Suggestion.choices, default=Suggestion.NONE, blank=True
    )
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["model", "-importance"]
        constraints = [
            models.UniqueConstraint(fields=["model", "feature"], name="feature_impact_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.feature} → {self.outcome}: OR {self.odds_ratio:.2f}"


class StatePattern(models.Model):
    """A recurring kind of unusual system state found by one anomaly model version."""

    model = models.ForeignKey(MLModel, on_delete=models.CASCADE, related_name="patterns")
    label = models.PositiveIntegerField()
    description = models.TextField()
    signature = models.JSONField(help_text="Deviation (σ) of each metric from what others imply.")
    episodes = models.JSONField(help_text="[[start epoch, end epoch, peak score], ...]")
    episode_count = models.PositiveIntegerField()
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    weekly_hour = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Hour of week (0 = Monday 00:00 UTC) it recurs at."
    )

    class Meta:
        ordering = ["model", "-episode_count"]
        constraints = [
            models.UniqueConstraint(fields=["model", "label"], name="state_pattern_uniq")
        ]

    def __str__(self) -> str:
        return f"pattern {self.label} ×{self.episode_count}"


class Insight(models.Model):
    """A finding in plain words, ranked by impact × confidence × novelty.

    The dedup key identifies "the same finding": regenerating updates the row (its
    figures, priority and last-seen time) instead of adding a duplicate.
    """

    class Category(models.TextChoices):
        SEGMENT = "segment"
        FEATURE_IMPACT = "feature_impact"
        ANOMALY_PATTERN = "anomaly_pattern"
        FORECAST = "forecast"
        EXPERIMENT = "experiment"
        RECOMMENDATION = "recommendation"
        ANOMALY = "anomaly"

    class Status(models.TextChoices):
        NEW = "new"
        ACKNOWLEDGED = "acknowledged"
        DISMISSED = "dismissed"

    dedup_key = models.CharField(max_length=120, unique=True)
    category = models.CharField(max_length=20, choices=Category.choices, db_index=True)
    source = models.CharField(max_length=30, db_index=True, help_text="System it came from.")
    title = models.CharField(max_length=300)
    body = models.TextField()
    evidence = models.JSONField(default=dict, blank=True)
    priority = models.FloatField(db_index=True)
    impact = models.FloatField()
    confidence = models.FloatField()
    novelty = models.FloatField()
    priority_explanation = models.TextField()
    key_value = models.FloatField(
        null=True, blank=True, help_text="The figure whose change makes a known finding new."
    )
    reference_value = models.FloatField(
        null=True,
        blank=True,
        help_text=(
            "The key figure when the finding was first seen, dismissed or last moved "
            "materially: novelty and reopening measure the change from it."
        ),
    )
    status = models.CharField(
        max_length=15, choices=Status.choices, default=Status.NEW, db_index=True
    )
    status_changed_at = models.DateTimeField(null=True, blank=True)
    status_changed_by = models.CharField(max_length=150, blank=True)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    times_seen = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["-priority"]

    def __str__(self) -> str:
        return self.title
