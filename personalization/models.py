"""State of the personalization system: profiles and personas, rules, experiments.

Every number stored here was computed by ``services`` from telemetry events;
nothing is typed in except what an operator configures (rules, experiments).
"""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from .engine.personas import PERSONAS


class Persona(models.TextChoices):
    EXPLORER = "explorer"
    OPTIMIZER = "optimizer"
    ACHIEVER = "achiever"
    SOCIALIZER = "socializer"


assert tuple(Persona.values) == PERSONAS  # the engine and the database agree


class PersonaModelRun(models.Model):
    """One daily fit of the persona model, with its measured quality when labels exist."""

    computed_at = models.DateTimeField(default=timezone.now, db_index=True)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    users_total = models.PositiveIntegerField(default=0)
    users_classified = models.PositiveIntegerField(default=0)
    distribution = models.JSONField(default=dict, blank=True)
    temperature = models.FloatField(default=1.0)
    labelled_users = models.PositiveIntegerField(
        default=0, help_text="Users of known kind held out to measure accuracy and calibration."
    )
    accuracy = models.FloatField(null=True, blank=True)
    ece = models.FloatField(null=True, blank=True, help_text="Expected calibration error.")
    brier = models.FloatField(null=True, blank=True)
    ece_uncalibrated = models.FloatField(null=True, blank=True)
    brier_uncalibrated = models.FloatField(null=True, blank=True)
    confusion = models.JSONField(default=dict, blank=True)
    summary = models.JSONField(default=dict, blank=True)
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-computed_at"]

    def __str__(self) -> str:
        return f"persona run {self.computed_at:%Y-%m-%d %H:%M} ({self.users_classified} users)"


