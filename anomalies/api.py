"""Anomaly API: the `anomaly/detect` read, and viewsets for anomalies, rules, playbooks,
executions and silences. Views validate and call services; roles come from the project defaults."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from telemetry.actors import request_actor
from telemetry.api import InstantField, resolve_window
from telemetry.serializers import ChoiceField, ModelSerializer
from telemetry.validation import MAX_ID

from . import selectors, services, tunings
from .engine import COLLAPSE, FAMILIES, RECURRENCE, STALLED
from .models import (
    Anomaly,
    DetectionRule,
    DetectionTuning,
    InhibitionRule,
    ResponseExecution,
    ResponsePlaybook,
    RootCauseCandidate,
    Silence,
)
from .secrets import mask_text, mask_url, mask_value, may_see_secrets
from .validation import (
    URL_ACTIONS,
    inhibition_rule_errors,
    playbook_errors,
    rule_errors,
    silence_errors,
    silence_match_errors,
    tuning_errors,
)

ADMIN_EDITS = {"create": "admin", "update": "admin", "partial_update": "admin", "destroy": "admin"}


class RootCauseSerializer(ModelSerializer):
    series = serializers.CharField(source="series_label", read_only=True)

    class Meta:
        model = RootCauseCandidate
        fields = ["rank", "series", "series_id", "score", "lead_seconds", "evidence"]


@extend_schema_field({"type": "string", "enum": list(Anomaly.State.values)})
class AnomalyStateField(ChoiceField):
    """The anomaly states, inlined in the schema (one enum name per choice set)."""


class AnomalySerializer(ModelSerializer):
    series_name = serializers.CharField(source="series.__str__", read_only=True)
    state = AnomalyStateField(
        choices=Anomaly.State.choices,
        read_only=True,
        help_text="ongoing; recovering: calm again since `recovered_at`, waiting out the "
        "quiet period (a relapse resumes it); closed: `ended_at` is set.",
    )
    root_causes = RootCauseSerializer(source="causes", many=True, read_only=True)
    silenced_by = serializers.SerializerMethodField(
        help_text="Active silences that hold this anomaly's responses back."
    )
    explains = serializers.SerializerMethodField(
        help_text="Anomalies whose likeliest root cause is this one: the rest of its "
        "incident, which playbooks with `inhibit_effects` did not page on their own."
    )

    class Meta:
        model = Anomaly
        fields = [
            "id",
            "series",
            "series_name",
            "started_at",
            "detected_at",
            "last_seen_at",
            "ended_at",
            "recovered_at",
            "state",
            "status",
            "severity",
            "peak_score",
            "peak_surprisal",
            "peak_z",
            "direction",
            "observed",
            "expected",
            "methods",
            "rules_fired",
            "votes",
            "note",
            "acknowledged_by",
            "resolved_by",
            "confirmed_at",
            "root_causes",
            "explains",
            "silenced_by",
        ]
        read_only_fields = fields

    def get_explains(self, anomaly: Anomaly) -> list[int]:
        return selectors.anomalies_explained_by(anomaly)

    def get_silenced_by(self, anomaly: Anomaly) -> list[int]:
        # Looked up once per response (every row shares the root's context), not per row.
        if "silences" not in self.context:
            now = timezone.now()
            self.context["silences"] = (now, selectors.silences_active(now))
        now, silences = self.context["silences"]
        return selectors.silenced_by(anomaly, silences, now)


class OperatorNoteSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class SilenceSeriesSerializer(serializers.Serializer):
    minutes = serializers.IntegerField(min_value=1, max_value=services.MAX_SILENCE_MINUTES)
    comment = serializers.CharField(max_length=2000)


class DetectQuerySerializer(serializers.Serializer):
    series = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    severity = ChoiceField(choices=Anomaly.Severity.choices, required=False)
    since = InstantField(
        required=False, help_text="ISO 8601 or epoch seconds; default: a day before until."
    )
    until = InstantField(required=False, help_text="ISO 8601 or epoch seconds; default: now.")
    limit = serializers.IntegerField(required=False, min_value=1, max_value=500, default=100)

    def validate(self, attrs):
        # The window defaults to the day before `until` (or before now).
        since, _ = resolve_window(attrs.get("since"), attrs.get("until"), names=("since", "until"))
        return {**attrs, "since": since}


class IncidentSerializer(serializers.Serializer):
    cause = serializers.IntegerField(help_text="The anomaly it began with (first by onset).")
    cause_series = serializers.CharField()
    started_at = serializers.DateTimeField()
    ongoing = serializers.BooleanField(help_text="Some of its anomalies have not ended.")
    severity = serializers.CharField(help_text="The highest of its anomalies.")
    anomalies = serializers.IntegerField()
    anomaly_ids = serializers.ListField(
        child=serializers.IntegerField(),
        help_text=f"By onset, the first {selectors.INCIDENT_MEMBERS}.",
    )


class DetectResponseSerializer(serializers.Serializer):
    since = serializers.DateTimeField()
    until = serializers.DateTimeField(allow_null=True)
    count = serializers.IntegerField(help_text="Anomalies in the window (all, not only listed).")
    by_method = serializers.DictField(
        child=serializers.IntegerField(), help_text="Over every anomaly of the window."
    )
    by_severity = serializers.DictField(
        child=serializers.IntegerField(), help_text="Over every anomaly of the window."
    )
    incident_count = serializers.IntegerField(
        help_text="Incidents in the window: anomalies joined by their likeliest causes, an "
        "anomaly nothing else is put down to counting as one."
    )
    incidents = IncidentSerializer(
        many=True, help_text="Those of two anomalies or more, newest first."
    )
    anomalies = AnomalySerializer(many=True, help_text="The newest `limit` of them.")


class AnomalyDetectView(APIView):
    """Recent anomalies found by every method, with severity and root-cause candidates."""

    serializer_class = DetectResponseSerializer

    @extend_schema(parameters=[DetectQuerySerializer], responses=DetectResponseSerializer)
    def get(self, request):
        query = DetectQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        since = params["since"]
        matching = selectors.anomalies_recent(
            series_id=params.get("series"),
            severity=params.get("severity"),
            since=since,
            until=params.get("until"),
        )
        anomalies = list(matching[: params["limit"]])
        # The summary covers the whole window, not the page listed: counted over the first
        # `limit` rows, a fleet-wide incident of 2,000 anomalies read as 100.
        summary = list(matching.values_list("severity", "methods"))
        by_method = {
            f: sum(f in methods for _, methods in summary)
            for f in (*FAMILIES, STALLED, COLLAPSE, RECURRENCE)
        }
        by_severity = {
            s: sum(severity == s for severity, _ in summary) for s in Anomaly.Severity.values
        }
        incident_count, incidents = selectors.incidents_in(matching)
        return Response(
            {
                "since": since,
                "until": params.get("until"),
                "count": len(summary),
                "by_method": by_method,
                "by_severity": by_severity,
                "incident_count": incident_count,
                "incidents": incidents,
                "anomalies": AnomalySerializer(anomalies, many=True).data,
            }
        )


class SilenceSerializer(ModelSerializer):
    active = serializers.SerializerMethodField()
    open_anomalies = serializers.SerializerMethodField(
        help_text="Open or acknowledged anomalies on series this silence matches: the "
        "check that a pattern names what its author meant."
    )

    class Meta:
        model = Silence
        fields = [
            "id",
            "series_pattern",
            "labels",
            "exact_labels",
            "starts_at",
            "ends_at",
            "comment",
            "created_by",
            "created_at",
            "active",
            "open_anomalies",
        ]
        read_only_fields = ["created_by", "created_at"]

    def get_active(self, silence: Silence) -> bool:
        return silence.is_active(timezone.now())

    def get_open_anomalies(self, silence: Silence) -> list[int]:
        # Loaded once per response (every row shares the root's context); open anomalies
        # are few, and matching them in Python keeps one matcher for the job and the API.
        if "open_anomalies" not in self.context:
            self.context["open_anomalies"] = selectors.anomalies_open()
        return selectors.anomalies_matching(
            self.context["open_anomalies"],
            silence.series_pattern,
            silence.labels,
            exact_labels=silence.exact_labels,
        )

    def validate(self, attrs):
        values = _merged(
            attrs,
            self.instance,
            {"series_pattern": "", "labels": {}, "starts_at": None, "ends_at": None, "comment": ""},
        )
        if values["starts_at"] is None:
            values["starts_at"] = timezone.now()
        errors = silence_errors(**values, now=None if self.instance else timezone.now())
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class AnomalyFilterSerializer(serializers.Serializer):
    status = ChoiceField(choices=Anomaly.Status.choices, required=False)
    state = AnomalyStateField(choices=Anomaly.State.choices, required=False)
    severity = ChoiceField(choices=Anomaly.Severity.choices, required=False)
    series = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)


class AnomalyViewSet(viewsets.ReadOnlyModelViewSet):
    """Anomalies; operators acknowledge, resolve or mark them as false positives."""

    serializer_class = AnomalySerializer
    action_roles = {
        "acknowledge": "operator",
        "resolve": "operator",
        "false_positive": "operator",
        "silence": "operator",
    }

    def get_queryset(self):
        if self.action != "list":
            return selectors.anomalies_recent()
        query = AnomalyFilterSerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        p = query.validated_data
        return selectors.anomalies_recent(
            series_id=p.get("series"),
            severity=p.get("severity"),
            status=p.get("status"),
            state=p.get("state"),
        )

    @extend_schema(parameters=[AnomalyFilterSerializer])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def _act(self, request, pk, service):
        anomaly = self.get_object()  # 404 for an unknown id
        body = OperatorNoteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            service(
                anomaly_id=anomaly.pk,
                by=request_actor(request),
                note=body.validated_data.get("note", ""),
            )
        except services.AnomalyStateError as exc:
            return Response({exc.field: [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        return Response(AnomalySerializer(selectors.anomalies_recent().get(pk=anomaly.pk)).data)

    @extend_schema(request=OperatorNoteSerializer, responses=AnomalySerializer)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        return self._act(request, pk, services.anomaly_acknowledge)

    @extend_schema(request=OperatorNoteSerializer, responses=AnomalySerializer)
    @action(detail=True, methods=["post"])
    def resolve(self, request, pk=None):
        return self._act(request, pk, services.anomaly_resolve)

    @extend_schema(request=OperatorNoteSerializer, responses=AnomalySerializer)
    @action(detail=True, methods=["post"], url_path="false-positive")
    def false_positive(self, request, pk=None):
        return self._act(request, pk, services.anomaly_mark_false_positive)

    @extend_schema(request=SilenceSeriesSerializer, responses={201: SilenceSerializer})
    @action(detail=True, methods=["post"])
    def silence(self, request, pk=None):
        """Hold back this series' responses for `minutes` (its exact name and labels)."""
        anomaly = self.get_object()
        body = SilenceSeriesSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        silence = services.silence_anomaly_series(
            anomaly_id=anomaly.pk, by=request_actor(request), **body.validated_data
        )
        return Response(SilenceSerializer(silence).data, status=status.HTTP_201_CREATED)


