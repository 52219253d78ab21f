"""Detection rules and tunings (admins edit), with their previews over stored history
(operators)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from telemetry.serializers import ModelSerializer

from .. import selectors, tunings
from ..models import (
    DetectionRule,
    DetectionTuning,
)
from ..validation import (
    rule_errors,
    tuning_errors,
)
from .edits import ADMIN_EDITS, merged_fields


class DetectionRuleSerializer(ModelSerializer):
    class Meta:
        model = DetectionRule
        fields = [
            "id",
            "name",
            "series_name",
            "labels",
            "above",
            "below",
            "min_duration_seconds",
            "severity",
            "enabled",
        ]

    def validate(self, attrs):
        defaults = {"labels": {}, "above": None, "below": None}
        if errors := rule_errors(**merged_fields(attrs, self.instance, defaults)):
            raise serializers.ValidationError(errors)
        return attrs


class DetectionTuningSerializer(ModelSerializer):
    class Meta:
        model = DetectionTuning
        fields = [
            "id",
            "name",
            "series_name",
            "labels",
            "sensitivity",
            "direction",
            "comment",
            "enabled",
            "created_at",
        ]
        read_only_fields = ["created_at"]

    def validate(self, attrs):
        if errors := tuning_errors(**merged_fields(attrs, self.instance, {"labels": {}})):
            raise serializers.ValidationError(errors)
        return attrs


class TuningPreviewDaysSerializer(serializers.Serializer):
    days = serializers.IntegerField(
        required=False,
        default=7,
        min_value=1,
        max_value=tunings.TUNING_PREVIEW_MAX_DAYS,
        help_text="The window: the last `days` days up to now.",
    )


class TuningPreviewSerializer(DetectionTuningSerializer):
    """A tuning's own fields and checks; the name may be an existing tuning's (an edit)."""

    name = serializers.CharField(max_length=100, required=False, allow_blank=True)


class TuningPreviewAlertSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    score = serializers.FloatField()
    observed = serializers.FloatField()
    expected = serializers.FloatField()
    direction = serializers.IntegerField(
        help_text="+1 above the expected value, -1 below, 0 the series stalled (no direction)."
    )


class TuningPreviewSeriesSerializer(serializers.Serializer):
    series_id = serializers.IntegerField()
    series = serializers.CharField()
    points = serializers.IntegerField(help_text="Points in the window.")
    warmup_points = serializers.IntegerField(
        help_text="Points before the window the replay learned from (up to 7 days)."
    )
    tuning_now = serializers.CharField(
        allow_null=True, help_text="The tuning that applies now (null: the defaults)."
    )
    sensitivity_now = serializers.CharField()
    direction_now = serializers.CharField()
    alerts_now = serializers.IntegerField(help_text="Alerts under the tuning it has now.")
    alerts = serializers.IntegerField(help_text="Alerts under this tuning.")
    by_sensitivity = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="Alerts at low, medium and high, in this tuning's direction.",
    )
    alert_points = TuningPreviewAlertSerializer(
        many=True,
        help_text=f"Under this tuning, the newest {tunings.TUNING_PREVIEW_MAX_ALERTS}, "
        "oldest first.",
    )


class TuningPreviewResultSerializer(serializers.Serializer):
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    days = serializers.IntegerField()
    sensitivity = serializers.CharField()
    direction = serializers.CharField()
    series_matched = serializers.IntegerField(help_text="Series the pattern and labels match.")
    series_shadowed = serializers.IntegerField(
        help_text="Of those, series where a more specific tuning applies instead."
    )
    series_previewed = serializers.IntegerField(
        help_text=f"At most {tunings.TUNING_PREVIEW_MAX_SERIES}, the first by name."
    )
    capped = serializers.BooleanField()
    note = serializers.CharField(required=False, help_text="Present when capped.")
    alerts = serializers.IntegerField(help_text="Alerts under this tuning, every series.")
    alerts_now = serializers.IntegerField(help_text="Alerts under the tunings they have now.")
    series = TuningPreviewSeriesSerializer(many=True, help_text="The noisiest first.")


class DetectionTuningViewSet(viewsets.ModelViewSet):
    """Per-series sensitivity and direction, read by the scoring job at its next run.

    `preview` replays the last days of the series a tuning would apply to, before it is
    saved (`tunings.tuning_preview`): alerts now, under this tuning, and at each
    sensitivity, as Sentry and Datadog draw an anomaly alert's history before it is saved.
    """

    serializer_class = DetectionTuningSerializer
    queryset = DetectionTuning.objects.all()
    # A preview replays up to five series' two weeks: operators, as for the rules' preview.
    action_roles = {**ADMIN_EDITS, "preview": "operator", "saved_preview": "operator"}

    @extend_schema(
        request=DetectionTuningSerializer,
        parameters=[TuningPreviewDaysSerializer],
        responses=TuningPreviewResultSerializer,
    )
    @action(detail=False, methods=["post"])
    def preview(self, request):
        """What a tuning with these fields would have alerted over the last `days`, unsaved."""
        body = TuningPreviewSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        query = TuningPreviewDaysSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = body.validated_data
        unsaved = DetectionTuning(
            name=data.get("name", ""),
            series_name=data.get("series_name", ""),
            labels=data.get("labels") or {},
            sensitivity=data.get("sensitivity", DetectionTuning.Sensitivity.MEDIUM),
            direction=data.get("direction", DetectionTuning.Direction.BOTH),
        )
        return Response(tunings.tuning_preview(unsaved, days=query.validated_data["days"]))

    @extend_schema(
        parameters=[TuningPreviewDaysSerializer], responses=TuningPreviewResultSerializer
    )
    @action(detail=True, methods=["get"], url_path="preview")
    def saved_preview(self, request, pk=None):
        """What this tuning would have alerted over the last `days` (enabled or not)."""
        tuning = self.get_object()
        query = TuningPreviewDaysSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        # A row written from a shell may be one the job skips (tunings.usable_tunings).
        if errors := tuning_errors(labels=tuning.labels):
            return Response(errors, status=status.HTTP_400_BAD_REQUEST)
        return Response(tunings.tuning_preview(tuning, days=query.validated_data["days"]))


class RulePreviewDaysSerializer(serializers.Serializer):
    days = serializers.IntegerField(
        required=False,
        default=7,
        min_value=1,
        max_value=selectors.RULE_PREVIEW_MAX_DAYS,
        help_text="The window: the last `days` days up to now.",
    )


class RulePreviewSerializer(DetectionRuleSerializer):
    """A rule's own fields and checks, so that a preview and a save refuse the same input.

    The name need not be new: previewing an edit of a saved rule must not fail on its own
    name. The name, severity and enabled flag are checked but do not change where the
    rule fires. The schema declares the rule's body (`DetectionRule`): an operator's form
    sends what it would save.
    """

    name = serializers.CharField(max_length=100, required=False, allow_blank=True)


class RulePreviewEpisodeSerializer(serializers.Serializer):
    started_at = serializers.DateTimeField(help_text="First breaching point.")
    start_known = serializers.BooleanField(
        help_text="False: already breaching at the first point read (it began earlier)."
    )
    fired_at = serializers.DateTimeField(
        help_text="When the rule fired, `min_duration_seconds` into the breach; before "
        "`since` for a breach that fired earlier and still went on in the window."
    )
    ended_at = serializers.DateTimeField(help_text="Last breaching point.")
    ongoing = serializers.BooleanField(help_text="Still breaching at the last point.")
    duration_seconds = serializers.FloatField()
    peak = serializers.FloatField(help_text="The value farthest beyond the threshold.")
    points = serializers.IntegerField(help_text="Breaching points.")


class RulePreviewSeriesSerializer(serializers.Serializer):
    series_id = serializers.IntegerField()
    series = serializers.CharField()
    points = serializers.IntegerField(help_text="Points in the window.")
    source = serializers.CharField(help_text="raw, or rollup+raw: hourly means before raw_from.")
    step_seconds = serializers.FloatField(
        allow_null=True,
        help_text="The step as the detector learns it; a breach does not "
        "carry over 10 of them without data.",
    )
    breaching_points = serializers.IntegerField()
    firing_points = serializers.IntegerField()
    count = serializers.IntegerField(help_text="Episodes in which the rule fired.")
    episodes = RulePreviewEpisodeSerializer(
        many=True, help_text=f"The newest {selectors.RULE_PREVIEW_MAX_EPISODES}, oldest first."
    )


class RulePreviewResultSerializer(serializers.Serializer):
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    days = serializers.IntegerField()
    series_matched = serializers.IntegerField(help_text="Series the rule would apply to.")
    series_previewed = serializers.IntegerField(
        help_text=f"At most {selectors.RULE_PREVIEW_MAX_SERIES}, the first by name, and "
        f"only until about {selectors.RULE_PREVIEW_MAX_POINTS:,} points have been read."
    )
    capped = serializers.BooleanField()
    note = serializers.CharField(required=False, help_text="Present when capped.")
    count = serializers.IntegerField(help_text="Episodes over every previewed series.")
    series_firing = serializers.IntegerField()
    source = serializers.CharField(
        help_text="raw; rollup+raw when part of the window is past the raw retention "
        "(hourly means there, which can hide a short breach)."
    )
    raw_from = serializers.DateTimeField(
        allow_null=True, help_text="Raw samples are complete from here on."
    )
    rollup_step_seconds = serializers.FloatField(allow_null=True)
    series = RulePreviewSeriesSerializer(many=True, help_text="The noisiest first.")


class DetectionRuleViewSet(viewsets.ModelViewSet):
    serializer_class = DetectionRuleSerializer
    queryset = DetectionRule.objects.all()
    # Previews read up to a month of history for up to 50 series: operators, as for the
    # silences' preview, even for the GET on a saved rule.
    action_roles = {**ADMIN_EDITS, "preview": "operator", "saved_preview": "operator"}

    @extend_schema(
        request=DetectionRuleSerializer,
        parameters=[RulePreviewDaysSerializer],
        responses=RulePreviewResultSerializer,
    )
    @action(detail=False, methods=["post"])
    def preview(self, request):
        """Where a rule with these fields would have fired over the last `days`, unsaved."""
        body = RulePreviewSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        query = RulePreviewDaysSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        fields = _preview_fields(body.validated_data)
        return Response(selectors.rule_preview(**fields, days=query.validated_data["days"]))

    @extend_schema(parameters=[RulePreviewDaysSerializer], responses=RulePreviewResultSerializer)
    @action(detail=True, methods=["get"], url_path="preview")
    def saved_preview(self, request, pk=None):
        """Where this rule would have fired over the last `days` (enabled or not)."""
        rule = self.get_object()
        query = RulePreviewDaysSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        fields = {f: getattr(rule, f) for f in _PREVIEW_FIELDS}
        # A row written from a shell may be one the job skips (scoring._usable_rules).
        if errors := rule_errors(labels=rule.labels, above=rule.above, below=rule.below):
            return Response(errors, status=status.HTTP_400_BAD_REQUEST)
        return Response(selectors.rule_preview(**fields, days=query.validated_data["days"]))


_PREVIEW_FIELDS = ("series_name", "labels", "above", "below", "min_duration_seconds")


def _preview_fields(data: dict) -> dict:
    return {
        **{f: data.get(f) for f in _PREVIEW_FIELDS},
        "labels": data.get("labels") or {},
        "min_duration_seconds": data.get("min_duration_seconds") or 0,
    }