class UserProfile(models.Model):
    """What we know about one end user: behaviour features and the persona they imply."""

    user_id = models.CharField(max_length=100, unique=True)
    features = models.JSONField(default=dict, blank=True)
    persona = models.CharField(max_length=20, choices=Persona.choices, blank=True, db_index=True)
    persona_confidence = models.FloatField(null=True, blank=True)
    persona_probabilities = models.JSONField(default=dict, blank=True)
    segments = models.JSONField(default=list, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    sessions = models.PositiveIntegerField(default=0)
    event_count = models.PositiveIntegerField(default=0)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    model_run = models.ForeignKey(
        PersonaModelRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["user_id"]

    def __str__(self) -> str:
        return f"{self.user_id} ({self.persona or 'no persona'})"


class PersonaChange(models.Model):
    """History: a row each time a user's persona changes (including first assignment)."""

    profile = models.ForeignKey(UserProfile, on_delete=models.CASCADE, related_name="changes")
    previous_persona = models.CharField(max_length=20, blank=True)
    persona = models.CharField(max_length=20, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    model_run = models.ForeignKey(
        PersonaModelRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="changes"
    )
    changed_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-changed_at"]

    def __str__(self) -> str:
        return f"{self.profile.user_id}: {self.previous_persona or '-'} -> {self.persona or '-'}"


class PersonalizationRule(models.Model):
    """For users matching ``conditions``, merge ``action`` into their UI configuration."""

    key = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    conditions = models.JSONField(
        default=dict, blank=True, help_text="persona, min_confidence, segment, attributes, variant"
    )
    action = models.JSONField(default=dict, help_text="UI configuration fragment (JSON object)")
    priority = models.IntegerField(default=100, help_text="Higher wins conflicting keys.")
    enabled = models.BooleanField(default=True)
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-priority", "key"]

    def __str__(self) -> str:
        return self.name


class Experiment(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft"
        RUNNING = "running"
        STOPPED = "stopped"

    class MetricKind(models.TextChoices):
        CONVERSION = "conversion", "conversion (did the user send the event?)"
        MEAN = "mean", "mean per user (count or sum of a property)"

    key = models.SlugField(max_length=100, unique=True, help_text="Also the hashing seed.")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    variants = models.JSONField(
        default=list, help_text='[{"name": "control", "weight": 0.5}, ...]; the first is control'
    )
    coverage = models.FloatField(
        default=1.0, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    targeting = models.JSONField(
        default=dict, blank=True, help_text="Same shape as rule conditions."
    )
    primary_metric = models.JSONField(
        default=dict, help_text='{"kind": "conversion"|"mean", "event": "purchase", "property": ""}'
    )
    guardrail_metrics = models.JSONField(default=list, blank=True)
    alpha = models.FloatField(
        default=0.05, validators=[MinValueValidator(0.001), MaxValueValidator(0.2)]
    )
    planned_users = models.PositiveIntegerField(
        default=10_000,
        # The sequential mixture is tuned for this many users: 0 has no mixture at all
        # (every recomputation of the experiment failed), and fewer than two users per
        # comparison cannot be analysed.
        validators=[MinValueValidator(2)],
        help_text="Sample size at which the sequential interval is tightest (at least 2).",
    )
    # Planning, not testing: it changes no p-value or interval, so it stays editable
    # while the experiment runs (unlike alpha and planned_users).
    minimum_effect = models.FloatField(
        default=0.05,
        validators=[MinValueValidator(0.001), MaxValueValidator(10.0)],
        help_text="Smallest relative lift worth finding (0.05 = +5% over the control): sets "
        "the users and days each result says the experiment still needs (80% power).",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    # Written only by ``experiment_ship`` / ``experiment_unship`` (history in
    # ExperimentShipment): the variant every targeted user is served after the stop.
    shipped_variant = models.CharField(
        max_length=100,
        blank=True,
        default="",
        help_text="Served to every user the targeting matches, without exposures (ship).",
    )
    shipped_at = models.DateTimeField(null=True, blank=True)
    shipped_by = models.CharField(max_length=150, blank=True, default="")
    # Also ship / unship's (and ``experiment_rollout_set``'s): the share of the targeted
    # users served the shipped variant (``engine.rollout``). 100 = everyone, which is what
    # every shipment meant before rollouts existed.
    rollout_percent = models.FloatField(
        default=100.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(100.0)],
        help_text="Percentage of the targeted users served the shipped variant (ramp).",
    )
    # A scheduled ramp of the shipped variant (``services.rollouts_advance``, beat): every
    # ``rollout_step_hours`` the percentage grows by ``rollout_step_percent`` until 100.
    # 0 = no schedule. A manual change of the percentage, a new ship or an un-ship ends it.
    rollout_step_percent = models.FloatField(
        default=0.0, help_text="Scheduled ramp: percentage points added per step (0: none)."
    )
    rollout_step_hours = models.FloatField(
        default=0.0, help_text="Scheduled ramp: hours between steps."
    )
    rollout_next_step_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # A running experiment assigns variants; only a stopped one may serve one to all.
            models.CheckConstraint(
                condition=models.Q(shipped_variant="") | models.Q(status="stopped"),
                name="experiment_shipped_only_when_stopped",
            ),
            models.CheckConstraint(
                condition=models.Q(rollout_percent__gte=0.0, rollout_percent__lte=100.0),
                name="experiment_rollout_percent_0_100",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"

    @property
    def variant_names(self) -> list[str]:
        return [v["name"] for v in self.variants]

    @property
    def weights(self) -> list[float]:
        """Weights scaled to sum to 1 (operators may write 1:1 or 70:30)."""
        raw = [float(v.get("weight", 1.0)) for v in self.variants]
        total = sum(raw)
        return [w / total for w in raw] if total > 0 else raw


class ExperimentShipment(models.Model):
    """One ship of a variant at a rollout percentage and, once rolled back, replaced or
    ramped to another percentage, its end: who and when.

    The experiment row holds what is served now; these rows are the audit trail
    (GrowthBook and Statsig keep the same history of "roll out" / "ship" decisions).
    """

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="shipments")
    variant = models.CharField(max_length=100)
    # A change of the percentage closes this row and opens the next one (same variant),
    # so the history says who ramped to what and when, as it does for ships.
    rollout_percent = models.FloatField(
        default=100.0, validators=[MinValueValidator(0.0), MaxValueValidator(100.0)]
    )
    shipped_at = models.DateTimeField(default=timezone.now)
    shipped_by = models.CharField(max_length=150, blank=True)
    unshipped_at = models.DateTimeField(null=True, blank=True)
    unshipped_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-shipped_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["experiment"],
                condition=models.Q(unshipped_at__isnull=True),
                name="one_live_shipment_per_experiment",
            ),
            models.CheckConstraint(
                condition=models.Q(rollout_percent__gte=0.0, rollout_percent__lte=100.0),
                name="shipment_rollout_percent_0_100",
            ),
        ]

    def __str__(self) -> str:
        state = f"until {self.unshipped_at:%Y-%m-%d %H:%M}" if self.unshipped_at else "live"
        return (
            f"{self.experiment.key}: {self.variant} at {self.rollout_percent:g}% shipped "
            f"{self.shipped_at:%Y-%m-%d %H:%M} ({state})"
        )


class Exposure(models.Model):
    """The first time a user was shown a variant: the unit of analysis."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="exposures")
    user_id = models.CharField(max_length=100)
    variant = models.CharField(max_length=100)
    exposed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["experiment", "user_id"], name="exposure_once_per_user")
        ]
        indexes = [models.Index(fields=["experiment", "variant"])]

    def __str__(self) -> str:
        return f"{self.experiment.key}:{self.user_id}={self.variant}"


class ExperimentResult(models.Model):
    """One analysis of one metric of one experiment (history: a row per recomputation)."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="results")
    metric = models.CharField(max_length=200)
    is_primary = models.BooleanField(default=True)
    metric_kind = models.CharField(max_length=10, choices=Experiment.MetricKind.choices)
    computed_at = models.DateTimeField(default=timezone.now, db_index=True)
    users = models.JSONField(default=dict)
    srm_p_value = models.FloatField(null=True, blank=True)
    srm_mismatch = models.BooleanField(default=False)
    comparisons = models.JSONField(default=list)
    arms = models.JSONField(
        default=list,
        blank=True,
        help_text="Each variant's own rate or mean with its interval (Wilson score for rates, "
        "Student's t for means), at the experiment's confidence level.",
    )
    power = models.JSONField(
        default=list,
        blank=True,
        help_text="Per treatment: minimum detectable effect at the current arm sizes, users "
        "and days needed to find the experiment's minimum effect with 80% power.",
    )
    cuped = models.JSONField(
        default=dict,
        blank=True,
        help_text="CUPED: comparisons adjusted with each user's pre-exposure value of the "
        "metric (effect, interval, p-value, variance reduction); applied=false and a note "
        "when there were no pre-exposure data.",
    )
    sequential_state = models.JSONField(default=dict, blank=True)
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-computed_at"]
        indexes = [models.Index(fields=["experiment", "metric", "-computed_at"])]

    def __str__(self) -> str:
        return f"{self.experiment.key} {self.metric} @ {self.computed_at:%Y-%m-%d %H:%M}"
