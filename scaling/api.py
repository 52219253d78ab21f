"""DRF faces of the scaling system. Views validate, then call a selector or a service."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from telemetry.serializers import ChoiceField, ModelSerializer
from telemetry.validation import MAX_ID, NUL_PROBLEM, has_nul, label_problem

from . import selectors, services
from .actuators import config_problems
from .models import ScalableResource, ScalingDecision, ScalingRule, steps_problem


def _series_labels(value: Any) -> dict:
    """Labels the job finds a telemetry series by: a series' own rules (no NUL for jsonb)."""
    if (problem := label_problem(value)) is not None:
        raise serializers.ValidationError(problem)
    return value


class ScalableResourceSerializer(ModelSerializer):
    """``current_units`` is writable on create only (default: ``min_units``); afterwards the
    scaling job owns it, and new bounds that exclude it are clamped by the next evaluation.

    A PUT/PATCH would otherwise put back the size the client read before the job's last
    change; on update it is read-only (silently ignored, like ``updated_at``).
    """

    class Meta:
        model = ScalableResource
        fields = "__all__"
        read_only_fields = ["updated_at"]

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        if self.instance is not None:
            fields["current_units"].read_only = True
        return fields

    def validate_load_series_labels(self, value: Any) -> dict:
        return _series_labels(value)

    def validate_actuator_config(self, value: Any) -> Any:
        if has_nul(value):  # stored as jsonb, which holds no NUL (a 500 on PostgreSQL)
            raise serializers.ValidationError(NUL_PROBLEM)
        return value

    def validate(self, attrs):
        if self.instance is None or {"actuator", "actuator_config"} & attrs.keys():
            kind = attrs.get("actuator", getattr(self.instance, "actuator", "dry_run"))
            config = attrs.get("actuator_config", getattr(self.instance, "actuator_config", {}))
            if problems := config_problems(kind, config):
                raise serializers.ValidationError({"actuator_config": problems})
        merged = {f: getattr(self.instance, f) for f in ("min_units", "max_units", "current_units")
                  if self.instance is not None}  # fmt: skip
        merged.update(attrs)
        low, high = merged.get("min_units", 1), merged.get("max_units", 10)
        if low > high:
            raise serializers.ValidationError({"min_units": ["must not exceed max_units"]})
        if self.instance is None:
            # A new resource starts at min_units unless told otherwise (the model's default
            # of 1 lies outside [min_units, max_units] when min_units > 1).
            current = attrs.setdefault("current_units", low)
            if not low <= current <= high:
                raise serializers.ValidationError(
                    {"current_units": [f"must lie within [{low}, {high}]"]}
                )
        # On update the bounds may exclude the current size (capping a runaway resource):
        # the next evaluation clamps it into them. current_units is not the client's to write.
        return attrs


class StepSerializer(serializers.Serializer):
    lower = serializers.FloatField()
    upper = serializers.FloatField(allow_null=True, required=False, default=None)
    change = serializers.IntegerField()

    def validate(self, attrs: dict) -> dict:
        # A PATCH is partial for the rule, and DRF carries that into nested serializers
        # (required fields and defaults skipped); but `steps` replaces the whole list, so
        # each step must still be complete: a step without `lower` broke the evaluation.
        missing = [f for f in ("lower", "change") if f not in attrs]
        if missing:
            raise serializers.ValidationError({f: ["This field is required."] for f in missing})
        return {"upper": None, **attrs}


class ScalingRuleSerializer(ModelSerializer):
    steps = StepSerializer(many=True, required=False)

    class Meta:
        model = ScalingRule
        fields = "__all__"
        read_only_fields = ["updated_at"]

    def validate_metric_labels(self, value: Any) -> dict:
        return _series_labels(value)

    def validate(self, attrs):
        kind = attrs.get("kind", getattr(self.instance, "kind", None))
        steps = attrs.get("steps", getattr(self.instance, "steps", []))
        target = attrs.get("target", getattr(self.instance, "target", None))
        if kind == ScalingRule.Kind.STEP and not steps:
            raise serializers.ValidationError({"steps": ["a step rule needs at least one step"]})
        if kind != ScalingRule.Kind.STEP and (target is None or target <= 0):
            raise serializers.ValidationError({"target": ["must be > 0"]})
        for step in steps or []:
            if step.get("upper") is not None and step["upper"] <= step["lower"]:
                raise serializers.ValidationError({"steps": ["each upper must exceed its lower"]})
        if kind == ScalingRule.Kind.STEP and (problem := steps_problem(steps)):
            raise serializers.ValidationError({"steps": [problem]})
        return attrs


