"""State of the anomaly system: what it found, why, what it did about it, what it learned."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TypeVar

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from telemetry.models import Series, labels_key

from .matching import equal_key, series_matches
from .time_windows import in_recurring_window
from .validation import (
    DEFAULT_EFFECT_GRACE_SECONDS,
    DEFAULT_UPDATE_SECONDS,
    MAX_ATTEMPTS,
    MAX_EFFECT_GRACE_SECONDS,
    MAX_GROUP_WAIT_SECONDS,
    MAX_REPEAT_SECONDS,
    MAX_UPDATE_SECONDS,
    MIN_REPEAT_SECONDS,
    MIN_UPDATE_SECONDS,
    NOTIFY_ACTIONS,
    inhibition_rule_errors,
    layer_rule_errors,
    playbook_errors,
    rule_errors,
    silence_errors,
    tuning_errors,
)

T = TypeVar("T")


class DetectorState(models.Model):
    """One series' streaming detector state, so each run scores only points it has not seen."""

    series = models.OneToOneField(Series, on_delete=models.CASCADE, related_name="detector_state")
    state = models.BinaryField(help_text="Compressed numpy arrays (anomalies.engine).")
    last_ts = models.DateTimeField(help_text="Timestamp of the last point scored.")
    points_scored = models.PositiveBigIntegerField(default=0)
    step_seconds = models.FloatField(
        null=True, blank=True, help_text="The series' usual sampling interval, as learned."
    )
    episode = models.JSONField(
        default=dict,
        blank=True,
        help_text="What the anomaly tracker carries between runs (calm points, recent z).",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["series_id"]

    def __str__(self) -> str:
        return f"detector state of {self.series} up to {self.last_ts:%Y-%m-%d %H:%M}"


class LearnedModel(models.Model):
    """The isolation forest shared by all series, with the reservoir it is retrained on."""

    name = models.CharField(max_length=50, unique=True, default="fleet")
    blob = models.BinaryField()
    windows = models.PositiveIntegerField(default=0, help_text="Training windows in the reservoir.")
    trained_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"learned model {self.name} ({self.windows} windows)"


class Anomaly(models.Model):
    """An abnormal episode of one series, from onset until recovery (open while ongoing)."""

    class Status(models.TextChoices):
        OPEN = "open"
        ACKNOWLEDGED = "acknowledged"
        RESOLVED = "resolved"
        FALSE_POSITIVE = "false_positive"

    class Severity(models.TextChoices):
        INFO = "info"
        WARNING = "warning"
        CRITICAL = "critical"

    class State(models.TextChoices):
        """Where the episode is, as the on-call asks it: still abnormal, calm but not yet
        closed (a relapse resumes it), or over."""

        ONGOING = "ongoing"
        RECOVERING = "recovering"
        CLOSED = "closed"

    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="anomalies")
    started_at = models.DateTimeField(db_index=True, help_text="Estimated onset.")
    detected_at = models.DateTimeField(help_text="First point whose score crossed the alert.")
    last_seen_at = models.DateTimeField(help_text="Last point that was still abnormal.")
    ended_at = models.DateTimeField(null=True, blank=True, help_text="Recovery; empty if ongoing.")
    recovered_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=(
            "When it recovered, while it waits out its quiet period for a relapse before it "
            "closes; emptied by a relapse."
        ),
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.INFO)
    peak_score = models.FloatField()
    peak_surprisal = models.FloatField(help_text="-log10 tail probability at the peak.")
    peak_z = models.FloatField(help_text="Largest |observed - expected| in scale units.")
    direction = models.SmallIntegerField(help_text="+1 above expected, -1 below.")
    observed = models.FloatField(help_text="Value at the peak.")
    expected = models.FloatField(help_text="Expected value at the peak.")
    methods = models.JSONField(default=list, help_text="Method families that voted.")
    rules_fired = models.JSONField(
        default=list,
        blank=True,
        help_text="Names of the operator's detection rules that fired during it.",
    )
    votes = models.JSONField(default=dict, help_text="Family -> peak surprisal.")
    points = models.JSONField(
        default=list, help_text="[ts, value, expected, scale, score] of the abnormal points."
    )
    note = models.TextField(blank=True)
    acknowledged_by = models.CharField(max_length=150, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True)
    confirmed_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=(
            "When an operator acknowledged or resolved it (the job's own recovery does not "
            "count): a confirmed incident that recurs alerts again."
        ),
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-started_at"]
        verbose_name_plural = "anomalies"
        indexes = [models.Index(fields=["status", "severity"])]

    def __str__(self) -> str:
        return f"{self.series} {self.severity} @ {self.started_at:%Y-%m-%d %H:%M}"

    @property
    def is_ongoing(self) -> bool:
        return self.ended_at is None

    @property
    def state(self) -> str:
        """Ongoing, recovering (recovered, waiting out its quiet period) or closed.

        Derived, not stored: `ended_at` says closed and `recovered_at` says calm, so the
        two cannot disagree (selectors.anomaly_state_q asks the same in SQL).
        """
        if self.ended_at is not None:
            return self.State.CLOSED
        return self.State.RECOVERING if self.recovered_at is not None else self.State.ONGOING


