"""DRF faces of the forecasting system. Views validate, then call selectors or tasks.

Query parameters go through serializers too, so ``?horizon=8`` is a 400
naming ``horizon``, never a 500 or an empty answer that looks like "no data".
"""

from __future__ import annotations

from django.db import transaction
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from forecasting import selectors, services, tasks
from forecasting.engine.activity import METRICS as ACTIVITY_METRICS
from forecasting.models import (
    HORIZONS,
    BacktestResult,
    BusinessInsight,
    Forecast,
    ForecastPoint,
    ForecastTarget,
    PredictionType,
)
from telemetry.serializers import ChoiceField, ModelSerializer
from telemetry.validation import MAX_ID

HORIZON_CHOICES = sorted(HORIZONS)


@extend_schema_field({"type": "string", "enum": list(PredictionType.values)})
class PredictionTypeField(ChoiceField):
    """The ``type`` filter: the same choices as ``prediction_type``, documented inline so the
    schema does not carry one enum under two names."""

    def __init__(self, **kwargs) -> None:
        super().__init__(choices=PredictionType.choices, **kwargs)


class ForecastPointSerializer(ModelSerializer):
    class Meta:
        model = ForecastPoint
        fields = ["ts", "yhat", "lower80", "upper80", "lower95", "upper95"]


class BacktestResultSerializer(ModelSerializer):
    class Meta:
        model = BacktestResult
        fields = ["id", "forecast", "model_name", "mase", "smape", "rank", "is_chosen",
                  "is_baseline"]  # fmt: skip


class ForecastSerializer(ModelSerializer):
    target = serializers.StringRelatedField()
    beats_baseline = serializers.BooleanField(read_only=True, allow_null=True)

    class Meta:
        model = Forecast
        fields = [
            "id", "target", "target_id", "prediction_type", "horizon_days", "horizon_group",
            "created_at", "is_current", "model_name", "step_seconds", "seasonal_periods",
            "history_start", "history_end", "history_points", "backtest_mase", "backtest_smape",
            "backtest_coverage80", "backtest_coverage95", "baseline_model", "baseline_mase",
            "beats_baseline", "backtest_horizon_steps", "backtest_origins",
        ]  # fmt: skip
        read_only_fields = fields


class ForecastDetailSerializer(ForecastSerializer):
    points = ForecastPointSerializer(many=True, read_only=True)
    backtests = BacktestResultSerializer(many=True, read_only=True)

    class Meta(ForecastSerializer.Meta):
        fields = [*ForecastSerializer.Meta.fields, "points", "backtests"]
        read_only_fields = fields


class PredictionSerializer(ForecastSerializer):
    # optional in the schema: ``?points=false`` leaves them out
    points = ForecastPointSerializer(many=True, required=False)

    class Meta(ForecastSerializer.Meta):
        fields = [*ForecastSerializer.Meta.fields, "points"]
        read_only_fields = fields


class BusinessInsightSerializer(ModelSerializer):
    target = serializers.StringRelatedField()

    class Meta:
        model = BusinessInsight
        fields = [
            "id", "target", "target_id", "forecast", "prediction_type", "kind", "horizon_days",
            "created_at", "is_current", "summary", "value", "lower", "upper", "confidence",
            "expected_at", "earliest_at", "latest_at", "threshold", "details",
        ]  # fmt: skip
        read_only_fields = fields


class ForecastTargetSerializer(ModelSerializer):
    class Meta:
        model = ForecastTarget
        fields = ["id", "name", "prediction_type", "source", "series", "event_metric",
                  "threshold", "threshold_direction", "enabled", "created_at"]  # fmt: skip
        read_only_fields = ["id", "created_at"]

    def validate(self, attrs):
        def value(name):
            return attrs[name] if name in attrs else getattr(self.instance, name, None)

        source, series, metric = value("source"), value("series"), value("event_metric")
        if source == ForecastTarget.Source.SERIES and series is None:
            raise serializers.ValidationError({"series": ["a series target needs a series"]})
        if source == ForecastTarget.Source.EVENTS:
            if series is not None:
                raise serializers.ValidationError({"series": ["an events target has no series"]})
            if metric not in ACTIVITY_METRICS:
                raise serializers.ValidationError(
                    {"event_metric": [f"must be one of {', '.join(ACTIVITY_METRICS)}"]}
                )
        return attrs


class PredictionQuerySerializer(serializers.Serializer):
    type = PredictionTypeField(required=False)
    horizon = ChoiceField(choices=HORIZON_CHOICES, required=False)
    points = serializers.BooleanField(default=True, help_text="Include the forecast points.")


class ForecastFilterSerializer(serializers.Serializer):
    type = PredictionTypeField(required=False)
    horizon = ChoiceField(choices=HORIZON_CHOICES, required=False)
    target = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    current = serializers.BooleanField(required=False, allow_null=True, default=None)


class BacktestFilterSerializer(serializers.Serializer):
    forecast = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    chosen = serializers.BooleanField(required=False, allow_null=True, default=None)


class InsightFilterSerializer(serializers.Serializer):
    kind = ChoiceField(choices=BusinessInsight.Kind.choices, required=False)
    type = PredictionTypeField(required=False)
    current = serializers.BooleanField(required=False, allow_null=True, default=None)