class ScalingDecisionSerializer(ModelSerializer):
    resource = serializers.StringRelatedField()

    class Meta:
        model = ScalingDecision
        fields = "__all__"
        read_only_fields = [f.name for f in ScalingDecision._meta.fields]


class ResourceViewSet(viewsets.ModelViewSet):
    """Scalable resources: everyone with a key reads, admins edit."""

    serializer_class = ScalableResourceSerializer
    queryset = ScalableResource.objects.all()
    action_roles = {"create": "admin", "update": "admin", "partial_update": "admin",
                    "destroy": "admin"}  # fmt: skip

    def perform_update(self, serializer: ScalableResourceSerializer) -> None:
        # Only the changed fields are written: a full save would revert the scaling job.
        try:
            serializer.instance = services.resource_update(
                resource_id=serializer.instance.pk, data=serializer.validated_data
            )
        except DjangoValidationError as exc:  # bounds crossed by a concurrent edit
            raise serializers.ValidationError(exc.message_dict) from exc


class RuleViewSet(viewsets.ModelViewSet):
    serializer_class = ScalingRuleSerializer
    action_roles = {"create": "admin", "update": "admin", "partial_update": "admin",
                    "destroy": "admin"}  # fmt: skip

    def get_queryset(self):
        return selectors.rule_queryset()


class DecisionFilterSerializer(serializers.Serializer):
    resource = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    status = ChoiceField(choices=ScalingDecision.Status.choices, required=False)
    action = ChoiceField(choices=ScalingDecision.Action.choices, required=False)
    outcome = ChoiceField(choices=ScalingDecision.Outcome.choices, required=False)


class DecisionViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = ScalingDecisionSerializer

    def get_queryset(self):
        queryset = selectors.decision_queryset()
        if self.action != "list":
            return queryset
        params = DecisionFilterSerializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        filters = dict(params.validated_data)
        if "resource" in filters:
            filters["resource_id"] = filters.pop("resource")
        return queryset.filter(**filters)

    @extend_schema(parameters=[DecisionFilterSerializer])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)


class StatusQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(required=False, min_value=1, max_value=200, default=20)


class StatusView(APIView):
    """Resources, their capacity and utilisation now, recent decisions and the success rate."""

    serializer_class = StatusQuerySerializer

    @extend_schema(parameters=[StatusQuerySerializer], responses=dict)
    def get(self, request):
        params = StatusQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        summary = selectors.status_summary(limit=params.validated_data["limit"])
        summary["recent_decisions"] = ScalingDecisionSerializer(
            summary["recent_decisions"], many=True
        ).data
        return Response(summary)


class EvaluateSerializer(serializers.Serializer):
    resource = serializers.IntegerField(required=False, min_value=1)

    def validate_resource(self, value: int) -> int:
        if not ScalableResource.objects.filter(pk=value, enabled=True).exists():
            raise serializers.ValidationError("no enabled resource with this id")
        return value


EVALUATION_RESPONSE = inline_serializer(
    name="ScalingEvaluation",
    fields={"executed": serializers.BooleanField(), "decisions": serializers.ListField()},
)


class EvaluateView(APIView):
    """GET: what the rules would decide now (dry run). POST (operator): decide and act."""

    serializer_class = EvaluateSerializer

    def _run(self, data, *, execute: bool) -> Response:
        params = EvaluateSerializer(data=data)
        params.is_valid(raise_exception=True)
        resource = params.validated_data.get("resource")
        evaluations = services.decisions_evaluate(
            resource_ids=[resource] if resource else None, execute=execute
        )
        body = {
            "executed": execute,
            "decisions": [services.evaluation_json(e) for e in evaluations],
        }
        if execute:
            for item, ev in zip(body["decisions"], evaluations, strict=True):
                item["status"] = ev.row.status if ev.row else item["status"]
                item["actuator_detail"] = ev.row.actuator_detail if ev.row else ""
        return Response(body, status=status.HTTP_201_CREATED if execute else status.HTTP_200_OK)

    @extend_schema(parameters=[EvaluateSerializer], responses=EVALUATION_RESPONSE)
    def get(self, request):
        return self._run(request.query_params, execute=False)

    @extend_schema(request=EvaluateSerializer, responses=EVALUATION_RESPONSE)
    def post(self, request):
        return self._run(request.data, execute=True)