def _merged(attrs: dict, instance, defaults: dict) -> dict:
    """The values a create or (partial) update would leave on the row, for the checks."""
    return {k: attrs.get(k, getattr(instance, k, default)) for k, default in defaults.items()}


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
        if errors := rule_errors(**_merged(attrs, self.instance, defaults)):
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
        if errors := tuning_errors(**_merged(attrs, self.instance, {"labels": {}})):
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


@extend_schema_field({"type": "string", "enum": list(Anomaly.Severity.values)})
class MinSeverityField(ChoiceField):
    """The anomaly severity choices, inlined in the schema (one enum name per choice set)."""


class ResponsePlaybookSerializer(ModelSerializer):
    min_severity = MinSeverityField(choices=Anomaly.Severity.choices, required=False)

    class Meta:
        model = ResponsePlaybook
        fields = [
            "id",
            "name",
            "enabled",
            "series_name",
            "labels",
            "min_severity",
            "action",
            "target",
            "arguments",
            "max_attempts",
            "repeat_interval_seconds",
            "inhibit_effects",
            "update_interval_seconds",
            "effect_grace_seconds",
        ]

    def to_representation(self, instance: ResponsePlaybook) -> dict:
        # A webhook or Slack URL is a credential, and so may be what a task's arguments
        # carry (an API key, a DSN): admins only (secrets.py).
        data = super().to_representation(instance)
        if not may_see_secrets(self.context.get("request")):
            if instance.action in URL_ACTIONS:
                data["target"] = mask_url(instance.target)
            data["arguments"] = mask_value(instance.arguments)
        return data

    def validate(self, attrs):
        fields = {
            "action": None,
            "target": "",
            "labels": {},
            "arguments": {},
            "repeat_interval_seconds": None,
        }
        if errors := playbook_errors(**_merged(attrs, self.instance, fields)):
            raise serializers.ValidationError(errors)
        return attrs


