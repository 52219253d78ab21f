"""Reads of the scaling system for the API, the admin and the overview."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Prefetch, Q, QuerySet
from django.utils import timezone

from .models import ScalableResource, ScalingDecision, ScalingRule

JUDGED = (ScalingDecision.Outcome.SUCCESS, ScalingDecision.Outcome.FAILURE)


def resource_queryset() -> QuerySet[ScalableResource]:
    return ScalableResource.objects.prefetch_related(
        Prefetch("rules", queryset=ScalingRule.objects.order_by("priority", "name"))
    )


def rule_queryset() -> QuerySet[ScalingRule]:
    return ScalingRule.objects.select_related("resource")


def decision_queryset() -> QuerySet[ScalingDecision]:
    return ScalingDecision.objects.select_related("resource").prefetch_related("rules")


def success_rate(*, resource_id: int | None = None) -> dict:
    """Share of judged decisions whose utilisation came back into the band (None if none judged)."""
    qs = ScalingDecision.objects.filter(outcome__in=JUDGED)
    if resource_id is not None:
        qs = qs.filter(resource_id=resource_id)
    counts = qs.aggregate(
        judged=Count("id"), success=Count("id", filter=Q(outcome=ScalingDecision.Outcome.SUCCESS))
    )
    judged, success = counts["judged"], counts["success"]
    return {
        "judged": judged,
        "success": success,
        "failure": judged - success,
        "rate": (success / judged) if judged else None,
    }


def recent_decisions(*, limit: int = 20, changes_only: bool = True) -> QuerySet[ScalingDecision]:
    qs = decision_queryset()
    if changes_only:
        qs = qs.exclude(action=ScalingDecision.Action.NONE)
    return qs[:limit]


def overview_section() -> dict:
    """Cheap aggregate figures for GET /overview (a few queries)."""
    since = timezone.now() - timedelta(hours=24)
    resources = ScalableResource.objects.aggregate(
        total=Count("id"), enabled=Count("id", filter=Q(enabled=True))
    )
    rules = ScalingRule.objects.aggregate(
        total=Count("id"), active=Count("id", filter=Q(enabled=True, resource__enabled=True))
    )
    decisions = (
        ScalingDecision.objects.filter(at__gte=since)
        .exclude(action=ScalingDecision.Action.NONE)
        .aggregate(
            total=Count("id"),
            executed=Count("id", filter=Q(status=ScalingDecision.Status.EXECUTED)),
            failed=Count("id", filter=Q(status=ScalingDecision.Status.FAILED)),
            skipped=Count("id", filter=Q(status=ScalingDecision.Status.SKIPPED_COOLDOWN)),
            emergencies=Count("id", filter=Q(emergency=True)),
            predictive=Count("id", filter=Q(predictive=True)),
        )
    )
    return {
        "resources": resources,
        "active_rules": rules["active"],
        "rules": rules["total"],
        "decisions_24h": decisions,
        "success_rate": success_rate(),
    }


def status_summary(*, limit: int = 20) -> dict:
    """Resources with capacity and utilisation now, recent decisions, success rates."""
    from .readings import resource_utilization

    now = timezone.now().timestamp()
    resources = []
    for resource in resource_queryset().filter(enabled=True):
        utilization = resource_utilization(resource, now=now)
        resources.append(
            {
                "id": resource.pk,
                "name": resource.name,
                "kind": resource.kind,
                "current_units": resource.current_units,
                "min_units": resource.min_units,
                "max_units": resource.max_units,
                # The HPA's ScalingLimited, in words: set while the size is outside the
                # bounds, until the next evaluation brings it back.
                "bounds_condition": resource.bounds_condition,
                "capacity": resource.capacity,
                "utilization": utilization,
                "target_utilization": resource.target_utilization,
                "cost_per_hour": resource.current_units * resource.cost_per_unit_hour,
                "actuator": resource.actuator,
                "active_rules": [r.name for r in resource.rules.all() if r.enabled],
                "success_rate": success_rate(resource_id=resource.pk),
            }
        )
    return {
        "resources": resources,
        "recent_decisions": list(recent_decisions(limit=limit)),
        "success_rate": success_rate(),
    }
