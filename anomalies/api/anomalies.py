"""`anomaly/detect` and the anomalies: the read, and the operators' acknowledge,
resolve, false-positive and silence actions."""

from __future__ import annotations

from django.http import QueryDict
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from telemetry.actors import request_actor
from telemetry.api import InstantField, resolve_window
from telemetry.serializers import ChoiceField, ModelSerializer
from telemetry.validation import MAX_ID, label_problem

from .. import selectors, services
from ..engine import COLLAPSE, FAMILIES, RECURRENCE, STALLED
from ..models import (
    Anomaly,
    RootCauseCandidate,
)
from .silences import SilenceSerializer


class RootCauseSerializer(ModelSerializer):
    series = serializers.CharField(source="series_label", read_only=True)

    class Meta:
        model = RootCauseCandidate
        fields = ["rank", "series", "series_id", "score", "lead_seconds", "evidence"]


def _change_near(change, onset) -> dict:
    return {
        "id": change.pk,
        "at": change.at,
        "kind": change.kind,
        "title": change.title,
        "url": change.url,
        "seconds_before_onset": (onset - change.at).total_seconds(),
    }


class AnomalyListSerializer(serializers.ListSerializer):
    """A list of anomalies (a page, `detect`'s, a bulk action's answer) that reads the
    changes near all of them in one query instead of one per row."""

    def to_representation(self, data):
        rows = list(data.all() if hasattr(data, "all") else data)
        self.context.setdefault("changes", {}).update(selectors.changes_before(rows))
        return super().to_representation(rows)


class ChangeNearSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    at = serializers.DateTimeField()
    kind = serializers.CharField()
    title = serializers.CharField()
    url = serializers.CharField()
    seconds_before_onset = serializers.FloatField(help_text="Negative: after the onset.")


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
    changes = serializers.SerializerMethodField(
        help_text="Changes (deploys, config, flags, scaling; `telemetry/changes`) concerning "
        "its series from 30 minutes before its onset to 2 minutes after, the closest first."
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
            "changes",
        ]
        read_only_fields = fields
        list_serializer_class = AnomalyListSerializer

    def get_explains(self, anomaly: Anomaly) -> list[int]:
        return selectors.anomalies_explained_by(anomaly)

    @extend_schema_field(ChangeNearSerializer(many=True))
    def get_changes(self, anomaly: Anomaly) -> list[dict]:
        # A list looks them up once for all its rows (`AnomalyListSerializer`).
        found = self.context.setdefault("changes", {})
        if anomaly.pk not in found:
            found.update(selectors.changes_before([anomaly]))
        return [_change_near(c, anomaly.started_at) for c in found[anomaly.pk]]

    def get_silenced_by(self, anomaly: Anomaly) -> list[int]:
        # Looked up once per response (every row shares the root's context), not per row.
        if "silences" not in self.context:
            now = timezone.now()
            self.context["silences"] = (now, selectors.silences_active(now))
        now, silences = self.context["silences"]
        return selectors.silenced_by(anomaly, silences, now)


class OperatorNoteSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class BulkActionSerializer(OperatorNoteSerializer):
    action = ChoiceField(
        choices=sorted(services.BULK_ACTIONS),
        help_text="`acknowledge`, `resolve` or `false_positive`, as the single actions.",
    )
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID),
        min_length=1,
        max_length=services.MAX_BULK,
        help_text="The anomalies (an incident's `anomaly_ids` from `anomaly/detect`).",
    )


class BulkResultSerializer(serializers.Serializer):
    action = serializers.CharField()
    anomalies = AnomalySerializer(many=True, help_text="Each as it is now, in the order given.")


class RoutingExecutionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    attempts = serializers.IntegerField()
    repeats = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    error = serializers.CharField(help_text="Why it failed, or why it was held back.")


class RoutingSerializer(serializers.Serializer):
    playbook = serializers.IntegerField()
    name = serializers.CharField()
    action = serializers.CharField()
    matches = serializers.BooleanField(help_text="Its series, labels and severity match.")
    not_matched = serializers.ListField(
        child=serializers.CharField(), help_text="Every reason it does not match."
    )
    execution = RoutingExecutionSerializer(
        allow_null=True, help_text="What it did for this anomaly: sent, held back, failed."
    )
    held_now = serializers.ListField(
        child=serializers.CharField(),
        help_text="For a match without an execution: what stops one at the next run "
        "(empty: the next run responds).",
    )