class RootCauseCandidate(models.Model):
    """A series that became abnormal around an anomaly's onset, ranked as a possible cause."""

    anomaly = models.ForeignKey(Anomaly, on_delete=models.CASCADE, related_name="causes")
    # Deleting the cause's series keeps the candidate (its name stays in `evidence`): the
    # effect's record should still say what caused it.
    series = models.ForeignKey(
        Series, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    cause_anomaly = models.ForeignKey(
        Anomaly, on_delete=models.SET_NULL, null=True, blank=True, related_name="explained"
    )
    rank = models.PositiveSmallIntegerField()
    score = models.FloatField()
    lead_seconds = models.FloatField(help_text="How long before the onset it moved.")
    evidence = models.JSONField(default=dict)

    class Meta:
        ordering = ["anomaly", "rank"]
        constraints = [
            models.UniqueConstraint(fields=["anomaly", "series"], name="rootcause_anomaly_series")
        ]

    def __str__(self) -> str:
        return f"#{self.rank} {self.series_label} for anomaly {self.anomaly_id}"

    @property
    def series_label(self) -> str:
        """The cause's series, or its recorded name once that series is deleted."""
        if self.series is not None:
            return str(self.series)
        return f"{self.evidence.get('series', 'a series')} (deleted)"


# Severities from mildest to worst: jobs compare them (a playbook's floor, inhibition,
# escalation) and the API reports an incident's worst.
SEVERITY_ORDER = {s: i for i, s in enumerate(Anomaly.Severity.values)}


class DismissedPattern(models.Model):
    """The fingerprint of an anomaly an operator marked as a false positive."""

    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="+")
    anomaly = models.OneToOneField(Anomaly, on_delete=models.CASCADE, related_name="dismissal")
    direction = models.SmallIntegerField()
    peak_z = models.FloatField()
    methods = models.JSONField(default=list)
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    suppressed_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"dismissed pattern on {self.series} (|z| <= {self.peak_z:.1f})"


