"""Silences: maintenance windows operators create and expire, with a preview of what
one would mute."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from telemetry.actors import request_actor
from telemetry.serializers import ModelSerializer

from .. import selectors, services
from ..models import (
    Silence,
)
from ..validation import (
    silence_errors,
    silence_match_errors,
)
from .edits import merged_fields


class SilenceSerializer(ModelSerializer):
    active = serializers.SerializerMethodField(
        help_text="Muting now: between its start and end, and, if it recurs, in its window."
    )
    weekdays = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text='Recurring: only on these days (["saturday", "sunday"]); empty: every day.',
    )
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
            "weekdays",
            "daily_start",
            "daily_end",
            "time_zone",
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
        values = merged_fields(
            attrs,
            self.instance,
            {
                "series_pattern": "",
                "labels": {},
                "starts_at": None,
                "ends_at": None,
                "comment": "",
                "weekdays": [],
                "daily_start": None,
                "daily_end": None,
                "time_zone": "UTC",
            },
        )
        if values["starts_at"] is None:
            values["starts_at"] = timezone.now()
        errors = silence_errors(**values, now=None if self.instance else timezone.now())
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


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
