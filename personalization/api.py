"""DRF faces of the personalization app. Views validate and call services or selectors.

Roles: reads need ``viewer``; editing rules and experiments, and shipping or un-shipping
an experiment's variant, needs ``admin``; starting, stopping and recomputing needs
``operator``.
"""

from __future__ import annotations

import json
from typing import Any

from django.db import transaction
from django.http import Http404, QueryDict
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from telemetry.actors import request_actor
from telemetry.serializers import ChoiceField, ModelSerializer, valid_choices_text
from telemetry.validation import NUL

from . import selectors, services, validation
from .engine.attributes import MAX_ATTRIBUTES, MAX_KEY_LENGTH, MAX_VALUE_LENGTH, attributes_errors
from .engine.rollout import MAX_RAMP_HOURS, MIN_RAMP_HOURS, ramp_errors
from .models import (
    Experiment,
    ExperimentResult,
    ExperimentShipment,
    PersonaChange,
    PersonalizationRule,
    UserProfile,
)

ADMIN_EDITS = {"create": "admin", "update": "admin", "partial_update": "admin",
               "destroy": "admin"}  # fmt: skip


def _check(errors: list[str]) -> None:
    if errors:
        raise serializers.ValidationError(errors)


def _check_window(attrs: dict, instance) -> None:
    starts = attrs.get("starts_at", getattr(instance, "starts_at", None))
    ends = attrs.get("ends_at", getattr(instance, "ends_at", None))
    if starts and ends and ends <= starts:
        raise serializers.ValidationError({"ends_at": ["must be after starts_at"]})


class UserProfileSerializer(ModelSerializer):
    class Meta:
        model = UserProfile
        fields = [
            "id", "user_id", "persona", "persona_confidence", "persona_probabilities",
            "segments", "attributes", "sessions", "event_count", "last_seen_at", "features",
            "computed_at",
        ]  # fmt: skip
        read_only_fields = fields


class PersonaChangeSerializer(ModelSerializer):
    class Meta:
        model = PersonaChange
        fields = ["previous_persona", "persona", "confidence", "changed_at"]