class PlaybookTestResultSerializer(serializers.Serializer):
    ok = serializers.BooleanField(help_text="The receiver took it.")
    error = serializers.CharField(required=False, help_text="Why not, as a page would fail.")
    duration_ms = serializers.IntegerField()
    http_status = serializers.IntegerField(required=False)
    recipients = serializers.ListField(child=serializers.CharField(), required=False)
    task = serializers.CharField(required=False, help_text="A task playbook: not started.")


class ResponsePlaybookViewSet(viewsets.ModelViewSet):
    serializer_class = ResponsePlaybookSerializer
    queryset = ResponsePlaybook.objects.all()
    action_roles = {**ADMIN_EDITS, "test": "admin"}

    @extend_schema(request=None, responses=PlaybookTestResultSerializer)
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        """Send this playbook's receiver a test notification now (a task playbook is only
        checked, not started); 200 with `ok: false` and the reason if the receiver
        failed, as a page would have."""
        playbook = self.get_object()
        return Response(
            services.playbook_send_test(playbook_id=playbook.pk, by=request_actor(request))
        )


class InhibitionRuleSerializer(ModelSerializer):
    equal = serializers.ListField(
        child=serializers.CharField(allow_blank=True),
        required=False,
        help_text="Label names whose values must be the same on the source and the target "
        '(`["env"]`); an absent label counts as empty.',
    )

    holding_back = serializers.SerializerMethodField(
        help_text="Ongoing anomalies whose pages this rule holds back now (ids)."
    )

    class Meta:
        model = InhibitionRule
        fields = [
            "id",
            "name",
            "enabled",
            "source_series",
            "source_labels",
            "target_series",
            "target_labels",
            "equal",
            "comment",
            "created_at",
            "holding_back",
        ]
        read_only_fields = ["created_at"]

    def get_holding_back(self, rule: InhibitionRule) -> list[int]:
        # Read once per response, for every rule of a list.
        if "holds" not in self.context:
            self.context["holds"] = selectors.inhibition_rule_holds()
        return self.context["holds"].get(rule.name, [])

    def validate(self, attrs):
        fields = {
            "source_series": "",
            "source_labels": {},
            "target_series": "",
            "target_labels": {},
            "equal": [],
        }
        if errors := inhibition_rule_errors(**_merged(attrs, self.instance, fields)):
            raise serializers.ValidationError(errors)
        return attrs


