"""Anomaly API: the `anomaly/detect` read, and viewsets for anomalies, rules, playbooks
and executions. Views validate and call services; roles come from the project defaults."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from . import selectors, services
from .engine import FAMILIES, STALLED
from .models import Anomaly, DetectionRule, ResponseExecution, ResponsePlaybook, RootCauseCandidate

ADMIN_EDITS = {"create": "admin", "update": "admin", "partial_update": "admin", "destroy": "admin"}


class RootCauseSerializer(serializers.ModelSerializer):
    series = serializers.CharField(source="series.__str__", read_only=True)

    class Meta:
        model = RootCauseCandidate
        fields = ["rank", "series", "series_id", "score", "lead_seconds", "evidence"]


class AnomalySerializer(serializers.ModelSerializer):
    series_name = serializers.CharField(source="series.__str__", read_only=True)
    root_causes = RootCauseSerializer(source="causes", many=True, read_only=True)

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
            "status",
            "severity",
            "peak_score",
            "peak_surprisal",
            "peak_z",
            "direction",
            "observed",
            "expected",
            "methods",
            "votes",
            "note",
            "acknowledged_by",
            "root_causes",
        ]
        read_only_fields = fields


class OperatorNoteSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class DetectQuerySerializer(serializers.Serializer):
    series = serializers.IntegerField(required=False, min_value=1)
    severity = serializers.ChoiceField(choices=Anomaly.Severity.choices, required=False)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=500, default=100)

    def validate(self, attrs):
        since, until = attrs.get("since"), attrs.get("until")
        if since and until and since >= until:
            raise serializers.ValidationError({"until": ["must be after `since`"]})
        return attrs


class DetectResponseSerializer(serializers.Serializer):
    since = serializers.DateTimeField()
    until = serializers.DateTimeField(allow_null=True)
    count = serializers.IntegerField()
    by_method = serializers.DictField(child=serializers.IntegerField())
    by_severity = serializers.DictField(child=serializers.IntegerField())
    anomalies = AnomalySerializer(many=True)


class AnomalyDetectView(APIView):
    """Recent anomalies found by every method, with severity and root-cause candidates."""

    serializer_class = DetectResponseSerializer

    @extend_schema(parameters=[DetectQuerySerializer], responses=DetectResponseSerializer)
    def get(self, request):
        query = DetectQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        since = params.get("since") or timezone.now() - timedelta(days=1)
        anomalies = list(
            selectors.anomalies_recent(
                series_id=params.get("series"),
                severity=params.get("severity"),
                since=since,
                until=params.get("until"),
            )[: params["limit"]]
        )
        by_method = {f: sum(f in a.methods for a in anomalies) for f in (*FAMILIES, STALLED)}
        by_severity = {s: sum(a.severity == s for a in anomalies) for s in Anomaly.Severity.values}
        return Response(
            {
                "since": since,
                "until": params.get("until"),
                "count": len(anomalies),
                "by_method": by_method,
                "by_severity": by_severity,
                "anomalies": AnomalySerializer(anomalies, many=True).data,
            }
        )


class AnomalyFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Anomaly.Status.choices, required=False)
    severity = serializers.ChoiceField(choices=Anomaly.Severity.choices, required=False)
    series = serializers.IntegerField(required=False, min_value=1)


class AnomalyViewSet(viewsets.ReadOnlyModelViewSet):
    """Anomalies; operators acknowledge, resolve or mark them as false positives."""

    serializer_class = AnomalySerializer
    action_roles = {"acknowledge": "operator", "resolve": "operator", "false_positive": "operator"}

    def get_queryset(self):
        if self.action != "list":
            return selectors.anomalies_recent()
        query = AnomalyFilterSerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        p = query.validated_data
        return selectors.anomalies_recent(
            series_id=p.get("series"), severity=p.get("severity"), status=p.get("status")
        )

    def _operator(self) -> str:
        user = self.request.user
        return getattr(user, "username", "") or str(getattr(self.request, "auth", "") or "")

    def _act(self, request, pk, service):
        self.get_object()  # 404 for an unknown id
        body = OperatorNoteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        kwargs = {"anomaly_id": int(pk), "by": self._operator()}
        if service is not services.anomaly_acknowledge:
            kwargs["note"] = body.validated_data.get("note", "")
        service(**kwargs)
        return Response(AnomalySerializer(selectors.anomalies_recent().get(pk=pk)).data)

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


class DetectionRuleSerializer(serializers.ModelSerializer):
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
            "enabled",
        ]

    def validate_labels(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("must be an object of label -> value")
        return value

    def validate(self, attrs):
        above = attrs.get("above", getattr(self.instance, "above", None))
        below = attrs.get("below", getattr(self.instance, "below", None))
        if above is None and below is None:
            raise serializers.ValidationError({"above": ["set `above`, `below` or both"]})
        return attrs


class DetectionRuleViewSet(viewsets.ModelViewSet):
    serializer_class = DetectionRuleSerializer
    queryset = DetectionRule.objects.all()
    action_roles = ADMIN_EDITS


@extend_schema_field({"type": "string", "enum": list(Anomaly.Severity.values)})
class MinSeverityField(serializers.ChoiceField):
    """The anomaly severity choices, inlined in the schema (one enum name per choice set)."""


class ResponsePlaybookSerializer(serializers.ModelSerializer):
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
        ]

    def validate(self, attrs):
        action_ = attrs.get("action", getattr(self.instance, "action", None))
        target = attrs.get("target", getattr(self.instance, "target", ""))
        if action_ == ResponsePlaybook.Action.WEBHOOK and not target.startswith(
            ("http://", "https://")
        ):
            raise serializers.ValidationError({"target": ["a webhook needs an http(s) URL"]})
        if action_ == ResponsePlaybook.Action.EMAIL:
            for address in filter(None, (a.strip() for a in target.split(","))):
                serializers.EmailField().run_validation(address)
        for name in ("labels", "arguments"):
            if name in attrs and not isinstance(attrs[name], dict):
                raise serializers.ValidationError({name: ["must be an object"]})
        return attrs


class ResponsePlaybookViewSet(viewsets.ModelViewSet):
    serializer_class = ResponsePlaybookSerializer
    queryset = ResponsePlaybook.objects.all()
    action_roles = ADMIN_EDITS


class ResponseExecutionSerializer(serializers.ModelSerializer):
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
        ]
        read_only_fields = fields


class ResponseExecutionViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    serializer_class = ResponseExecutionSerializer
    queryset = ResponseExecution.objects.select_related("playbook").all()
