"""DRF faces of the insights system: status, insights (operators acknowledge/dismiss),
model versions (admins activate), segments, feature impact and state patterns.

Views validate input with serializers (400 names the field) and call selectors or
services; they hold no logic of their own.
"""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from telemetry.serializers import ChoiceField, ModelSerializer

from . import selectors
from .models import FeatureImpact, Insight, MLModel, Segment, SegmentSnapshot, StatePattern
from .services.insights import insight_acknowledge, insight_dismiss
from .services.registry import ArtefactPruned, mlmodel_activate


class MLModelSerializer(ModelSerializer):
    class Meta:
        model = MLModel
        fields = [
            "id",
            "name",
            "kind",
            "version",
            "trained_at",
            "training_rows",
            "holdout_rows",
            "parameters",
            "metrics",
            "primary_metric",
            "primary_score",
            "artefact_sha256",
            "artefact_size",
            "is_active",
            "activated_at",
            "activation_rule",
            "activation_reason",
            "comparison",
            "notes",
        ]
        read_only_fields = fields


class SegmentSnapshotSerializer(ModelSerializer):
    class Meta:
        model = SegmentSnapshot
        fields = ["day", "size", "share"]


class SegmentSerializer(ModelSerializer):
    model_version = serializers.IntegerField(source="model.version", read_only=True)
    model_active = serializers.BooleanField(source="model.is_active", read_only=True)
    snapshots = SegmentSnapshotSerializer(many=True, read_only=True)

    class Meta:
        model = Segment
        fields = [
            "id",
            "model",
            "model_version",
            "model_active",
            "label",
            "name",
            "size",
            "share",
            "distinguishing",
            "recommendations",
            "trend",
            "trend_slope_per_day",
            "trend_p_value",
            "previous",
            "lineage",
            "snapshots",
        ]
        read_only_fields = fields


class InsightSerializer(ModelSerializer):
    class Meta:
        model = Insight
        fields = [
            "id",
            "dedup_key",
            "category",
            "source",
            "title",
            "body",
            "evidence",
            "priority",
            "impact",
            "confidence",
            "novelty",
            "priority_explanation",
            "key_value",
            "status",
            "status_changed_at",
            "status_changed_by",
            "first_seen_at",
            "last_seen_at",
            "times_seen",
        ]
        read_only_fields = fields


class FeatureImpactSerializer(ModelSerializer):
    class Meta:
        model = FeatureImpact
        fields = [
            "id",
            "model",
            "outcome",
            "feature",
            "adoption",
            "support",
            "odds_ratio",
            "ci_low",
            "ci_high",
            "p_value",
            "q_value",
            "success_rate_used",
            "success_rate_unused",
            "importance",
            "importance_std",
            "cost",
            "suggestion",
            "reason",
        ]
        read_only_fields = fields


class StatePatternSerializer(ModelSerializer):
    class Meta:
        model = StatePattern
        fields = [
            "id",
            "model",
            "label",
            "description",
            "signature",
            "episodes",
            "episode_count",
            "first_seen",
            "last_seen",
            "weekly_hour",
        ]
        read_only_fields = fields


class StatusQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=100, default=10)


class InsightFilterSerializer(serializers.Serializer):
    status = ChoiceField(choices=Insight.Status.choices, required=False)
    category = ChoiceField(choices=Insight.Category.choices, required=False)
    source = serializers.CharField(max_length=30, required=False)


class ModelFilterSerializer(serializers.Serializer):
    kind = ChoiceField(choices=MLModel.Kind.choices, required=False)
    name = serializers.CharField(max_length=100, required=False)
    active = serializers.BooleanField(required=False, allow_null=True, default=None)


class SegmentFilterSerializer(serializers.Serializer):
    current = serializers.BooleanField(required=False, default=False)


class OutcomeFilterSerializer(serializers.Serializer):
    outcome = ChoiceField(choices=["retention", "conversion"], required=False)


def _filters(serializer_class, request) -> dict:
    s = serializer_class(data=request.query_params)
    s.is_valid(raise_exception=True)
    return s.validated_data


