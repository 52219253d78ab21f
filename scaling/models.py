"""State of the scaling system: what can be scaled, by which rules, and what was decided."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


def steps_problem(steps: object) -> str | None:
    """What is wrong with a step rule's ``steps`` as stored (a list of lower/upper/change
    objects), or None: the engine takes the first matching step, so ranges must not overlap."""
    from .engine.rules import StepAdjustment, steps_overlap

    try:
        parsed = [
            StepAdjustment(
                float(s["lower"]), None if s.get("upper") is None else float(s["upper"]),
                int(s["change"]),
            )
            for s in steps or []
        ]  # fmt: skip
    except (TypeError, KeyError, ValueError):
        return 'must be a list of {"lower": number, "upper": number or null, "change": integer}'
    return steps_overlap(parsed)


class ScalableResource(models.Model):
    """Something whose capacity we change in units (workers, connections, quota, pods)."""

    class Kind(models.TextChoices):
        WEB_WORKERS = "web_workers", "web workers"
        CELERY_WORKERS = "celery_workers", "Celery workers"
        DB_CONNECTIONS = "db_connections", "database connections"
        API_QUOTA = "api_quota", "API quota"
        CUSTOM = "custom", "custom"

    class ActuatorKind(models.TextChoices):
        DRY_RUN = "dry_run", "dry run (record only)"
        WEBHOOK = "webhook", "webhook (signed POST)"
        CELERY = "celery", "Celery worker pool (remote control)"
        KUBERNETES = "kubernetes", "Kubernetes Deployment scale"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.CUSTOM)
    current_units = models.PositiveIntegerField(
        default=1,
        help_text="Owned by the scaling job (written after a real scaling action); set by "
        "hand only when the resource is created.",
    )
    min_units = models.PositiveIntegerField(default=1)
    max_units = models.PositiveIntegerField(default=10)
    # Upper bounds keep every product finite: a capacity or a cost of 1e308 times a few
    # units is infinity, which no JSON answer can carry (GET scaling/status was a 500).
    unit_capacity = models.FloatField(
        validators=[MinValueValidator(1e-9), MaxValueValidator(1e12)],
        help_text="Work one unit handles at 100% (in the load series' unit).",
    )
    cost_per_unit_hour = models.FloatField(
        default=0.0, validators=[MinValueValidator(0.0), MaxValueValidator(1e9)]
    )
    target_utilization = models.FloatField(
        default=0.7, validators=[MinValueValidator(0.01), MaxValueValidator(1.0)]
    )
    outcome_tolerance = models.FloatField(
        default=0.25,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Outcome band: target +- tolerance x target.",
    )
    load_series_name = models.CharField(
        max_length=200, blank=True,
        help_text="Telemetry series of the demand (same unit as unit capacity); drives "
        "prediction and outcome checks.",
    )  # fmt: skip
    load_series_labels = models.JSONField(default=dict, blank=True)
    startup_seconds = models.PositiveIntegerField(
        default=60, help_text="How long a new unit takes to serve: prediction looks this far."
    )
    settle_seconds = models.PositiveIntegerField(
        default=600, help_text="Wait this long after a change before judging its outcome."
    )
    stabilization_window_seconds = models.PositiveIntegerField(default=300)
    predictive_enabled = models.BooleanField(default=True)
    actuator = models.CharField(
        max_length=20, choices=ActuatorKind.choices, default=ActuatorKind.DRY_RUN
    )
    actuator_config = models.JSONField(
        default=dict, blank=True,
        help_text="webhook: url, secret_env, timeout_seconds, retries; celery: destination, "
        "mode (pool|autoscale); kubernetes: namespace, deployment.",
    )  # fmt: skip
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(min_units__lte=models.F("max_units")),
                name="scaling_resource_min_le_max",
            )
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from .actuators import config_problems

        if problems := config_problems(self.actuator, self.actuator_config):
            raise ValidationError({"actuator_config": problems})
        if self.min_units > self.max_units:
            raise ValidationError({"min_units": "must not exceed max_units"})
        # Checked when the resource is added only: afterwards current_units belongs to the job,
        # and bounds that exclude it (capping a runaway resource) are applied by the engine.
        if self._state.adding and not self.min_units <= self.current_units <= self.max_units:
            raise ValidationError({"current_units": "must lie within [min_units, max_units]"})

    @property
    def capacity(self) -> float:
        return self.current_units * self.unit_capacity

    def clamp(self, units: int) -> int:
        """``units`` brought inside ``[min_units, max_units]``."""
        return max(self.min_units, min(self.max_units, units))

    @property
    def bounds_condition(self) -> str | None:
        """Why the current size is outside the bounds (an actuator reported a size the target
        chose, or the bounds were moved past it), or None: said in the status and on the
        decision that brought it, until the next evaluation scales back to the bound."""
        from .engine import bounds_condition

        return bounds_condition(self.current_units, self.min_units, self.max_units)


class ScalingRule(models.Model):
    class Kind(models.TextChoices):
        TARGET_TRACKING = "target_tracking", "target tracking"
        STEP = "step", "step thresholds"
        QUEUE_BACKLOG = "queue_backlog", "queue backlog per unit"

    resource = models.ForeignKey(ScalableResource, on_delete=models.CASCADE, related_name="rules")
    name = models.CharField(max_length=100)
    metric = models.CharField(
        max_length=200, help_text="Telemetry series name (or the broker, for queue backlog)."
    )
    metric_labels = models.JSONField(default=dict, blank=True)
    queue = models.CharField(
        max_length=200, blank=True, help_text="Queue backlog rules: the broker queue to measure."
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    target = models.FloatField(
        help_text="Target metric value; for queue backlog, acceptable backlog per unit."
    )
    tolerance = models.FloatField(default=0.1, validators=[MinValueValidator(0.0)])
    steps = models.JSONField(
        default=list,
        blank=True,
        help_text='Step rules: [{"lower": 0.8, "upper": 0.9, "change": 1}]',
    )
    critical = models.FloatField(
        null=True, blank=True, help_text="At or above: emergency (no cooldown, maximum step)."
    )
    cooldown_up_seconds = models.PositiveIntegerField(default=60)
    cooldown_down_seconds = models.PositiveIntegerField(default=300)
    priority = models.PositiveIntegerField(default=100, help_text="Lower wins ties.")
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["resource__name", "priority", "name"]
        constraints = [
            models.UniqueConstraint(fields=["resource", "name"], name="scaling_rule_unique_name")
        ]

    def __str__(self) -> str:
        return f"{self.resource}: {self.name}"

    def clean(self) -> None:
        # Not keyed on "steps": the resource page's rule inline has no such field, and a
        # form given an error for a field it lacks raises (a 500) instead of showing it.
        if self.kind == self.Kind.STEP and (problem := steps_problem(self.steps)):
            raise ValidationError(f"steps: {problem}")


class ScalingDecision(models.Model):
    class Action(models.TextChoices):
        SCALE_UP = "scale_up", "scale up"
        SCALE_DOWN = "scale_down", "scale down"
        NONE = "none", "no change"

    class Status(models.TextChoices):
        PROPOSED = "proposed", "proposed"
        # Claimed by one run (conditional update from PROPOSED) while its actuator is called:
        # a second run that loads the same row sees it is taken and does not act again.
        EXECUTING = "executing", "executing"
        EXECUTED = "executed", "executed"
        SKIPPED_COOLDOWN = "skipped_cooldown", "skipped by cooldown"
        FAILED = "failed", "failed"

    class Outcome(models.TextChoices):
        PENDING = "pending", "pending"
        SUCCESS = "success", "success"
        FAILURE = "failure", "failure"
        UNKNOWN = "unknown", "not judgeable"
        NOT_APPLICABLE = "n/a", "not applicable"

    resource = models.ForeignKey(
        ScalableResource, on_delete=models.CASCADE, related_name="decisions"
    )
    at = models.DateTimeField(db_index=True)
    inputs = models.JSONField(default=dict, help_text="Metric readings and forecast used.")
    current_units = models.PositiveIntegerField()
    desired_units = models.PositiveIntegerField()
    recommendation = models.PositiveIntegerField(
        help_text="Unstabilised target: what the scale-down window remembers."
    )
    action = models.CharField(max_length=12, choices=Action.choices)
    status = models.CharField(max_length=20, choices=Status.choices, db_index=True)
    rules = models.ManyToManyField(ScalingRule, blank=True, related_name="decisions")
    winning_sources = models.JSONField(default=list)
    reasons = models.JSONField(default=list)
    proposals = models.JSONField(default=list)
    emergency = models.BooleanField(default=False)
    predictive = models.BooleanField(default=False)
    cost_per_hour_delta = models.FloatField(default=0.0)
    cost_per_month_delta = models.FloatField(default=0.0)
    utilization_before = models.FloatField(null=True, blank=True)
    expected_utilization = models.FloatField(null=True, blank=True)
    applied_units = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="The size the actuator reported it set (empty: it reports none, and "
        "desired_units stands). Outcomes are judged on it.",
    )  # fmt: skip
    actuator = models.CharField(max_length=20, blank=True)
    actuator_detail = models.TextField(blank=True)
    executed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(
        max_length=10, choices=Outcome.choices, default=Outcome.NOT_APPLICABLE, db_index=True
    )
    outcome_utilization = models.FloatField(null=True, blank=True)
    outcome_reason = models.CharField(max_length=300, blank=True)
    outcome_checked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["resource", "-at"], name="scaling_dec_res_at")]

    def __str__(self) -> str:
        return f"{self.resource} {self.action} {self.current_units}->{self.desired_units}"

    @property
    def units_after(self) -> int:
        """The size this decision left running: the actuator's report when it gave one
        (the request may have been clamped or changed on the way), else the request."""
        return self.desired_units if self.applied_units is None else self.applied_units