class SilenceSeriesSerializer(serializers.Serializer):
    minutes = serializers.IntegerField(min_value=1, max_value=services.MAX_SILENCE_MINUTES)
    comment = serializers.CharField(max_length=2000)


LABELS_PREFIX = "labels."
# Label filters one request may give: a series rarely has more labels than this.
MAX_LABEL_FILTERS = 10
LABELS_PARAMETER = OpenApiParameter(
    "labels.<key>",
    OpenApiTypes.STR,
    description="Only series carrying this label with this value, e.g. labels.service=checkout "
    f"(an empty value: without the label); up to {MAX_LABEL_FILTERS}, all must match.",
)


def series_name_field() -> serializers.CharField:
    return serializers.CharField(
        required=False,
        max_length=600,
        help_text="Only series this name or shell-style pattern names (`http.*`), as "
        "playbooks and silences name them.",
    )


def labels_query(query: QueryDict) -> dict[str, str]:
    """The `labels.<key>=<value>` filters of a request; 400 naming the parameter."""
    labels: dict[str, str] = {}
    for name, values in query.lists():
        if not name.startswith(LABELS_PREFIX):
            continue
        key = name.removeprefix(LABELS_PREFIX)
        if len(values) > 1:
            raise serializers.ValidationError({name: ["given more than once"]})
        if (problem := label_problem({key: values[0]})) is not None:
            raise serializers.ValidationError({name: [problem]})
        labels[key] = values[0]
    if len(labels) > MAX_LABEL_FILTERS:
        raise serializers.ValidationError(
            {LABELS_PREFIX + "<key>": [f"at most {MAX_LABEL_FILTERS} label filters"]}
        )
    return labels


class DetectQuerySerializer(serializers.Serializer):
    series = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    series_name = series_name_field()
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
    changes = ChangeNearSerializer(
        many=True,
        help_text="Changes just before any of its listed members, the closest to its start "
        "first; `seconds_before_onset` counts from the incident's start.",
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

    @extend_schema(
        parameters=[DetectQuerySerializer, LABELS_PARAMETER], responses=DetectResponseSerializer
    )
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
            series_pattern=params.get("series_name"),
            labels=labels_query(request.query_params),
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
        suspects = selectors.incident_changes(incidents)
        for incident in incidents:
            incident["changes"] = [
                _change_near(c, incident["started_at"]) for c in suspects[incident["cause"]]
            ]
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


class AnomalyFilterSerializer(serializers.Serializer):
    status = ChoiceField(choices=Anomaly.Status.choices, required=False)
    state = AnomalyStateField(choices=Anomaly.State.choices, required=False)
    severity = ChoiceField(choices=Anomaly.Severity.choices, required=False)
    series = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    series_name = series_name_field()


class AnomalyViewSet(viewsets.ReadOnlyModelViewSet):
    """Anomalies; operators acknowledge, resolve or mark them as false positives."""

    serializer_class = AnomalySerializer
    action_roles = {
        "acknowledge": "operator",
        "resolve": "operator",
        "false_positive": "operator",
        "silence": "operator",
        "bulk": "operator",
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
            series_pattern=p.get("series_name"),
            labels=labels_query(self.request.query_params),
        )

    @extend_schema(parameters=[AnomalyFilterSerializer, LABELS_PARAMETER])
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

    @extend_schema(responses=RoutingSerializer(many=True))
    @action(detail=True, methods=["get"])
    def routing(self, request, pk=None):
        """Why each playbook did or did not respond to this anomaly: "why was I not
        paged?" answered with the scoring job's own checks."""
        anomaly = self.get_object()
        return Response(RoutingSerializer(selectors.anomaly_routing(anomaly), many=True).data)

    @extend_schema(request=BulkActionSerializer, responses=BulkResultSerializer)
    @action(detail=False, methods=["post"])
    def bulk(self, request):
        """One action on many anomalies, all or none: an incident acknowledged in one call
        (PagerDuty's and Sentry's bulk updates). An unknown id, or an anomaly the action
        does not allow, is a 400 naming them, and nothing is changed."""
        body = BulkActionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            ids = services.anomalies_act(
                action=data["action"],
                ids=data["ids"],
                by=request_actor(request),
                note=data.get("note", ""),
            )
        except services.AnomalyStateError as exc:
            return Response({exc.field: [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        rows = selectors.anomalies_recent().in_bulk(ids)
        answer = {"action": data["action"], "anomalies": [rows[pk] for pk in ids]}
        return Response(BulkResultSerializer(answer).data)

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