class DetectionRule(models.Model):
    """An operator threshold: value above/below a limit for at least a duration."""

    name = models.CharField(max_length=100, unique=True)
    series_name = models.CharField(
        max_length=200,
        help_text="Series name, or a shell-style pattern: `disk.used.*` applies it to each.",
    )
    labels = models.JSONField(default=dict, blank=True, help_text="Labels that must match.")
    above = models.FloatField(null=True, blank=True)
    below = models.FloatField(null=True, blank=True)
    min_duration_seconds = models.PositiveIntegerField(default=0)
    severity = models.CharField(
        max_length=10,
        choices=Anomaly.Severity.choices,
        blank=True,
        default="",
        help_text=(
            "When it fires, the anomaly is at least this severe (as a Prometheus rule's "
            "severity label); blank: judged on size, duration and importance like any other."
        ),
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors = rule_errors(
            labels=self.labels,
            above=self.above,
            below=self.below,
        )
        if errors:
            raise ValidationError(errors)


class DetectionTuning(models.Model):
    """How rare a series' point must be to alert, and which way (engine/tuning.py).

    Where several tunings match a series, the most specific applies: a series name over a
    pattern over any series, then more labels over fewer, then the name in order.
    """

    class Sensitivity(models.TextChoices):
        LOW = "low", "low (about the top 0.1 % of the series' points)"
        MEDIUM = "medium", "medium (the default, about the top 0.3 %)"
        HIGH = "high", "high (about the top 1 %)"

    class Direction(models.TextChoices):
        BOTH = "both", "above or below the expected value"
        ABOVE = "above", "only above the expected value"
        BELOW = "below", "only below the expected value"

    name = models.CharField(max_length=100, unique=True)
    series_name = models.CharField(
        max_length=200,
        blank=True,
        help_text="Series name or shell-style pattern (`checkout.*`); empty: any series.",
    )
    labels = models.JSONField(default=dict, blank=True, help_text="Labels that must match.")
    sensitivity = models.CharField(
        max_length=10, choices=Sensitivity.choices, default=Sensitivity.MEDIUM
    )
    direction = models.CharField(max_length=10, choices=Direction.choices, default=Direction.BOTH)
    comment = models.TextField(
        max_length=2000, blank=True, help_text="Why: the next operator reads it."
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if errors := tuning_errors(labels=self.labels):
            raise ValidationError(errors)


class SignalLayerRule(models.Model):
    """Where a metric sits in load → saturation → symptoms, when its name does not say.

    Root-cause ranking orders simultaneous onsets by layer (`engine/signal_layers.py`),
    read from words in metric names: `http.requests.rate` is demand, `db.connections` a
    resource. `orders.created` or `queue.latency` say nothing it knows (or the wrong
    thing), and an operator who knows declares them here. The most specific rule
    matching a series applies, as for tunings; rankings made from the next run on read it.
    """

    class Layer(models.TextChoices):
        DEMAND = "demand", "demand (work arriving: requests, users, orders)"
        RESOURCE = "resource", "resource (utilisation and saturation: CPU, pools, queues)"
        OUTCOME = "outcome", "outcome (a service's errors and duration)"

    name = models.CharField(max_length=100, unique=True)
    series_name = models.CharField(
        max_length=200,
        help_text="Series name or shell-style pattern (`orders.*`).",
    )
    labels = models.JSONField(default=dict, blank=True, help_text="Labels that must match.")
    layer = models.CharField(max_length=10, choices=Layer.choices)
    comment = models.TextField(
        max_length=2000, blank=True, help_text="Why: the next operator reads it."
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name}: {self.series_name} is {self.layer}"

    def clean(self) -> None:
        if errors := layer_rule_errors(series_name=self.series_name, labels=self.labels):
            raise ValidationError(errors)


class ResponsePlaybook(models.Model):
    """What to do automatically when an anomaly matches: notify or start another system."""

    class Action(models.TextChoices):
        WEBHOOK = "webhook"
        SLACK = "slack", "Slack (incoming webhook)"
        TEAMS = "teams", "Microsoft Teams (workflow webhook)"
        PAGERDUTY = "pagerduty", "PagerDuty (Events API v2)"
        EMAIL = "email"
        CELERY_TASK = "celery_task"

    name = models.CharField(max_length=100, unique=True)
    enabled = models.BooleanField(default=True)
    series_name = models.CharField(
        max_length=200,
        blank=True,
        help_text="Series name or shell-style pattern (`checkout.*`); empty: any series.",
    )
    labels = models.JSONField(default=dict, blank=True, help_text="Labels that must match.")
    min_severity = models.CharField(
        max_length=10, choices=Anomaly.Severity.choices, default=Anomaly.Severity.WARNING
    )
    action = models.CharField(max_length=20, choices=Action.choices)
    target = models.CharField(
        max_length=500,
        help_text="Webhook, Slack or Teams URL, PagerDuty integration (routing) key, "
        "comma-separated e-mails or a Celery task name.",
    )
    arguments = models.JSONField(default=dict, blank=True, help_text="Task kwargs / extra payload.")
    max_attempts = models.PositiveSmallIntegerField(
        default=4, validators=[MinValueValidator(1), MaxValueValidator(MAX_ATTEMPTS)]
    )
    repeat_interval_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[
            MinValueValidator(MIN_REPEAT_SECONDS),
            MaxValueValidator(MAX_REPEAT_SECONDS),
        ],
        help_text="Send the page again this often while the anomaly goes on and nobody has "
        "acknowledged it (Alertmanager's repeat_interval; 14400 is 4 hours). Empty: once. "
        "Notifications only (webhook, Slack, Teams, PagerDuty, e-mail).",
    )
    update_interval_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        default=DEFAULT_UPDATE_SECONDS,
        validators=[
            MinValueValidator(MIN_UPDATE_SECONDS),
            MaxValueValidator(MAX_UPDATE_SECONDS),
        ],
        help_text="With inhibit_effects: when more of a paged incident goes on, send the "
        "page again naming it, no sooner than this after the last message (Alertmanager's "
        "group_interval; 300 is 5 minutes). Empty: never.",
    )
    inhibit_effects = models.BooleanField(
        default=True,
        help_text="One page per incident: an anomaly whose most likely root cause is another "
        "ongoing anomaly this playbook has paged (and at least as severe) is not paged on its "
        "own, as Alertmanager's inhibit rules do; it pages if it outlives its cause. "
        "Notifications only: tasks run for every anomaly.",
    )
    effect_grace_seconds = models.PositiveIntegerField(
        default=DEFAULT_EFFECT_GRACE_SECONDS,
        validators=[MaxValueValidator(MAX_EFFECT_GRACE_SECONDS)],
        help_text="With inhibit_effects: how long after its cause was last abnormal an "
        "effect may still be abnormal and stay part of that incident (1800 is 30 minutes). "
        "Past it, the effect is paged as its own problem; 0 pages it as soon as its cause "
        "recovers.",
    )
    group_by = models.JSONField(
        default=list,
        blank=True,
        help_text='Label names (`["service"]`): anomalies whose series share their values are '
        "one notification group, as Alertmanager's group_by. The group's first anomaly is "
        "paged; the others join its notifications on the update interval, and when it ends "
        "the next still abnormal carries the group on under the same group key. "
        "Notifications only. Empty: each anomaly (or incident) is its own group.",
    )
    group_wait_seconds = models.PositiveIntegerField(
        default=0,
        validators=[MaxValueValidator(MAX_GROUP_WAIT_SECONDS)],
        help_text="With group_by: how long a new group's first page waits for the rest of "
        "the group, so that it names what the first minutes brought (Alertmanager's "
        "group_wait). 0: paged at once.",
    )
    active_weekdays = models.JSONField(
        default=list,
        blank=True,
        help_text='Active only on these days (["monday", "tuesday", "wednesday", "thursday", '
        '"friday"]); empty: every day. Outside its active time the playbook sends nothing '
        "(Alertmanager's active_time_intervals): what still goes on when it begins is paged "
        "then, and resolutions are always sent.",
    )
    active_start = models.TimeField(
        null=True, blank=True, help_text="Active only from this time of day (with its end)."
    )
    active_end = models.TimeField(
        null=True,
        blank=True,
        help_text="... to this one; at or before the start, the window runs past midnight.",
    )
    active_time_zone = models.CharField(
        max_length=64, default="UTC", help_text="Where the days and times are read (IANA name)."
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.action})"

    @property
    def limited_hours(self) -> bool:
        """Whether it is active only on some days or hours."""
        return bool(self.active_weekdays) or self.active_start is not None

    def active_at(self, at: datetime) -> bool:
        """Whether it sends at `at`: a business-hours Slack channel is quiet at night, while
        the pager's playbook, with no window, always sends."""
        return not self.limited_hours or in_recurring_window(
            at,
            weekdays=self.active_weekdays,
            start=self.active_start,
            end=self.active_end,
            time_zone=self.active_time_zone,
        )

    def waits_for_group(self, anomaly: Anomaly, now: datetime) -> bool:
        """Whether the page that would open `anomaly`'s group waits for more of it: the
        scoring run after `group_wait_seconds` pages the group's first anomaly (by onset)
        with the others held back in it, instead of a page naming one series."""
        return (
            self.groups
            and self.group_wait_seconds > 0
            and (now - anomaly.detected_at).total_seconds() < self.group_wait_seconds
        )

    @property
    def groups(self) -> bool:
        """Whether it groups anomalies by labels (`group_by`): notifications only."""
        return bool(self.group_by) and self.action in NOTIFY_ACTIONS

    def group_of(self, series: Series) -> dict[str, str] | None:
        """The notification group `series` belongs to under `group_by` (label -> value, an
        absent label counting as empty, as Alertmanager's), or None when the playbook does
        not group by labels."""
        if not self.groups:
            return None
        return dict(zip(self.group_by, equal_key(self.group_by, series.labels), strict=True))

    def matches(self, anomaly: Anomaly) -> bool:
        """Whether this playbook responds to the anomaly: its series, labels and severity."""
        series = anomaly.series
        return (
            series_matches(self.series_name, self.labels, series.name, series.labels)
            and SEVERITY_ORDER[anomaly.severity] >= SEVERITY_ORDER[self.min_severity]
        )

    def problems(self) -> dict[str, list[str]]:
        """What the checks refuse in this row, by field: the admin's form says it, and the
        scoring job skips a row written from a shell that has any."""
        return playbook_errors(
            action=self.action,
            target=self.target,
            labels=self.labels,
            arguments=self.arguments,
            repeat_interval_seconds=self.repeat_interval_seconds,
            group_by=self.group_by,
            group_wait_seconds=self.group_wait_seconds,
            active_weekdays=self.active_weekdays,
            active_start=self.active_start,
            active_end=self.active_end,
            active_time_zone=self.active_time_zone,
        )

    def clean(self) -> None:
        if errors := self.problems():
            raise ValidationError(errors)


