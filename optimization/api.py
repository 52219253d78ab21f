"""DRF faces of the optimization app: the analysis, recommendations and their actions,
baselines and the health history. Views validate and call services or selectors."""

from __future__ import annotations

from dataclasses import asdict

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from telemetry.serializers import ChoiceField, ModelSerializer

from . import selectors, services
from .models import Baseline, HealthSnapshot, Recommendation
from .services.jsonable import jsonable


class RecommendationSerializer(ModelSerializer):
    metric_series = serializers.StringRelatedField()
    expected_value = serializers.FloatField(read_only=True)

    class Meta:
        model = Recommendation
        fields = [
            "id", "dedup_key", "category", "state", "title", "endpoint", "resource", "evidence",
            "confidence", "confidence_explanation", "predicted_ms_saved_per_day",
            "predicted_db_ms_saved_per_day", "calibration", "expected_value", "complexity", "risk",
            "rollback_plan", "metric_series", "first_seen_at", "last_seen_at", "times_seen",
            "state_changed_at", "claimed_by", "applied_at", "rolled_back_at", "verified_at",
            "realised_ms_saved_per_day", "realised", "note",
        ]  # fmt: skip
        read_only_fields = fields


class BaselineSerializer(ModelSerializer):
    series = serializers.StringRelatedField()

    class Meta:
        model = Baseline
        fields = "__all__"


class HealthSnapshotSerializer(ModelSerializer):
    class Meta:
        model = HealthSnapshot
        fields = ["id", "at", "score", "breakdown", "window_start", "window_end", "computed_at"]


class RecommendationFilterSerializer(serializers.Serializer):
    state = ChoiceField(choices=Recommendation.State.choices, required=False)
    category = ChoiceField(choices=Recommendation.Category.choices, required=False)


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=1000)


class AppliedSerializer(serializers.Serializer):
    applied_at = serializers.DateTimeField(
        required=False, help_text="When the change went live (default: now)."
    )


def _actor(request) -> str:
    return getattr(request.user, "username", "") or str(request.user)


def _state_error(exc: services.RecommendationStateError) -> Response:
    return Response({exc.field: [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)


class RecommendationViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Recommendations with operator actions: claim, applied, dismiss, rollback."""

    serializer_class = RecommendationSerializer
    action_roles = {"claim": "operator", "applied": "operator", "dismiss": "operator",
                    "rollback": "operator"}  # fmt: skip

    def get_queryset(self):
        queryset = selectors.recommendation_queryset()
        if self.action != "list":
            return queryset
        params = RecommendationFilterSerializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        return queryset.filter(**params.validated_data)

    @extend_schema(parameters=[RecommendationFilterSerializer])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def _act(self, fn, **kwargs) -> Response:
        try:
            rec = fn(recommendation_id=self.get_object().pk, actor=_actor(self.request), **kwargs)
        except services.RecommendationStateError as exc:
            return _state_error(exc)
        return Response(RecommendationSerializer(rec).data)

    @extend_schema(request=None, responses=RecommendationSerializer)
    @action(detail=True, methods=["post"])
    def claim(self, request, pk=None):
        return self._act(services.recommendation_claim)

    @extend_schema(request=AppliedSerializer, responses=RecommendationSerializer)
    @action(detail=True, methods=["post"])
    def applied(self, request, pk=None):
        body = AppliedSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self._act(services.recommendation_mark_applied, **body.validated_data)

    @extend_schema(request=ReasonSerializer, responses=RecommendationSerializer)
    @action(detail=True, methods=["post"])
    def dismiss(self, request, pk=None):
        body = ReasonSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self._act(services.recommendation_dismiss, **body.validated_data)

    @extend_schema(request=ReasonSerializer, responses=RecommendationSerializer)
    @action(detail=True, methods=["post"])
    def rollback(self, request, pk=None):
        body = ReasonSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self._act(services.recommendation_rollback, **body.validated_data)


class BaselineFilterSerializer(serializers.Serializer):
    metric = serializers.CharField(required=False, max_length=200)
    endpoint = serializers.CharField(required=False, max_length=300)


class BaselineViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = BaselineSerializer

    def get_queryset(self):
        queryset = selectors.baseline_queryset()
        if self.action != "list":
            return queryset
        params = BaselineFilterSerializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        return queryset.filter(**params.validated_data)

    @extend_schema(parameters=[BaselineFilterSerializer])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)


class HealthFilterSerializer(serializers.Serializer):
    days = serializers.IntegerField(required=False, min_value=1, max_value=365, default=30)


class HealthSnapshotViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = HealthSnapshotSerializer

    def get_queryset(self):
        if self.action != "list":
            return HealthSnapshot.objects.all()
        params = HealthFilterSerializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        return selectors.health_history(days=params.validated_data["days"])

    @extend_schema(parameters=[HealthFilterSerializer])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)


class AnalyzeQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(required=False, min_value=1, max_value=100, default=10)


class AnalyzeView(APIView):
    """GET: the current analysis. POST (operator): run and store the analysis now.

    GET serves the stored hourly report when it is fresh and otherwise computes one on the fly
    without storing it (a read must not write), saying which in ``source``.
    """

    serializer_class = AnalyzeQuerySerializer

    @extend_schema(parameters=[AnalyzeQuerySerializer], responses=dict)
    def get(self, request):
        params = AnalyzeQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        limit = params.validated_data["limit"]
        report = selectors.report_latest()
        if report is not None:
            return Response(self._stored(report, limit))
        result = services.analysis_compute()
        return Response(
            jsonable(
                {
                    "source": "computed",
                    "at": result.at.isoformat(),
                    "health": (
                        {"score": result.health.score, "breakdown": result.health.breakdown()}
                        if result.health
                        else None
                    ),
                    "baselines_vs_now": result.baselines_vs_now[:limit],
                    "bottlenecks": result.bottlenecks,
                    "recommendations": [asdict(d) for d in result.drafts[:limit]],
                    "calibration": result.calibration,
                }
            )
        )

    @extend_schema(request=None, responses=dict)
    def post(self, request):
        report = services.analysis_run()
        return Response(self._stored(report, 10), status=status.HTTP_201_CREATED)

    @staticmethod
    def _stored(report, limit: int) -> dict:
        return {
            "source": "stored",
            "at": report.at,
            "computed_at": report.computed_at,
            "health": (
                {"score": report.health.score, "breakdown": report.health.breakdown}
                if report.health
                else None
            ),
            "baselines_vs_now": report.baselines_vs_now[:limit],
            "bottlenecks": report.bottlenecks,
            "recommendations": RecommendationSerializer(
                selectors.recommendations_open(limit=limit), many=True
            ).data,
            "calibration": report.calibration,
        }