class InhibitionRulePreviewSerializer(InhibitionRuleSerializer):
    """A rule's own fields and checks; the name may be an existing rule's (an edit)."""

    name = serializers.CharField(max_length=100, required=False, allow_blank=True)


class InhibitionRulePairSerializer(serializers.Serializer):
    anomaly = serializers.IntegerField(help_text="An ongoing anomaly on a target series.")
    held_back_behind = serializers.IntegerField(help_text="The ongoing source it would wait on.")


class InhibitionRulePreviewResultSerializer(serializers.Serializer):
    source_series = serializers.IntegerField(help_text="How many series the source names.")
    source_names = serializers.ListField(child=serializers.CharField())
    target_series = serializers.IntegerField(help_text="How many series the target names.")
    target_names = serializers.ListField(child=serializers.CharField())
    would_hold_back = serializers.IntegerField(
        help_text="Ongoing anomalies it would hold back now, for a playbook that paged "
        "their source."
    )
    pairs = InhibitionRulePairSerializer(
        many=True, help_text=f"The first {selectors.PREVIEW_PAIRS}."
    )


class InhibitionRuleViewSet(viewsets.ModelViewSet):
    """Declared dependencies (Alertmanager's inhibit rules): while a source series' anomaly
    goes on and was paged, a playbook with `inhibit_effects` holds back its targets'."""

    serializer_class = InhibitionRuleSerializer
    queryset = InhibitionRule.objects.all()
    # Previews read series names and open anomalies, as the silences' preview: operators.
    action_roles = {**ADMIN_EDITS, "preview": "operator"}

    @extend_schema(
        request=InhibitionRulePreviewSerializer, responses=InhibitionRulePreviewResultSerializer
    )
    @action(detail=False, methods=["post"])
    def preview(self, request):
        """What a rule with these fields would tie, without making it: the series its
        source and target name, and the ongoing anomalies it would hold back now."""
        body = InhibitionRulePreviewSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        fields = {k: v for k, v in body.validated_data.items() if k != "name"}
        return Response(selectors.inhibition_rule_preview(InhibitionRule(**fields)))