class InhibitionRule(models.Model):
    """A declared dependency: while an anomaly on a source series goes on, anomalies on
    target series are part of its incident, whatever the root-cause ranking says.

    Alertmanager's `inhibit_rules`. Inhibition otherwise follows the ranking's likeliest
    cause (`services.inhibition`), which is learned from onsets and can put an endpoint's
    latency down to a busy CPU rather than the database it waits on; an operator who
    knows that every `http.*` series depends on `db.*` says so once, and a database
    outage pages once even where the ranking is wrong. `equal` keeps it to the same
    place: with `["env"]`, staging's database does not hold back production's pages.
    Applied, like the ranking's inhibition, by playbooks with `inhibit_effects`, and only
    behind a source the same playbook has paged (or a silence mutes), at least as severe
    as the target.
    """

    name = models.CharField(max_length=100, unique=True)
    enabled = models.BooleanField(default=True)
    source_series = models.CharField(
        max_length=600,
        help_text="The cause: a series name or a shell-style pattern (`db.*`).",
    )
    source_labels = models.JSONField(
        default=dict, blank=True, help_text="Labels the source series must carry."
    )
    target_series = models.CharField(
        max_length=600,
        help_text="What it takes down: a series name or a shell-style pattern (`http.*`).",
    )
    target_labels = models.JSONField(
        default=dict, blank=True, help_text="Labels the target series must carry."
    )
    equal = models.JSONField(
        default=list,
        blank=True,
        help_text="Label names whose values must be the same on the source and the target "
        '(`["env"]`); an absent label counts as empty.',
    )
    comment = models.TextField(
        blank=True, max_length=2000, help_text="Why the one depends on the other."
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name}: {self.source_series} holds back {self.target_series}"

    def targets(self, series: Series) -> bool:
        return series_matches(self.target_series, self.target_labels, series.name, series.labels)

    def is_source(self, series: Series) -> bool:
        return series_matches(self.source_series, self.source_labels, series.name, series.labels)

    def equal_key(self, series: Series) -> tuple[str, ...]:
        """What a source and a target must share (`equal`): sources grouped by it are
        looked up, not scanned, for each target."""
        return equal_key(self.equal, series.labels)

    def group_sources(
        self, items: Iterable[T], series_of: Callable[[T], Series]
    ) -> dict[tuple[str, ...], list[T]]:
        """The items on series this rule names as sources, in their order, grouped by what
        `equal` compares: each target then looks its group up (`equal_key`) instead of
        scanning every source, which kept a rule as wide as `*` over `*` linear in a
        fleet-wide incident."""
        groups: dict[tuple[str, ...], list[T]] = {}
        for item in items:
            series = series_of(item)
            if self.is_source(series):
                groups.setdefault(self.equal_key(series), []).append(item)
        return groups

    def holds_back(self, source: Series, target: Series) -> bool:
        """Whether an anomaly on `source` holds back one on `target` (never itself)."""
        return (
            source.pk != target.pk
            and self.targets(target)
            and self.is_source(source)
            and self.equal_key(source) == self.equal_key(target)
        )

    def problems(self) -> dict[str, list[str]]:
        """What the checks refuse in this row, by field: the admin's form says it, and the
        scoring job skips a row written from a shell that has any."""
        return inhibition_rule_errors(
            source_series=self.source_series,
            source_labels=self.source_labels,
            target_series=self.target_series,
            target_labels=self.target_labels,
            equal=self.equal,
        )

    def clean(self) -> None:
        if errors := self.problems():
            raise ValidationError(errors)


