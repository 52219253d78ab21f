"""What the forecasting system tracks and what it concluded.

A ``ForecastTarget`` says what to forecast (a telemetry series or a metric
counted from events) and, optionally, the limit it must not cross. Each run
writes a ``Forecast`` per target and horizon with its ``ForecastPoint`` rows,
the ``BacktestResult`` of every candidate model (so the choice can be
audited), and the ``BusinessInsight`` records read by the insights and
scaling systems.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class PredictionType(models.TextChoices):
    USER_GROWTH = "user_growth", "User growth"
    ENGAGEMENT = "engagement", "Engagement"
    PERFORMANCE = "performance", "Performance"
    RESOURCE_USAGE = "resource_usage", "Resource usage"
    TRAFFIC = "traffic", "Traffic"
    ERROR_RATE = "error_rate", "Error rate"


class HorizonGroup(models.TextChoices):
    SHORT = "short", "Short (7 days)"
    MEDIUM = "medium", "Medium (30 days)"
    LONG = "long", "Long (90 to 365 days)"


#: forecast horizons in days and the group each belongs to
HORIZONS: dict[int, str] = {
    7: HorizonGroup.SHORT,
    30: HorizonGroup.MEDIUM,
    90: HorizonGroup.LONG,
    180: HorizonGroup.LONG,
    365: HorizonGroup.LONG,
}


class ForecastTarget(models.Model):
    """A number worth forecasting, where it comes from, and the limit it must respect."""

    class Source(models.TextChoices):
        SERIES = "series", "Telemetry series"
        EVENTS = "events", "Counted from events"

    class Direction(models.TextChoices):
        ABOVE = "above", "Must stay below the threshold"
        BELOW = "below", "Must stay above the threshold"

    name = models.CharField(max_length=100, unique=True)
    prediction_type = models.CharField(max_length=20, choices=PredictionType.choices)
    source = models.CharField(max_length=10, choices=Source.choices)
    series = models.ForeignKey(
        "telemetry.Series",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="forecast_targets",
    )
    event_metric = models.CharField(
        max_length=30,
        blank=True,
        help_text="For event targets: active_users, new_users, events_per_user, sessions_per_user.",
    )
    threshold = models.FloatField(
        null=True, blank=True, help_text="SLO or capacity limit whose crossing date is forecast."
    )
    threshold_direction = models.CharField(
        max_length=5, choices=Direction.choices, default=Direction.ABOVE
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["prediction_type", "name"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(source="series", series__isnull=False)
                    | models.Q(source="events", series__isnull=True) & ~models.Q(event_metric="")
                ),
                name="forecast_target_source_complete",
            )
        ]

    def __str__(self) -> str:
        return self.name


class Forecast(models.Model):
    """One forecast of a target over one horizon, with the accuracy its model showed."""

    target = models.ForeignKey(ForecastTarget, on_delete=models.CASCADE, related_name="forecasts")
    prediction_type = models.CharField(max_length=20, choices=PredictionType.choices, db_index=True)
    horizon_days = models.PositiveSmallIntegerField(db_index=True)
    horizon_group = models.CharField(max_length=6, choices=HorizonGroup.choices)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    is_current = models.BooleanField(
        default=True, help_text="The latest forecast of this target and horizon."
    )
    model_name = models.CharField(max_length=200)
    step_seconds = models.FloatField(help_text="Grain the forecast was made at.")
    seasonal_periods = models.JSONField(default=list, blank=True)
    history_start = models.DateTimeField()
    history_end = models.DateTimeField()
    history_points = models.PositiveIntegerField()
    # accuracy of the chosen model and of the seasonal naive in the rolling-origin backtest
    backtest_mase = models.FloatField(null=True)
    backtest_smape = models.FloatField(null=True)
    backtest_coverage80 = models.FloatField(
        null=True, help_text="Out-of-sample share of actuals inside the 80% interval."
    )
    backtest_coverage95 = models.FloatField(null=True)
    baseline_model = models.CharField(max_length=100)
    baseline_mase = models.FloatField(null=True)
    backtest_horizon_steps = models.PositiveIntegerField(default=0)
    backtest_origins = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["target", "horizon_days", "history_end"],
                name="forecast_target_horizon_history_uniq",
            ),
            models.UniqueConstraint(
                fields=["target", "horizon_days"],
                condition=models.Q(is_current=True),
                name="forecast_one_current_per_target_horizon",
            ),
        ]
        indexes = [models.Index(fields=["prediction_type", "horizon_days", "is_current"])]

    def __str__(self) -> str:
        return f"{self.target} +{self.horizon_days}d ({self.model_name})"

    @property
    def beats_baseline(self) -> bool | None:
        if self.backtest_mase is None or self.baseline_mase is None:
            return None
        return self.backtest_mase < self.baseline_mase


class ForecastPoint(models.Model):
    """A forecast value with its 80% and 95% intervals."""

    forecast = models.ForeignKey(Forecast, on_delete=models.CASCADE, related_name="points")
    ts = models.DateTimeField()
    yhat = models.FloatField()
    lower80 = models.FloatField()
    upper80 = models.FloatField()
    lower95 = models.FloatField()
    upper95 = models.FloatField()

    class Meta:
        ordering = ["forecast", "ts"]
        constraints = [
            models.UniqueConstraint(fields=["forecast", "ts"], name="forecast_point_ts_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.forecast_id}@{self.ts:%Y-%m-%d %H:%M}={self.yhat:g}"


class BacktestResult(models.Model):
    """How one candidate model did in the backtest behind a forecast."""

    forecast = models.ForeignKey(Forecast, on_delete=models.CASCADE, related_name="backtests")
    model_name = models.CharField(max_length=200)
    mase = models.FloatField()
    smape = models.FloatField()
    is_chosen = models.BooleanField(default=False)
    is_baseline = models.BooleanField(default=False)
    rank = models.PositiveSmallIntegerField(help_text="1 = lowest MASE.")

    class Meta:
        ordering = ["forecast", "rank"]
        constraints = [
            models.UniqueConstraint(
                fields=["forecast", "model_name"], name="backtest_forecast_model_uniq"
            )
        ]

    def __str__(self) -> str:
        return f"{self.model_name}: MASE {self.mase:.3f}"


class BusinessInsight(models.Model):
    """A conclusion drawn from a target's history or forecast, for people and other systems."""

    class Kind(models.TextChoices):
        GROWTH = "growth", "Growth rate"
        THRESHOLD_CROSSING = "threshold_crossing", "Threshold crossing"
        TREND_CHANGE = "trend_change", "Trend change"

    target = models.ForeignKey(ForecastTarget, on_delete=models.CASCADE, related_name="insights")
    forecast = models.ForeignKey(
        Forecast, null=True, blank=True, on_delete=models.SET_NULL, related_name="insights"
    )
    prediction_type = models.CharField(max_length=20, choices=PredictionType.choices, db_index=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, db_index=True)
    horizon_days = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    is_current = models.BooleanField(default=True)
    summary = models.CharField(max_length=300)
    # growth: rate over `per_days` with its interval; trend change: slopes per day
    value = models.FloatField(null=True, blank=True)
    lower = models.FloatField(null=True, blank=True)
    upper = models.FloatField(null=True, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    # crossing: expected date and its range; trend change: when it happened
    expected_at = models.DateTimeField(null=True, blank=True)
    earliest_at = models.DateTimeField(null=True, blank=True)
    latest_at = models.DateTimeField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["kind", "is_current"])]

    def __str__(self) -> str:
        return self.summary