class ForecastRecomputeSerializer(serializers.Serializer):
    type = PredictionTypeField()
    horizons = serializers.ListField(
        child=ChoiceField(choices=HORIZON_CHOICES),
        required=False,
        allow_empty=False,
        help_text="Default: every horizon.",
    )


class PredictionListSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    results = PredictionSerializer(many=True)


class ForecastRecomputeResultSerializer(serializers.Serializer):
    type = serializers.CharField()
    horizons = serializers.ListField(child=serializers.IntegerField())
    queued = serializers.IntegerField()


def _query(serializer_cls, request) -> dict:
    query = serializer_cls(data=request.query_params)
    query.is_valid(raise_exception=True)
    return query.validated_data


class PredictionsView(APIView):
    """Current forecasts with their points, intervals, model and backtest accuracy."""

    @extend_schema(parameters=[PredictionQuerySerializer], responses=PredictionListSerializer)
    def get(self, request):
        query = _query(PredictionQuerySerializer, request)
        forecasts = selectors.forecasts_current(
            prediction_type=query.get("type"),
            horizon_days=query.get("horizon"),
            with_points=query["points"],
        )
        serializer_cls = PredictionSerializer if query["points"] else ForecastSerializer
        rows = serializer_cls(forecasts, many=True).data
        return Response({"count": len(rows), "results": rows})


class RecomputeView(APIView):
    """Recompute the forecasts of one prediction type now, fanned out over the workers."""

    @extend_schema(
        request=ForecastRecomputeSerializer, responses={202: ForecastRecomputeResultSerializer}
    )
    def post(self, request):
        body = ForecastRecomputeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        kind = body.validated_data["type"]
        horizons = sorted(set(body.validated_data.get("horizons") or HORIZON_CHOICES))
        queued = len(services.forecasts_plan(prediction_type=kind, horizons=horizons))
        if queued:
            transaction.on_commit(
                lambda: tasks.plan_forecasts.delay(prediction_type=kind, horizons=horizons)
            )
        return Response(
            {"type": kind, "horizons": horizons, "queued": queued}, status=status.HTTP_202_ACCEPTED
        )


class ForecastViewSet(viewsets.ReadOnlyModelViewSet):
    """Forecasts (list: summaries; detail: with points and the backtest of every model)."""

    serializer_class = ForecastSerializer

    def get_serializer_class(self):
        return ForecastDetailSerializer if self.action == "retrieve" else ForecastSerializer

    @extend_schema(parameters=[ForecastFilterSerializer])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def get_queryset(self):
        qs = selectors.forecast_queryset()
        if self.action == "retrieve":
            return qs.prefetch_related("points", "backtests")
        query = _query(ForecastFilterSerializer, self.request)
        if "type" in query:
            qs = qs.filter(prediction_type=query["type"])
        if "horizon" in query:
            qs = qs.filter(horizon_days=query["horizon"])
        if "target" in query:
            qs = qs.filter(target_id=query["target"])
        if query.get("current") is not None:
            qs = qs.filter(is_current=query["current"])
        return qs.order_by("-created_at", "id")


class BacktestResultViewSet(viewsets.ReadOnlyModelViewSet):
    """The backtest score of every candidate model behind each forecast."""

    serializer_class = BacktestResultSerializer

    @extend_schema(parameters=[BacktestFilterSerializer])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def get_queryset(self):
        qs = selectors.backtest_queryset()
        if self.action == "list":
            query = _query(BacktestFilterSerializer, self.request)
            if "forecast" in query:
                qs = qs.filter(forecast_id=query["forecast"])
            if query.get("chosen") is not None:
                qs = qs.filter(is_chosen=query["chosen"])
        return qs.order_by("-forecast_id", "rank")


class BusinessInsightViewSet(viewsets.ReadOnlyModelViewSet):
    """Growth rates, threshold crossings and trend changes."""

    serializer_class = BusinessInsightSerializer

    @extend_schema(parameters=[InsightFilterSerializer])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def get_queryset(self):
        qs = selectors.insight_queryset()
        if self.action == "list":
            query = _query(InsightFilterSerializer, self.request)
            if "kind" in query:
                qs = qs.filter(kind=query["kind"])
            if "type" in query:
                qs = qs.filter(prediction_type=query["type"])
            if query.get("current") is not None:
                qs = qs.filter(is_current=query["current"])
        return qs.order_by("-created_at", "id")


class ForecastTargetViewSet(viewsets.ModelViewSet):
    """What is forecast; editing thresholds or adding targets is an admin's job."""

    serializer_class = ForecastTargetSerializer
    queryset = ForecastTarget.objects.select_related("series").order_by("id")
    action_roles = {"create": "admin", "update": "admin", "partial_update": "admin",
                    "destroy": "admin"}  # fmt: skip

    def perform_update(self, serializer) -> None:
        fields = services.CROSSING_INPUTS | services.SOURCE_INPUTS
        before = {f: getattr(serializer.instance, f) for f in fields}
        with transaction.atomic():
            target = serializer.save()
            changed = {f for f, value in before.items() if getattr(target, f) != value}
            services.target_edited(target_id=target.pk, changed=changed)