class ResponseExecution(models.Model):
    """One playbook run for one anomaly; repeats of the ongoing anomaly are grouped here."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        RETRYING = "retrying"
        # Not sent: its playbook was disabled or no longer matches, the anomaly was marked
        # a false positive, or a silence began, while it waited. Queued again if it
        # matches again.
        CANCELLED = "cancelled"
        # Not sent: its anomaly's most likely root cause is another ongoing anomaly the
        # playbook has paged (`result["inhibited_by"]`). Queued if that stops being true.
        INHIBITED = "inhibited"

    playbook = models.ForeignKey(ResponsePlaybook, on_delete=models.CASCADE, related_name="runs")
    anomaly = models.ForeignKey(Anomaly, on_delete=models.CASCADE, related_name="responses")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    repeats = models.PositiveIntegerField(
        default=0, help_text="Later matches of the same ongoing anomaly, grouped, not re-sent."
    )
    duration_ms = models.FloatField(null=True, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    resolved_notified_at = models.DateTimeField(
        null=True, blank=True, help_text="When a webhook receiver was told the alert resolved."
    )
    notified_severity = models.CharField(
        max_length=10,
        blank=True,
        help_text="The severity the receiver was last told: a webhook or Slack receiver is "
        "told again when the anomaly escalates.",
    )
    notified_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the receiver was last sent the anomaly as firing (the page, an "
        "escalation or a reminder): the playbook's repeat interval counts from here.",
    )
    reminders = models.PositiveIntegerField(
        default=0, help_text="Reminders sent while the anomaly went on unacknowledged."
    )
    notified_effects = models.PositiveIntegerField(
        default=0,
        help_text="How many ongoing anomalies put down to this one the receiver was last "
        "told of: when more go on, a playbook that inhibits effects sends an update.",
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["playbook", "anomaly"], name="execution_once_per_anomaly"
            )
        ]

    def __str__(self) -> str:
        return f"{self.playbook} for anomaly {self.anomaly_id}: {self.status}"


class Silence(models.Model):
    """A maintenance window: what it matches is still detected and listed, but no
    playbook runs for it until the window ends.

    Alertmanager's silences and Datadog's downtimes work the same way. An anomaly still
    ongoing when the silence ends gets its responses on the next scoring run, so muting
    a deploy never hides an incident that outlasts it.
    """

    series_pattern = models.CharField(
        # A series name (200 characters) escaped for the pattern can be three times longer.
        max_length=600,
        help_text="Series name, or a shell-style pattern: `http.*`, `*` for every series.",
    )
    labels = models.JSONField(default=dict, blank=True, help_text="Labels that must match.")
    exact_labels = models.BooleanField(
        default=False,
        help_text="The series' labels must be exactly these, not include them: one series "
        "(set when silencing from an anomaly).",
    )
    starts_at = models.DateTimeField(default=timezone.now)
    ends_at = models.DateTimeField(db_index=True)
    weekdays = models.JSONField(
        default=list,
        blank=True,
        help_text='Recurring: only on these days (["saturday", "sunday"]); empty: every day.',
    )
    daily_start = models.TimeField(
        null=True, blank=True, help_text="Recurring: only from this time of day (with its end)."
    )
    daily_end = models.TimeField(
        null=True,
        blank=True,
        help_text="... to this one; at or before the start, the window runs past midnight.",
    )
    time_zone = models.CharField(
        max_length=64, default="UTC", help_text="Where the days and times are read (IANA name)."
    )
    comment = models.TextField(max_length=2000, help_text="Why: the next operator reads it.")
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-starts_at"]

    def __str__(self) -> str:
        labels = labels_key(self.labels)
        return f"silence {self.series_pattern}{{{labels}}} until {self.ends_at:%Y-%m-%d %H:%M}"

    @property
    def recurs(self) -> bool:
        """Whether it mutes only on some days or hours between its start and end."""
        return bool(self.weekdays) or self.daily_start is not None

    def is_active(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at and (
            not self.recurs
            or in_recurring_window(
                at,
                weekdays=self.weekdays,
                start=self.daily_start,
                end=self.daily_end,
                time_zone=self.time_zone,
            )
        )

    def matches(self, name: str, labels: dict | None) -> bool:
        return series_matches(
            self.series_pattern, self.labels, name, labels, exact_labels=self.exact_labels
        )

    def clean(self) -> None:
        errors = silence_errors(
            series_pattern=self.series_pattern,
            labels=self.labels,
            starts_at=self.starts_at,
            ends_at=self.ends_at,
            comment=self.comment,
            now=timezone.now() if self._state.adding else None,
            weekdays=self.weekdays,
            daily_start=self.daily_start,
            daily_end=self.daily_end,
            time_zone=self.time_zone,
        )
        if errors:
            raise ValidationError(errors)