class StatusView(APIView):
    """Models with their held-out scores, current segments, top insights by priority."""

    @extend_schema(
        parameters=[StatusQuerySerializer],
        responses=inline_serializer(
            "InsightsStatus",
            {
                "generated_at": serializers.DateTimeField(),
                "models": serializers.ListField(child=serializers.DictField()),
                "segments": SegmentSerializer(many=True),
                "top_insights": InsightSerializer(many=True),
                "insights_by_status": serializers.DictField(),
            },
        ),
    )
    def get(self, request):
        limit = _filters(StatusQuerySerializer, request)["limit"]
        return Response(
            {
                "generated_at": timezone.now(),
                "models": selectors.models_summary(),
                "segments": SegmentSerializer(selectors.segments_current(), many=True).data,
                "top_insights": InsightSerializer(
                    selectors.insights_top(limit=limit), many=True
                ).data,
                "insights_by_status": selectors.insights_by_status(),
            }
        )


class InsightViewSet(viewsets.ReadOnlyModelViewSet):
    """Insights, highest priority first; operators acknowledge or dismiss them."""

    serializer_class = InsightSerializer
    queryset = Insight.objects.none()
    action_roles = {"acknowledge": "operator", "dismiss": "operator"}

    def get_queryset(self):
        qs = selectors.insight_queryset().order_by("-priority")
        if self.action != "list":
            return qs
        f = _filters(InsightFilterSerializer, self.request)
        return qs.filter(**{k: v for k, v in f.items() if v})

    @extend_schema(parameters=[InsightFilterSerializer])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(request=None, responses=InsightSerializer)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        insight = insight_acknowledge(insight=self.get_object(), actor=str(request.user))
        return Response(InsightSerializer(insight).data)

    @extend_schema(request=None, responses=InsightSerializer)
    @action(detail=True, methods=["post"])
    def dismiss(self, request, pk=None):
        insight = insight_dismiss(insight=self.get_object(), actor=str(request.user))
        return Response(InsightSerializer(insight).data)


class MLModelViewSet(viewsets.ReadOnlyModelViewSet):
    """Every trained version with its held-out metrics; admins activate one (rollback)."""

    serializer_class = MLModelSerializer
    queryset = MLModel.objects.none()
    action_roles = {"activate": "admin"}

    def get_queryset(self):
        qs = selectors.mlmodel_queryset()
        if self.action != "list":
            return qs
        f = _filters(ModelFilterSerializer, self.request)
        if f.get("kind"):
            qs = qs.filter(kind=f["kind"])
        if f.get("name"):
            qs = qs.filter(name=f["name"])
        if f.get("active") is not None:
            qs = qs.filter(is_active=f["active"])
        return qs

    @extend_schema(parameters=[ModelFilterSerializer])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(request=None, responses=MLModelSerializer)
    @action(detail=True, methods=["post"])
    def activate(self, request, pk=None):
        try:
            model = mlmodel_activate(model=self.get_object())
        except ArtefactPruned as exc:
            raise serializers.ValidationError({"model": [str(exc)]}) from exc
        return Response(MLModelSerializer(model).data)


class SegmentViewSet(viewsets.ReadOnlyModelViewSet):
    """Segments with their sizes over time; ``current=true`` keeps the active model's."""

    serializer_class = SegmentSerializer
    queryset = Segment.objects.none()

    def get_queryset(self):
        if self.action == "list" and _filters(SegmentFilterSerializer, self.request)["current"]:
            return selectors.segments_current()
        return selectors.segment_queryset().order_by("-model__version", "-size")

    @extend_schema(parameters=[SegmentFilterSerializer])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)


class FeatureImpactViewSet(viewsets.ReadOnlyModelViewSet):
    """Feature impact measured by the active feature-impact models."""

    serializer_class = FeatureImpactSerializer
    queryset = FeatureImpact.objects.none()

    def get_queryset(self):
        outcome = None
        if self.action == "list":
            outcome = _filters(OutcomeFilterSerializer, self.request).get("outcome")
        return selectors.feature_impact_current(outcome=outcome).order_by("outcome", "-importance")

    @extend_schema(parameters=[OutcomeFilterSerializer])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)


class StatePatternViewSet(viewsets.ReadOnlyModelViewSet):
    """Recurring unusual system states found by the active state model."""

    serializer_class = StatePatternSerializer
    queryset = StatePattern.objects.none()

    def get_queryset(self):
        return selectors.patterns_current().order_by("-episode_count")