class RuleSerializer(ModelSerializer):
    class Meta:
        model = PersonalizationRule
        fields = [
            "id", "key", "name", "description", "conditions", "action", "priority", "enabled",
            "starts_at", "ends_at", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = ["created_at", "updated_at"]

    def validate_conditions(self, value):
        _check(validation.conditions_errors(value))
        return value

    def validate_action(self, value):
        _check(validation.action_errors(value))
        return value

    def validate(self, attrs):
        _check_window(attrs, self.instance)
        return attrs


class ShipmentSerializer(ModelSerializer):
    class Meta:
        model = ExperimentShipment
        fields = ["variant", "rollout_percent", "shipped_at", "shipped_by", "unshipped_at",
                  "unshipped_by"]  # fmt: skip
        read_only_fields = fields


class ExperimentSerializer(ModelSerializer):
    shipments = ShipmentSerializer(
        many=True, read_only=True, help_text="Ships, rollout changes and rollbacks, newest first."
    )

    class Meta:
        model = Experiment
        fields = [
            "id", "key", "name", "description", "variants", "coverage", "targeting",
            "primary_metric", "guardrail_metrics", "alpha", "planned_users", "minimum_effect",
            "status",
            "starts_at", "ends_at", "shipped_variant", "shipped_at", "shipped_by",
            "rollout_percent", "rollout_step_percent", "rollout_step_hours",
            "rollout_next_step_at", "shipments",
            "created_at", "updated_at",
        ]  # fmt: skip
        # Ship fields belong to the ship / unship actions, like status to start / stop.
        read_only_fields = ["status", *services.SHIP_FIELDS, "created_at", "updated_at"]

    def validate_variants(self, value):
        _check(validation.variants_errors(value))
        return value

    def validate_targeting(self, value):
        _check(validation.conditions_errors(value))
        return value

    def validate_primary_metric(self, value):
        _check(validation.metric_errors(value))
        return value

    def validate_guardrail_metrics(self, value):
        _check(validation.guardrails_errors(value))
        return value

    def validate(self, attrs):
        _check_window(attrs, self.instance)
        if self.instance is not None and self.instance.status != Experiment.Status.DRAFT:
            frozen = set(services.FROZEN_ONCE_STARTED) & set(attrs)
            changed = [f for f in sorted(frozen) if attrs[f] != getattr(self.instance, f)]
            if changed:
                raise serializers.ValidationError(
                    {changed[0]: ["cannot change once the experiment has started"]}
                )
        if (
            self.instance is not None
            and self.instance.status == Experiment.Status.STOPPED
            and "ends_at" in attrs
            and attrs["ends_at"] != self.instance.ends_at
        ):
            raise serializers.ValidationError({"ends_at": ["set by stop; cannot change"]})
        return attrs


class IntervalSerializer(serializers.Serializer):
    lower = serializers.FloatField(allow_null=True)
    upper = serializers.FloatField(allow_null=True)


class ArmEstimateSerializer(serializers.Serializer):
    """One arm's own rate or mean; declared so the schema tells clients its shape."""

    variant = serializers.CharField()
    users = serializers.IntegerField()
    value = serializers.FloatField(allow_null=True, help_text="Rate or mean per user.")
    ci = IntervalSerializer(
        allow_null=True, help_text="At the experiment's confidence level (1 - alpha)."
    )
    method = serializers.CharField(help_text='"wilson" (score interval) or "t" (Student).')


class PowerEstimateSerializer(serializers.Serializer):
    """One treatment's power figures (``engine.power.PowerEstimate``); null where undefined."""

    variant = serializers.CharField()
    method = serializers.CharField(help_text='"two-proportion" (rates) or "welch" (means).')
    power = serializers.FloatField(help_text="The power the figures are for (0.8).")
    baseline = serializers.FloatField(help_text="The control's rate or mean now.")
    mde_absolute = serializers.FloatField(
        allow_null=True,
        help_text="Smallest rise over the control found with this power at the current sizes.",
    )
    mde_relative = serializers.FloatField(allow_null=True, help_text="mde_absolute / baseline.")
    target_relative = serializers.FloatField(help_text="The experiment's minimum_effect.")
    target_absolute = serializers.FloatField(allow_null=True)
    power_at_target = serializers.FloatField(
        allow_null=True, help_text="Chance to find the minimum effect at the current sizes."
    )
    users_needed_control = serializers.IntegerField(allow_null=True)
    users_needed_treatment = serializers.IntegerField(allow_null=True)
    users_needed_total = serializers.IntegerField(
        allow_null=True, help_text="Exposures over all arms (at their weights) the plan needs."
    )
    users_total = serializers.IntegerField(help_text="Exposures so far.")
    exposures_per_day = serializers.FloatField(
        allow_null=True,
        help_text="Observed since the start (null once stopped, or in the first hour).",
    )
    days_remaining = serializers.FloatField(
        allow_null=True,
        help_text="Days until users_needed_total at exposures_per_day; 0 once reached.",
    )
    note = serializers.CharField(allow_blank=True, help_text="Why a figure is null.")


class CupedComparisonSerializer(serializers.Serializer):
    """One treatment, adjusted with the pre-exposure covariate (``engine.cuped``)."""

    variant = serializers.CharField()
    control_value = serializers.FloatField(help_text="The control's adjusted mean.")
    treatment_value = serializers.FloatField(help_text="The treatment's adjusted mean.")
    difference = serializers.FloatField(help_text="Adjusted effect (treatment - control).")
    difference_ci = IntervalSerializer(help_text="Welch interval of the adjusted effect.")
    relative_lift = serializers.FloatField(allow_null=True)
    relative_lift_ci = IntervalSerializer()
    p_value = serializers.FloatField()
    p_value_holm = serializers.FloatField(help_text="Holm-adjusted across treatments.")
    unadjusted_difference = serializers.FloatField()
    unadjusted_ci = IntervalSerializer(help_text="Welch interval without the adjustment.")
    variance_reduction = serializers.FloatField(
        help_text="1 - variance of the adjusted effect / variance of the unadjusted one."
    )


class CupedSerializer(serializers.Serializer):
    """Empty (no key) while a result waits for two users per arm, and on results computed
    before CUPED existed."""

    applied = serializers.BooleanField(
        required=False, help_text="False when there were no pre-exposure data."
    )
    window_days = serializers.IntegerField(
        required=False, help_text="Pre-exposure window of the covariate."
    )
    note = serializers.CharField(required=False, help_text="Why CUPED was not applied.")
    theta = serializers.FloatField(required=False)
    covariate_mean = serializers.FloatField(required=False)
    correlation = serializers.FloatField(
        required=False, help_text="Within-arm correlation of metric and covariate."
    )
    users_with_covariate = serializers.IntegerField(
        required=False, help_text="Users with a non-zero pre-exposure value."
    )
    comparisons = CupedComparisonSerializer(many=True, required=False)


class ExperimentResultSerializer(ModelSerializer):
    arms = ArmEstimateSerializer(many=True, read_only=True)
    power = PowerEstimateSerializer(many=True, read_only=True)
    cuped = CupedSerializer(read_only=True)

    class Meta:
        model = ExperimentResult
        fields = [
            "metric", "is_primary", "metric_kind", "computed_at", "users", "srm_p_value",
            "srm_mismatch", "arms", "comparisons", "power", "cuped", "note",
        ]  # fmt: skip


class StrictFloatField(serializers.FloatField):
    """A number (a percentage, hours); ``true`` is refused rather than read as 1."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class ShipSerializer(serializers.Serializer):
    """Body of ``ship``: the variant to serve, one of the experiment's (in ``context``),
    and the share of the targeted users to serve it to."""

    variant = serializers.CharField(
        max_length=100, trim_whitespace=False, help_text="Name of one of the experiment's variants."
    )
    rollout_percent = StrictFloatField(
        required=False,
        min_value=0.0,
        max_value=100.0,
        help_text="Percentage of the targeted users served the variant (0-100). Omitted: 100 "
        "for a new ship, unchanged when the variant is already shipped. The same variant at "
        "another percentage ramps it: the users already in stay in.",
    )
    ramp_step_percent = StrictFloatField(
        required=False,
        min_value=0.0,
        max_value=100.0,
        help_text="Scheduled ramp: percentage points added every ramp_every_hours until 100 "
        "(with ramp_every_hours). A ship without it, or a later manual percentage, ends a "
        "scheduled ramp.",
    )
    ramp_every_hours = StrictFloatField(
        required=False,
        min_value=MIN_RAMP_HOURS,
        max_value=MAX_RAMP_HOURS,
        help_text="Scheduled ramp: hours between steps (with ramp_step_percent).",
    )

    def validate_variant(self, value: str) -> str:
        names = self.context["experiment"].variant_names
        if value not in names:
            raise serializers.ValidationError(
                f'"{value}" is not a variant of this experiment. Valid choices: '
                f"{valid_choices_text({n: n for n in names})}."
            )
        return value

    def validate(self, attrs: dict) -> dict:
        errors = ramp_errors(attrs.get("ramp_step_percent"), attrs.get("ramp_every_hours"))
        if errors:
            raise serializers.ValidationError({k: [v] for k, v in errors.items()})
        return attrs


class ProfileFilterSerializer(serializers.Serializer):
    persona = ChoiceField(choices=[*UserProfile._meta.get_field("persona").choices,
                                   ("", "none")], required=False)  # fmt: skip


class RecomputeSerializer(serializers.Serializer):
    days = serializers.IntegerField(required=False, min_value=1, max_value=365, default=28)


class ProfileViewSet(viewsets.ReadOnlyModelViewSet):
    """End-user profiles with their persona; ``recompute`` runs the daily job now."""

    serializer_class = UserProfileSerializer
    lookup_field = "user_id"
    lookup_value_regex = "[^/]+"
    action_roles = {"recompute": "operator"}

    def get_object(self) -> UserProfile:
        # No profile's user id holds a NUL (ingestion refuses them), and PostgreSQL cannot
        # even compare one: a lookup with it was a 500 there.
        if NUL in self.kwargs[self.lookup_field]:
            raise Http404
        return super().get_object()

    def get_queryset(self):
        queryset = UserProfile.objects.all()
        if self.action == "list":
            params = ProfileFilterSerializer(data=self.request.query_params)
            params.is_valid(raise_exception=True)
            if "persona" in params.validated_data:
                queryset = queryset.filter(persona=params.validated_data["persona"])
        return queryset

    @extend_schema(parameters=[ProfileFilterSerializer])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(responses=PersonaChangeSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)
    def history(self, request, user_id=None):
        changes = self.get_object().changes.order_by("-changed_at")[:100]
        return Response(PersonaChangeSerializer(changes, many=True).data)

    @extend_schema(request=RecomputeSerializer, responses={201: dict})
    @action(detail=False, methods=["post"])
    def recompute(self, request):
        body = RecomputeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        counts = services.profiles_recompute(days=body.validated_data["days"])
        return Response(counts, status=status.HTTP_201_CREATED)


class RuleViewSet(viewsets.ModelViewSet):
    """Rules: admins create and edit; every write invalidates cached configurations."""

    serializer_class = RuleSerializer
    queryset = PersonalizationRule.objects.all()
    action_roles = ADMIN_EDITS


class ExperimentViewSet(viewsets.ModelViewSet):
    """Experiments: admins edit; operators start, stop and recompute results."""

    serializer_class = ExperimentSerializer
    queryset = Experiment.objects.prefetch_related("shipments")
    # Shipping changes what every targeted user sees, like a rule edit: admins.
    action_roles = {**ADMIN_EDITS, "start": "operator", "stop": "operator",
                    "recompute": "operator", "ship": "admin", "unship": "admin"}  # fmt: skip

    def perform_update(self, serializer) -> None:
        # Through the service: a body read before a concurrent stop must not put back
        # the old status or ends_at (a full save of the instance did).
        try:
            serializer.instance = services.experiment_update(
                experiment_id=serializer.instance.pk, changes=serializer.validated_data
            )
        except services.ExperimentStateError as exc:
            raise serializers.ValidationError({exc.field: [str(exc)]}) from exc

    def _transition(self, fn, **kwargs) -> Response:
        try:
            exp = fn(experiment_id=self.get_object().pk, **kwargs)
        except services.ExperimentStateError as exc:
            return Response({exc.field: [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        return Response(ExperimentSerializer(self.get_queryset().get(pk=exp.pk)).data)

    @extend_schema(request=None, responses=ExperimentSerializer)
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        return self._transition(services.experiment_start)

    @extend_schema(request=None, responses=ExperimentSerializer)
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        return self._transition(services.experiment_stop)

    @extend_schema(request=ShipSerializer, responses=ExperimentSerializer)
    @action(detail=True, methods=["post"])
    def ship(self, request, pk=None):
        """Serve one variant to the targeted users (all, or ``rollout_percent`` % of them)
        from now on (stops a running one first); no exposure is recorded and the results
        stay those of the run. Shipping the shipped variant at another percentage ramps
        it; every change is a row of ``shipments``."""
        body = ShipSerializer(data=request.data, context={"experiment": self.get_object()})
        body.is_valid(raise_exception=True)
        return self._transition(
            services.experiment_ship,
            variant=body.validated_data["variant"],
            rollout_percent=body.validated_data.get("rollout_percent"),
            ramp_step_percent=body.validated_data.get("ramp_step_percent"),
            ramp_every_hours=body.validated_data.get("ramp_every_hours"),
            by=request_actor(request),
        )

    @extend_schema(request=None, responses=ExperimentSerializer)
    @action(detail=True, methods=["post"])
    def unship(self, request, pk=None):
        """Roll the ship back: users fall back to the rules without the variant."""
        return self._transition(services.experiment_unship, by=request_actor(request))

    @extend_schema(responses=ExperimentResultSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)
    def results(self, request, pk=None):
        latest = selectors.experiment_latest_results(self.get_object())
        return Response(ExperimentResultSerializer(latest, many=True).data)

    @extend_schema(request=None, responses={201: ExperimentResultSerializer(many=True)})
    @action(detail=True, methods=["post"], pagination_class=None)
    def recompute(self, request, pk=None):
        exp = self.get_object()
        services.experiment_results_recompute(experiment_id=exp.pk)
        latest = selectors.experiment_latest_results(exp)
        return Response(
            ExperimentResultSerializer(latest, many=True).data, status=status.HTTP_201_CREATED
        )


class ConfigQuerySerializer(serializers.Serializer):
    # The same ids telemetry ingests (any text up to 100 characters but NUL), so every
    # user with events can be served: Auth0's "auth0|5f7c...", ids with spaces or slashes.
    user_id = serializers.CharField(
        max_length=100, trim_whitespace=False, help_text="The end user's id (as in telemetry)."
    )


class StatusView(APIView):
    """Persona distribution, active rules, running experiments with their current results."""

    serializer_class = None

    @extend_schema(responses=dict)
    def get(self, request):
        return Response(selectors.status_report())


ATTRIBUTES_PARAM = "attributes"
ATTRIBUTE_PREFIX = "attributes."
# A JSON document of 50 attributes of 64-character names and 256-character values fits.
MAX_ATTRIBUTES_JSON = 32_000


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _request_attributes(query: QueryDict) -> dict[str, Any]:
    """The attributes a config request sends: ``attributes=<JSON object>`` (typed values)
    and ``attributes.<key>=<text>`` (one string each), merged; 400 naming the input.

    A GET, not a POST body: the endpoint stays the read a viewer key may make (every
    POST of the API needs operator), and existing callers change nothing.
    """
    attributes: dict[str, Any] = {}
    raw = query.get(ATTRIBUTES_PARAM)
    if raw is not None:
        if len(raw) > MAX_ATTRIBUTES_JSON:
            raise serializers.ValidationError(
                {ATTRIBUTES_PARAM: [f"at most {MAX_ATTRIBUTES_JSON} characters of JSON"]}
            )
        try:
            parsed = json.loads(raw, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:
            raise serializers.ValidationError(
                {ATTRIBUTES_PARAM: [f"must be a JSON object: {str(exc)[:100]}"]}
            ) from exc
        errors = attributes_errors(parsed)
        if errors:
            raise serializers.ValidationError(errors)
        attributes.update(parsed)
    for name, values in query.lists():
        if not name.startswith(ATTRIBUTE_PREFIX):
            continue
        key = name[len(ATTRIBUTE_PREFIX) :]
        if len(values) > 1:
            raise serializers.ValidationError({name: ["given more than once"]})
        if key in attributes:
            raise serializers.ValidationError({name: ["also given in attributes"]})
        errors = attributes_errors({key: values[0]})
        if errors:
            # A bad key (NUL, too long) is reported under the document's name.
            raise serializers.ValidationError(errors)
        attributes[key] = values[0]
    if len(attributes) > MAX_ATTRIBUTES:
        raise serializers.ValidationError(
            {ATTRIBUTES_PARAM: [f"at most {MAX_ATTRIBUTES} attributes (got {len(attributes)})"]}
        )
    return attributes


class UserConfigView(APIView):
    """The user's merged UI configuration, the rules and variants behind it, and the persona.

    Serving a variant *is* the exposure, so a first resolution records it
    (idempotently: one row per user and experiment). Cached until a rule,
    experiment or profile changes, per set of request attributes.
    """

    serializer_class = ConfigQuerySerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("user_id", str, OpenApiParameter.PATH),
            OpenApiParameter(
                ATTRIBUTES_PARAM,
                OpenApiTypes.STR,
                description=(
                    "Request attributes as a flat JSON object (string, number or boolean "
                    f"values; at most {MAX_ATTRIBUTES} names of up to {MAX_KEY_LENGTH} "
                    f"characters, strings of up to {MAX_VALUE_LENGTH}). Rule conditions and "
                    'experiment targeting test them under "request".'
                ),
                examples=[
                    OpenApiExample(
                        "country, plan and app version",
                        value='{"country": "FR", "plan": "pro", "app_version": 5}',
                    )
                ],
            ),
            OpenApiParameter(
                "attributes.<key>",
                OpenApiTypes.STR,
                description="One request attribute as a string, e.g. attributes.country=FR.",
            ),
        ],
        responses=dict,
    )
    def get(self, request, user_id: str):
        params = ConfigQuerySerializer(data={"user_id": user_id})
        params.is_valid(raise_exception=True)
        attributes = _request_attributes(request.query_params)
        with transaction.atomic():
            payload = services.config_resolve(
                user_id=params.validated_data["user_id"], attributes=attributes
            )
        return Response(payload)
