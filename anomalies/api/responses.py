"""Responses: playbooks and inhibition rules (admins edit), and the executions they
recorded."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from telemetry.actors import request_actor
from telemetry.api import InstantField
from telemetry.serializers import ChoiceField, ModelSerializer
from telemetry.validation import MAX_ID

from .. import selectors, services
from ..engine.dependency_mining import MIN_INCIDENTS
from ..models import (
    Anomaly,
    InhibitionRule,
    ResponseExecution,
    ResponsePlaybook,
)
from ..secrets import mask_target, mask_text, mask_value, may_see_secrets
from ..validation import (
    inhibition_rule_errors,
    playbook_errors,
)
from .edits import ADMIN_EDITS, merged_fields


@extend_schema_field({"type": "string", "enum": list(Anomaly.Severity.values)})
class MinSeverityField(ChoiceField):
    """The anomaly severity choices, inlined in the schema (one enum name per choice set)."""


class ResponsePlaybookSerializer(ModelSerializer):
    min_severity = MinSeverityField(choices=Anomaly.Severity.choices, required=False)
    group_by = serializers.ListField(
        child=serializers.CharField(allow_blank=True),
        required=False,
        help_text='Label names (`["service"]`): anomalies whose series share their values '
        "are one notification group, as Alertmanager's `group_by`. Its first anomaly is "
        "paged, the others join its notifications, and the group outlives its first anomaly "
        "under one group key. Notifications only (webhook, Slack, Teams, PagerDuty, e-mail); empty: no grouping by labels.",
    )

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
            "group_by",
            "group_wait_seconds",
            "active_weekdays",
            "active_start",
            "active_end",
            "active_time_zone",
        ]

    def to_representation(self, instance: ResponsePlaybook) -> dict:
        # A webhook or Slack URL and a PagerDuty routing key are credentials, and so may be
        # what a task's arguments carry (an API key, a DSN): admins only (secrets.py).
        data = super().to_representation(instance)
        if not may_see_secrets(self.context.get("request")):
            data["target"] = mask_target(instance.action, instance.target)
            data["arguments"] = mask_value(instance.arguments)
        return data

    def validate(self, attrs):
        fields = {
            "action": None,
            "target": "",
            "labels": {},
            "arguments": {},
            "repeat_interval_seconds": None,
            "group_by": [],
            "group_wait_seconds": 0,
            "active_weekdays": [],
            "active_start": None,
            "active_end": None,
            "active_time_zone": "UTC",
        }
        if errors := playbook_errors(**merged_fields(attrs, self.instance, fields)):
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
        if errors := inhibition_rule_errors(**merged_fields(attrs, self.instance, fields)):
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


class SuggestionQuerySerializer(serializers.Serializer):
    days = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=selectors.MAX_SUGGESTION_DAYS,
        default=selectors.SUGGESTION_DAYS,
        help_text="How many days of incidents to read.",
    )
    min_incidents = serializers.IntegerField(
        required=False,
        min_value=2,
        max_value=1000,
        default=MIN_INCIDENTS,
        help_text="Distinct incidents a pair needs (two can be one bad day's coincidence).",
    )


class SuggestionSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="A name for the rule.")
    source_series = serializers.CharField(help_text="The cause's metric, a rule's source.")
    target_series = serializers.CharField(help_text="The effect's metric, a rule's target.")
    equal = serializers.ListField(
        child=serializers.CharField(),
        help_text="Labels both sides shared in every incident (`env`, `region`).",
    )
    incidents = serializers.IntegerField(
        help_text="Distinct incidents in which the source's anomaly was the likeliest root "
        "cause of the target's."
    )
    reverse = serializers.IntegerField(help_text="Incidents the other way round.")
    confidence = serializers.FloatField(help_text="incidents / (incidents + reverse).")
    effects = serializers.IntegerField(help_text="The target's anomalies it explained.")
    coverage = serializers.FloatField(
        help_text="Their share of the target's anomalies in the period."
    )
    median_lead_seconds = serializers.FloatField(help_text="How long before them it moved.")
    examples = serializers.ListField(
        child=serializers.IntegerField(), help_text="The latest incidents' cause anomalies (ids)."
    )


class SuggestionsSerializer(serializers.Serializer):
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    links_read = serializers.IntegerField(
        help_text="Anomalies read whose likeliest cause was another series' anomaly."
    )
    suggestions = SuggestionSerializer(many=True, help_text="Most incidents first.")


class InhibitionRuleViewSet(viewsets.ModelViewSet):
    """Declared dependencies (Alertmanager's inhibit rules): while a source series' anomaly
    goes on and was paged, a playbook with `inhibit_effects` holds back its targets'."""

    serializer_class = InhibitionRuleSerializer
    queryset = InhibitionRule.objects.all()
    # Previews read series names and open anomalies, as the silences' preview: operators.
    action_roles = {**ADMIN_EDITS, "preview": "operator", "suggestions": "viewer"}

    @extend_schema(parameters=[SuggestionQuerySerializer], responses=SuggestionsSerializer)
    @action(detail=False, methods=["get"])
    def suggestions(self, request):
        """Rules the incident history supports and no enabled rule declares yet: metric
        pairs whose anomalies were the likeliest root cause of the other's in incident
        after incident, one way. Each is a rule's fields, ready to POST here."""
        query = SuggestionQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(
            SuggestionsSerializer(
                selectors.inhibition_rule_suggestions(**query.validated_data)
            ).data
        )

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
