"""Signal layer rules (admins edit), and which layer each monitored metric has (viewers)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from telemetry.serializers import ModelSerializer

from .. import selectors
from ..models import SignalLayerRule
from ..validation import layer_rule_errors
from .edits import ADMIN_EDITS, merged_fields


class SignalLayerRuleSerializer(ModelSerializer):
    class Meta:
        model = SignalLayerRule
        fields = [
            "id",
            "name",
            "series_name",
            "labels",
            "layer",
            "comment",
            "enabled",
            "created_at",
        ]
        read_only_fields = ["created_at"]

    def validate(self, attrs):
        defaults = {"series_name": "", "labels": {}}
        if errors := layer_rule_errors(**merged_fields(attrs, self.instance, defaults)):
            raise serializers.ValidationError(errors)
        return attrs


class CoverageQuerySerializer(serializers.Serializer):
    undeclared = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Only the metrics with no layer: none by name, none declared.",
    )


class MetricLayerSerializer(serializers.Serializer):
    series_name = serializers.CharField()
    series = serializers.IntegerField(help_text="Series of this name.")
    layer_by_name = serializers.CharField(
        allow_null=True, help_text="The layer its name gives a rise; null: the name says none."
    )
    rules = serializers.DictField(
        child=serializers.IntegerField(), help_text="Series each rule applies to, by rule."
    )
    layers = serializers.DictField(
        child=serializers.IntegerField(), help_text="Series in each layer (of a rise)."
    )


class CoverageSerializer(serializers.Serializer):
    names = serializers.IntegerField(help_text="Metric names answering the query.")
    capped = serializers.BooleanField(
        help_text=f"More than {selectors.MAX_COVERAGE_NAMES} names: the first are listed."
    )
    metrics = MetricLayerSerializer(many=True, help_text="By name.")


class SignalLayerRuleViewSet(viewsets.ModelViewSet):
    """Where metrics sit in load → saturation → symptoms when their names do not say:
    root-cause ranking orders simultaneous onsets by it, from the next run on."""

    serializer_class = SignalLayerRuleSerializer
    queryset = SignalLayerRule.objects.all()
    action_roles = {**ADMIN_EDITS, "coverage": "viewer"}

    @extend_schema(parameters=[CoverageQuerySerializer], responses=CoverageSerializer)
    @action(detail=False, methods=["get"])
    def coverage(self, request):
        """Each monitored metric's layer, by name and by rule: `undeclared=true` lists the
        metrics ranking knows nothing about, the ones worth a rule."""
        query = CoverageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        answer = selectors.layer_coverage(undeclared_only=query.validated_data["undeclared"])
        return Response(CoverageSerializer(answer).data)