class ResponseExecutionSerializer(ModelSerializer):
    playbook_name = serializers.CharField(source="playbook.name", read_only=True)

    class Meta:
        model = ResponseExecution
        fields = [
            "id",
            "playbook",
            "playbook_name",
            "anomaly",
            "status",
            "attempts",
            "repeats",
            "duration_ms",
            "result",
            "error",
            "created_at",
            "finished_at",
            "resolved_notified_at",
            "notified_severity",
            "notified_at",
            "reminders",
            "notified_effects",
        ]
        read_only_fields = fields

    def to_representation(self, instance: ResponseExecution) -> dict:
        # Errors quote the receiver's URL (requests repeats its path): admins only.
        data = super().to_representation(instance)
        if not may_see_secrets(self.context.get("request")):
            urls = [instance.playbook.target]
            data["error"] = mask_text(data["error"], urls)
            data["result"] = mask_value(data["result"], urls)
        return data


class ExecutionFilterSerializer(serializers.Serializer):
    anomaly = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    playbook = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    status = ChoiceField(choices=ResponseExecution.Status.choices, required=False)
    since = InstantField(
        required=False, help_text="Created at or after (ISO 8601 or epoch seconds)."
    )
    until = InstantField(required=False, help_text="Created before (ISO 8601 or epoch seconds).")

    def validate(self, attrs):
        since, until = attrs.get("since"), attrs.get("until")
        if since is not None and until is not None and since >= until:
            raise serializers.ValidationError({"until": ["must be after since"]})
        return attrs


class ResponseExecutionViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """What each playbook did for each anomaly; filter by anomaly, playbook, status and
    when it was created (the on-call's "what did we send for this incident?")."""

    serializer_class = ResponseExecutionSerializer
    queryset = ResponseExecution.objects.select_related("playbook").all()

    def get_queryset(self):
        qs = super().get_queryset()
        if self.action != "list":
            return qs
        query = ExecutionFilterSerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        p = query.validated_data
        if "anomaly" in p:
            qs = qs.filter(anomaly_id=p["anomaly"])
        if "playbook" in p:
            qs = qs.filter(playbook_id=p["playbook"])
        if "status" in p:
            qs = qs.filter(status=p["status"])
        if "since" in p:
            qs = qs.filter(created_at__gte=p["since"])
        if "until" in p:
            qs = qs.filter(created_at__lt=p["until"])
        return qs

    @extend_schema(parameters=[ExecutionFilterSerializer])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)


class SilencePreviewSerializer(serializers.Serializer):
    series_pattern = serializers.CharField(max_length=600)
    labels = serializers.JSONField(required=False, default=dict)
    exact_labels = serializers.BooleanField(required=False, default=False)

    def validate(self, attrs):
        errors = silence_match_errors(
            series_pattern=attrs["series_pattern"], labels=attrs.get("labels", {})
        )
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class SilencePreviewResultSerializer(serializers.Serializer):
    series = serializers.IntegerField(help_text="How many series the silence would match.")
    series_names = serializers.ListField(child=serializers.CharField())
    open_anomalies = serializers.ListField(child=serializers.IntegerField())


class SilenceFilterSerializer(serializers.Serializer):
    active = serializers.BooleanField(required=False, allow_null=True, default=None)


class SilenceViewSet(viewsets.ModelViewSet):
    """Maintenance windows. Operators create and expire them; admins edit or delete them."""

    serializer_class = SilenceSerializer
    queryset = Silence.objects.all()
    action_roles = {"update": "admin", "partial_update": "admin", "destroy": "admin"}

    def get_queryset(self):
        qs = Silence.objects.all()
        if self.action != "list":
            return qs
        query = SilenceFilterSerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        active = query.validated_data.get("active")
        in_force = selectors.silence_in_force(timezone.now())
        if active is True:
            qs = qs.filter(in_force)
        elif active is False:
            qs = qs.exclude(in_force)
        return qs

    @extend_schema(parameters=[SilenceFilterSerializer])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def perform_create(self, serializer):
        serializer.save(created_by=request_actor(self.request))

    @extend_schema(request=SilencePreviewSerializer, responses=SilencePreviewResultSerializer)
    @action(detail=False, methods=["post"])
    def preview(self, request):
        """What a silence with this pattern and labels would cover, without making it."""
        body = SilencePreviewSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return Response(selectors.silence_preview(**body.validated_data))

    @extend_schema(request=None, responses=SilenceSerializer)
    @action(detail=True, methods=["post"])
    def expire(self, request, pk=None):
        """End the silence now: alerting resumes on the next scoring run."""
        silence = self.get_object()
        try:
            silence = services.silence_expire(silence_id=silence.pk)
        except services.SilenceStateError as exc:
            return Response({exc.field: [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        return Response(SilenceSerializer(silence).data)
