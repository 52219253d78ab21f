"""The only writers of the scaling system: read telemetry -> engine -> store decisions -> act.

A decision is written in its own transaction, *then* the actuator is called (a
side effect that cannot be rolled back must not run inside a transaction that
might), then the outcome of the call is written in a second transaction.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from telemetry import selectors as telemetry
from telemetry import services as telemetry_services

from . import engine
from .actuators import ActuationRequest, ActuatorError, actuator_for
from .defaults import DEFAULT_RESOURCES, DEFAULT_RULES
from .models import ScalableResource, ScalingDecision, ScalingRule
from .readings import STALE_READING_SECONDS, load_series, resource_utilization, rule_reading

logger = logging.getLogger(__name__)

FORECAST_STEP_SECONDS = 300
FORECAST_HISTORY_DAYS = 7
# A capacity change stored PROPOSED or claimed EXECUTING within this long is "in flight": a
# second evaluation must not propose it again. Longer than the job's hard time limit (58 s)
# plus an actuator's retries; older rows are runs that died, and must not block for ever.
IN_FLIGHT_SECONDS = 300
IN_FLIGHT_STATUSES = (ScalingDecision.Status.PROPOSED, ScalingDecision.Status.EXECUTING)
# Fields only the scaling job writes (after a real scaling action): an operator's save
# carries the value the form or client loaded earlier and would put a stale size back.
JOB_OWNED_FIELDS = frozenset({"current_units"})
# How the detail of a decision refused as out of date starts (the actuator was not called).
STALE_REFUSAL = "refused as stale:"
# How many recent changes are read to count an actuator's failures in a row (the backoff
# stops growing at engine.decision.FAILURE_BACKOFF_MAX_SECONDS long before this).
FAILURE_HISTORY = 20


@dataclass
class Evaluation:
    """One resource's evaluation: the engine's decision, its inputs, and the stored row."""

    resource: ScalableResource
    decision: engine.Decision
    inputs: dict
    utilization: float | None
    row: ScalingDecision | None = None
    errors: list[str] = field(default_factory=list)


def scaling_defaults_ensure() -> dict:
    """Create the default resources and five rules where missing (idempotent)."""
    created = {"resources": 0, "rules": 0}
    with transaction.atomic():
        for spec in DEFAULT_RESOURCES:
            _, new = ScalableResource.objects.get_or_create(name=spec["name"], defaults=dict(spec))
            created["resources"] += new
        for spec in DEFAULT_RULES:
            spec = dict(spec)
            resource = ScalableResource.objects.get(name=spec.pop("resource"))
            _, new = ScalingRule.objects.get_or_create(
                resource=resource, name=spec["name"], defaults=spec
            )
            created["rules"] += new
    return created


def resource_update(*, resource_id: int, data: dict[str, Any]) -> ScalableResource:
    """Write an operator's edit of a resource: only the fields whose value really changes.

    A full ``save()`` writes every column with the values loaded when the form or request
    started, so it would revert what the scaling job wrote in the meantime (above all
    ``current_units``, which is never taken from ``data``). The row is re-read under a lock
    and saved with ``update_fields``, so concurrent writers of other fields are kept.
    Bounds crossed by a concurrent edit raise ValidationError (the row is left as it was).
    """
    with transaction.atomic():
        resource = ScalableResource.objects.select_for_update().get(pk=resource_id)
        changed = [
            name
            for name, value in data.items()
            if name not in JOB_OWNED_FIELDS and getattr(resource, name) != value
        ]
        for name in changed:
            setattr(resource, name, data[name])
        # Re-checked under the lock: two edits each valid alone (min 8; max 5) can cross.
        if resource.min_units > resource.max_units:
            raise ValidationError(
                {"min_units": [f"must not exceed max_units ({resource.max_units} now)"]}
            )
        if changed:
            resource.save(update_fields=[*changed, "updated_at"])
    return resource


# --- reading the world ---------------------------------------------------------------------


def _engine_rule(rule: ScalingRule) -> engine.ScalingRule:
    return engine.ScalingRule(
        name=rule.name,
        metric=rule.metric,
        kind=engine.RuleKind(rule.kind),
        target=rule.target,
        tolerance=rule.tolerance,
        steps=tuple(
            engine.StepAdjustment(float(s["lower"]), s.get("upper"), int(s["change"]))
            for s in rule.steps or []
        ),
        critical=rule.critical,
        cooldown_up_seconds=rule.cooldown_up_seconds,
        cooldown_down_seconds=rule.cooldown_down_seconds,
        priority=rule.priority,
        enabled=rule.enabled,
    )


def _predictive_proposal(
    resource: ScalableResource, *, now: float
) -> tuple[engine.Proposal | None, dict]:
    """Units needed for the forecast peak within the start-up time, at the target utilisation.

    Prefers the forecasting system's current forecast of the load series; falls back to
    the engine's built-in seasonal-level forecaster on the last week of that series, unless
    the series has no reading within ``STALE_READING_SECONDS`` (then there is no prediction).
    """
    series = load_series(resource)
    if not resource.predictive_enabled or series is None:
        return None, {}
    until = now + resource.startup_seconds + FORECAST_STEP_SECONDS
    peak, source = None, ""
    try:
        from forecasting import selectors as forecasting

        forecast = forecasting.forecast_for_series(series.pk, horizon_days=7)
        if forecast is not None:
            arrays = forecasting.forecast_arrays(forecast)
            window = (arrays["ts"] > now) & (arrays["ts"] <= until)
            if window.any():
                peak, source = float(np.max(arrays["yhat"][window])), f"forecast #{forecast.pk}"
    except Exception as exc:
        logger.warning("forecasting unavailable for %s: %s", resource, exc)
    if peak is None:
        latest = telemetry.series_latest(series.pk)
        if latest is None or now - latest[0] > STALE_READING_SECONDS:
            # A week-old profile says nothing about a series that stopped reporting.
            return None, {"forecast_skipped": "load series has no reading in the last "
                          f"{STALE_READING_SECONDS}s"}  # fmt: skip
        end = telemetry.to_datetime(now + 1)
        start = end - timedelta(days=FORECAST_HISTORY_DAYS)
        ts, values = telemetry.series_values_resampled(series.pk, start, end, FORECAST_STEP_SECONDS)
        if values.size < 2:
            return None, {}
        horizon = 1 + math.ceil(resource.startup_seconds / FORECAST_STEP_SECONDS)
        peak = float(np.max(engine.SeasonalLevelForecaster()(ts, values, horizon)))
        source = "built-in seasonal level"
    units = engine.rules.ceil_units(peak / (resource.unit_capacity * resource.target_utilization))
    proposal = engine.Proposal(
        source="forecast",
        desired_units=units,
        predictive=True,
        reason=f"{source}: load peak {peak:.4g} within {resource.startup_seconds}s start-up "
        f"-> {units} units at {resource.target_utilization:.0%}",
        cooldown_up_seconds=0,
        cooldown_down_seconds=0,
    )
    return proposal, {"forecast_peak": peak, "forecast_source": source}


def _memory(resource: ScalableResource, *, now: datetime) -> engine.ScalingMemory:
    """Rebuild the engine's memory from stored decisions (recommendations and last changes).

    No upper bound on ``at``: an overlapping run that took its ``now`` earlier but got the
    resource's lock later must still see the change the other run has just executed (a
    change stamped after ``now`` counts as "just now", so its cooldown applies).
    """
    memory = engine.ScalingMemory()
    window = timedelta(seconds=resource.stabilization_window_seconds)
    recent = resource.decisions.filter(at__gt=now - window).order_by("at")
    for at, rec in recent.values_list("at", "recommendation"):
        memory.recommendations.append((at.timestamp(), rec))
    executed = resource.decisions.filter(status=ScalingDecision.Status.EXECUTED)
    for action, attr in (("scale_up", "last_scale_up_at"), ("scale_down", "last_scale_down_at")):
        last = executed.filter(action=action).order_by("-at").values_list("at", flat=True).first()
        setattr(memory, attr, last.timestamp() if last else None)
    return memory


def _changes_since(resource: ScalableResource, since: float | None) -> list[tuple[float, int]]:
    """Executed capacity changes that took effect after ``since``, as the engine's
    ``(took_effect_at, units_before)``; added units take effect after ``startup_seconds``.

    A reading taken before one of them measured the size before it (see
    ``engine.units_measured``): metrics come every few minutes, evaluations every minute.
    """
    if since is None:
        return []
    startup = timedelta(seconds=resource.startup_seconds)
    rows = (
        resource.decisions.filter(
            status=ScalingDecision.Status.EXECUTED,
            executed_at__gt=telemetry.to_datetime(since) - startup,
        )
        .exclude(action=ScalingDecision.Action.NONE)
        .values_list("action", "executed_at", "current_units")
    )
    return [
        ((executed_at + (startup if action == "scale_up" else timedelta())).timestamp(), before)
        for action, executed_at, before in rows
    ]


def resource_evaluate(resource: ScalableResource, *, now: datetime | None = None) -> Evaluation:
    """What the rules would decide for ``resource`` now. Reads only; writes nothing."""
    now = now or timezone.now()
    epoch = now.timestamp()
    rules = [r for r in resource.rules.all() if r.enabled]
    proposals, readings, errors, rule_ids = [], [], [], {}
    taken = [(rule, rule_reading(rule, now=epoch)) for rule in rules]
    changes = _changes_since(
        resource, min((r.at for _, r in taken if r.value is not None), default=None)
    )
    for rule, reading in taken:
        measured = None if reading.at is None else engine.units_measured(reading.at, changes)
        readings.append({**asdict(reading), "measured_units": measured})
        if reading.value is None:
            errors.append(f"{rule.name}: no {reading.source} reading of {rule.metric}")
            continue
        proposal = engine.evaluate_rule(
            _engine_rule(rule), reading.value, resource.current_units, measured
        )
        proposals.append(proposal)
        rule_ids[rule.name] = rule.pk
    prediction, forecast_inputs = _predictive_proposal(resource, now=epoch)
    if prediction is not None:
        proposals.append(prediction)
    utilization = resource_utilization(resource, now=epoch)
    state = engine.ResourceState(
        name=resource.name,
        current_units=resource.current_units,
        min_units=resource.min_units,
        max_units=resource.max_units,
        unit_capacity=resource.unit_capacity,
        cost_per_unit_hour=resource.cost_per_unit_hour,
        target_utilization=resource.target_utilization,
        demand=None if utilization is None else utilization * resource.capacity,
    )
    policy = engine.DecisionPolicy(
        stabilization_window_seconds=resource.stabilization_window_seconds
    )
    decision = engine.decide(state, proposals, _memory(resource, now=now), epoch, policy)
    decision = _hold_while_in_flight(resource, decision, utilization, now=now)
    decision = _hold_after_failures(resource, decision, utilization, now=now)
    decision = _hold_while_target_insists(resource, decision, utilization, now=now)
    inputs = {"readings": readings, **forecast_inputs, "rule_ids": rule_ids, "errors": errors}
    return Evaluation(resource, decision, inputs, utilization, errors=errors)


def _hold_while_in_flight(
    resource: ScalableResource,
    decision: engine.Decision,
    utilization: float | None,
    *,
    now: datetime,
) -> engine.Decision:
    """Turn a capacity change into a cooldown skip while an earlier change is still in flight.

    Cooldowns count only EXECUTED decisions, and ``current_units`` moves only once the
    actuator is done, so a second evaluation overlapping the first (the scheduled tick,
    the admin action, POST /scaling/evaluate, a task sent by the anomalies app) would see
    the old size and ask for the same change again. Unlike a cooldown this also holds
    emergencies: the change in flight already answers the same reading, and a second one
    would double it.
    """
    if not decision.changes_capacity:
        return decision
    in_flight = (
        resource.decisions.filter(
            status__in=IN_FLIGHT_STATUSES, at__gt=now - timedelta(seconds=IN_FLIGHT_SECONDS)
        )
        .exclude(action=ScalingDecision.Action.NONE)
        .order_by("-at", "-id")
        .first()
    )
    if in_flight is None:
        return decision
    return _held(
        resource,
        decision,
        utilization,
        f"skipped: decision #{in_flight.pk} ({in_flight.action} "
        f"{in_flight.current_units}->{in_flight.desired_units}) is still {in_flight.status}",
    )


def _recent_changes(resource: ScalableResource, *fields: str):
    """The resource's latest capacity changes, newest first, as `fields` tuples: executed
    or failed, refusals of stale decisions left out (they say nothing of the target)."""
    return (
        resource.decisions.filter(
            status__in=(ScalingDecision.Status.EXECUTED, ScalingDecision.Status.FAILED)
        )
        .exclude(action=ScalingDecision.Action.NONE)
        .exclude(status=ScalingDecision.Status.FAILED, actuator_detail__startswith=STALE_REFUSAL)
        .order_by("-at", "-id")
        .values_list(*fields)[:FAILURE_HISTORY]
    )


def _hold_after_failures(
    resource: ScalableResource,
    decision: engine.Decision,
    utilization: float | None,
    *,
    now: datetime,
) -> engine.Decision:
    """Back off from an actuator that keeps failing: after N failed changes in a row, wait
    ``engine.failure_backoff_seconds(N)`` from the last one before calling it again.

    An emergency still tries (its cooldowns are skipped too), and so does the first
    evaluation after an operator's edit of the resource (a fixed actuator_config, say).
    Refusals of stale decisions are not failures of the actuator and do not count.
    """
    if not decision.changes_capacity or decision.emergency:
        return decision
    recent = _recent_changes(resource, "pk", "at", "status")
    failures = []
    for row in recent:
        if row[2] != ScalingDecision.Status.FAILED:
            break
        failures.append(row)
    if not failures:
        return decision
    last_id, last_at, _ = failures[0]
    if resource.updated_at > last_at:
        return decision  # edited since the failure: try the new settings now
    return _backing_off(
        resource,
        decision,
        utilization,
        times=len(failures),
        last_at=last_at,
        now=now,
        why=f"the actuator failed {len(failures)} time(s) in a row (last: decision #{last_id})",
    )


def _hold_while_target_insists(
    resource: ScalableResource,
    decision: engine.Decision,
    utilization: float | None,
    *,
    now: datetime,
) -> engine.Decision:
    """Back off from a target that keeps answering the same size outside the bounds.

    A size outside ``[min_units, max_units]`` is brought back to the bound at the next
    evaluation, cooldowns waived (``engine.decide``). A target that cannot run the bound (three
    Celery workers keep one process each under a ``max_units`` of 2; a cluster policy holding
    12 replicas) answers the size it had, and every evaluation, every minute, recorded another
    executed change with its warning and a saving that never happened. When the last changes
    asked for this very bound and the target stayed at this size each time, the ask waits
    ``engine.failure_backoff_seconds(N)`` (300 s doubling, at most an hour) from the last one,
    like an actuator that fails. A new bound is a new request and is sent at once; a change
    the rules want beyond the bound is not held.
    """
    current = decision.current_units
    bound = resource.clamp(current)
    if not decision.changes_capacity or bound == current or decision.desired_units != bound:
        return decision
    recent = _recent_changes(
        resource, "pk", "at", "status", "current_units", "desired_units", "applied_units"
    )
    unmoved = []
    for pk, at, status, before, asked, applied in recent:
        if status != ScalingDecision.Status.EXECUTED or not before == applied == current:
            break
        if asked != bound:
            break
        unmoved.append((pk, at))
    if not unmoved:
        return decision
    last_id, last_at = unmoved[0]
    return _backing_off(
        resource,
        decision,
        utilization,
        times=len(unmoved),
        last_at=last_at,
        now=now,
        why=f"the target answered {current} when asked for {bound} (decision #{last_id}, "
        f"{len(unmoved)} time(s) in a row)",
        then="a new bound is asked at once",
    )


def _backing_off(
    resource: ScalableResource,
    decision: engine.Decision,
    utilization: float | None,
    *,
    times: int,
    last_at: datetime,
    now: datetime,
    why: str,
    then: str = "",
) -> engine.Decision:
    """The decision, or held while ``engine.failure_backoff_seconds(times)`` has not passed
    since ``last_at``: the same doubling wait for a failing actuator and an insisting target."""
    wait = engine.failure_backoff_seconds(times)
    elapsed = (now - last_at).total_seconds()
    if elapsed >= wait:
        return decision
    after = f" ({then})" if then else ""
    return _held(
        resource,
        decision,
        utilization,
        f"skipped: {why}; backing off {wait:.0f}s, {wait - elapsed:.0f}s left{after}",
    )


def _held(
    resource: ScalableResource, decision: engine.Decision, utilization: float | None, reason: str
) -> engine.Decision:
    """``decision`` turned into a cooldown skip for ``reason`` (no change, no cost)."""
    current = decision.current_units
    demand = None if utilization is None else utilization * resource.capacity
    return dataclasses.replace(
        decision,
        status=engine.DecisionStatus.SKIPPED_COOLDOWN,
        reasons=(*decision.reasons, reason),
        cost=engine.cost_impact(current, current, resource.cost_per_unit_hour),
        expected_utilization=(
            None
            if demand is None
            else engine.expected_utilization(demand, current, resource.unit_capacity)
        ),
    )


def _proposal_json(p: engine.Proposal) -> dict:
    return {
        "source": p.source, "desired_units": p.desired_units, "reason": p.reason,
        "emergency": p.emergency, "predictive": p.predictive, "metric_value": p.metric_value,
    }  # fmt: skip


def evaluation_json(ev: Evaluation) -> dict:
    d = ev.decision
    return {
        "resource": ev.resource.name,
        "resource_id": ev.resource.pk,
        "current_units": d.current_units,
        "desired_units": d.desired_units,
        "action": d.action.value,
        "status": d.status.value,
        "emergency": d.emergency,
        "predictive": d.predictive,
        "winning_sources": list(d.winning_sources),
        "reasons": list(d.reasons),
        "proposals": [_proposal_json(p) for p in d.proposals],
        "cost_per_hour_delta": d.cost.per_hour,
        "cost_per_month_delta": d.cost.per_month,
        "utilization": ev.utilization,
        "expected_utilization": d.expected_utilization,
        "inputs": ev.inputs,
        "decision_id": ev.row.pk if ev.row else None,
    }


# --- writing and acting ----------------------------------------------------------------------


def _store(ev: Evaluation, *, now: datetime) -> ScalingDecision:
    d = ev.decision
    row = ScalingDecision.objects.create(
        resource=ev.resource,
        at=now,
        inputs=ev.inputs,
        current_units=d.current_units,
        desired_units=d.desired_units,
        recommendation=d.recommendation,
        action=d.action.value,
        status=d.status.value,
        winning_sources=list(d.winning_sources),
        reasons=list(d.reasons),
        proposals=[_proposal_json(p) for p in d.proposals],
        emergency=d.emergency,
        predictive=d.predictive,
        cost_per_hour_delta=d.cost.per_hour,
        cost_per_month_delta=d.cost.per_month,
        utilization_before=ev.utilization,
        expected_utilization=d.expected_utilization,
        actuator=ev.resource.actuator,
    )
    rule_ids = [ev.inputs["rule_ids"][s] for s in d.winning_sources if s in ev.inputs["rule_ids"]]
    if rule_ids:
        row.rules.set(rule_ids)
    return row


def decision_payload(row: ScalingDecision) -> dict:
    """The decision as the webhook receives it."""
    return {
        "decision_id": row.pk, "resource": row.resource.name, "at": row.at.isoformat(),
        "current_units": row.current_units, "desired_units": row.desired_units,
        "action": row.action, "emergency": row.emergency, "predictive": row.predictive,
        "reasons": row.reasons, "cost_per_hour_delta": row.cost_per_hour_delta,
        "cost_per_month_delta": row.cost_per_month_delta,
        "expected_utilization": row.expected_utilization,
    }  # fmt: skip


def decision_execute(*, decision_id: int, now: datetime | None = None) -> ScalingDecision:
    """Apply a stored decision through its resource's actuator and record what happened.

    The decision is claimed first (PROPOSED -> EXECUTING in one conditional UPDATE): of two
    runs holding the same proposed row (the job and the admin action, say) only the one
    whose UPDATE changed the row calls the actuator; the other returns the row as it is.
    """
    claimed = (
        ScalingDecision.objects.filter(pk=decision_id, status=ScalingDecision.Status.PROPOSED)
        .exclude(action=ScalingDecision.Action.NONE)
        .update(status=ScalingDecision.Status.EXECUTING)
    )
    row = ScalingDecision.objects.select_related("resource").get(pk=decision_id)
    if not claimed:
        return row
    resource = row.resource
    refusal = _stale_refusal(row, resource, now=now or timezone.now())
    if refusal is not None:
        _mark_failed(row, refusal)
        row.refresh_from_db()
        return row
    request = ActuationRequest(
        resource=resource.name,
        current_units=row.current_units,
        desired_units=row.desired_units,
        config=resource.actuator_config or {},
        payload=decision_payload(row),
    )
    try:
        result = actuator_for(resource.actuator).apply(request)
    except ActuatorError as exc:
        _mark_failed(row, str(exc))
        row.refresh_from_db()
        return row
    except Exception as exc:
        # Do not leave the claim behind (it would hold every change for IN_FLIGHT_SECONDS).
        _mark_failed(row, f"unexpected {type(exc).__name__}: {exc}")
        raise
    warnings = list(result.warnings)
    with transaction.atomic():
        locked = ScalableResource.objects.select_for_update().get(pk=resource.pk)
        # The size that really runs, even outside the bounds: the target chose another size
        # (reported), or the bounds moved between deciding and acting (then the request, which
        # is what the actuator applied when it reports nothing). Recorded clamped, a size the
        # target runs would be lost; recorded as it is, the next evaluation starts from it and
        # scales back to the bound whatever the cooldowns (engine.decide), as the HPA does on
        # its next sync. The condition is said here, where the size arrived.
        reported = result.applied_units is not None
        locked.current_units = result.applied_units if reported else row.desired_units
        condition = locked.bounds_condition
        if condition is not None:
            source = "the size the actuator reported" if reported else "the size requested"
            warnings.append(
                f"{condition} ({source}): the next evaluation scales back to "
                f"{locked.clamp(locked.current_units)}, cooldowns waived"
            )
        locked.save(update_fields=["current_units", "updated_at"])
        detail = "\n".join([result.detail, *(f"warning: {w}" for w in warnings)])
        ScalingDecision.objects.filter(pk=row.pk).update(
            status=ScalingDecision.Status.EXECUTED,
            executed_at=now or timezone.now(),
            applied_units=result.applied_units,
            actuator_detail=detail[:5000],
            outcome=ScalingDecision.Outcome.PENDING,
        )
        if resource.actuator != ScalableResource.ActuatorKind.DRY_RUN:
            _record_change(row, resource, locked.current_units, now=now or timezone.now())
    row.refresh_from_db()
    return row


def _record_change(
    row: ScalingDecision, resource: ScalableResource, applied: int, *, now: datetime
) -> None:
    """A size an actuator really applied is a change to the product: an anomaly that
    follows a scale-down names it as a suspect (`telemetry.ChangeEvent`). A dry run changes
    nothing and records nothing."""
    telemetry_services.change_record_quietly(
        title=f"{resource.name}: {row.current_units} -> {applied} units ({row.action})",
        at=min(now, timezone.now()),
        kind="scaling",
        labels=resource.load_series_labels or {},
        source="scaling",
        created_by=f"scaling decision {row.pk}",
    )


def _stale_refusal(
    row: ScalingDecision, resource: ScalableResource, *, now: datetime
) -> str | None:
    """Why a stored decision must not be applied any more, or None.

    A decision is a size computed from the readings and the size of its moment: applied
    later (the admin's "execute proposed" on an old row) a "scale_up 4->8" could shrink a
    resource that has grown to 20 since. It is refused when older than IN_FLIGHT_SECONDS
    or when the resource's size is no longer the one it was decided from.
    """
    age = (now - row.at).total_seconds()
    if age > IN_FLIGHT_SECONDS:
        return (
            f"{STALE_REFUSAL} decided {age:.0f}s ago (more than {IN_FLIGHT_SECONDS}s): "
            "its readings are out of date; evaluate the resource again"
        )
    if resource.current_units != row.current_units:
        return (
            f"{STALE_REFUSAL} the resource has {resource.current_units} units now, the "
            f"decision was made at {row.current_units}; evaluate the resource again"
        )
    return None


def _abandon_stale_claims(resources, *, now: datetime) -> int:
    """Mark decisions claimed longer ago than IN_FLIGHT_SECONDS as failed.

    Their run died between claiming and recording (a worker killed at the time limit), so
    whether the actuator acted is unknown: left EXECUTING they would read as still under
    way for ever, and judging success would wait on them. A row still PROPOSED stays as it
    is: nothing was done, and the admin's "execute proposed" action can still act on it.
    """
    return ScalingDecision.objects.filter(
        resource__in=resources,
        status=ScalingDecision.Status.EXECUTING,
        at__lte=now - timedelta(seconds=IN_FLIGHT_SECONDS),
    ).update(
        status=ScalingDecision.Status.FAILED,
        actuator_detail="abandoned: the run that claimed this decision did not finish; "
        "compare the resource's real size with current_units",
    )


def _mark_failed(row: ScalingDecision, detail: str) -> None:
    ScalingDecision.objects.filter(pk=row.pk).update(
        status=ScalingDecision.Status.FAILED, actuator_detail=detail[:5000]
    )


def decisions_evaluate(
    *, resource_ids: list[int] | None = None, execute: bool = False, now: datetime | None = None
) -> list[Evaluation]:
    """Evaluate every enabled resource; with ``execute``, store each decision and act on it.

    Without an explicit ``now``, each resource is evaluated at the time its lock was taken:
    the loop can run for most of a minute, and a run that waited for the lock must see the
    decisions stored meanwhile as past ones (their cooldowns apply).
    """
    given_now = now
    now = now or timezone.now()
    resources = ScalableResource.objects.filter(enabled=True).prefetch_related("rules")
    if resource_ids is not None:
        resources = resources.filter(pk__in=resource_ids)
    if execute:
        _abandon_stale_claims(resources, now=now)
    evaluations = []
    for resource in resources:
        # One resource's failure (a broken actuator_config, a telemetry read that raises)
        # is recorded on that resource and the run goes on with the others.
        try:
            ev = _evaluate_one(resource, execute=execute, now=given_now)
        except Exception as exc:
            logger.exception("scaling: evaluating %s failed", resource)
            ev = _failed_evaluation(resource, exc, now=given_now or timezone.now(), store=execute)
        if ev is not None:
            evaluations.append(ev)
    return evaluations


def _evaluate_one(
    resource: ScalableResource, *, execute: bool, now: datetime | None
) -> Evaluation | None:
    if not execute:
        return resource_evaluate(resource, now=now or timezone.now())
    with transaction.atomic():
        # Re-check ``enabled`` under the lock: the loop can run for most of a minute, and
        # a resource the operator disabled meanwhile must not be scaled once more.
        locked = (
            ScalableResource.objects.select_for_update()
            .prefetch_related("rules")
            .filter(pk=resource.pk, enabled=True)
            .first()
        )
        if locked is None:
            return None
        at = now or timezone.now()
        ev = resource_evaluate(locked, now=at)
        ev.row = _store(ev, now=at)
    if ev.row.status == ScalingDecision.Status.PROPOSED and ev.decision.changes_capacity:
        try:
            ev.row = decision_execute(decision_id=ev.row.pk, now=at)
        except Exception as exc:  # decision_execute has marked the row failed
            logger.exception("scaling: executing decision #%s failed", ev.row.pk)
            ev.row.refresh_from_db()
            ev.errors.append(f"execute: {type(exc).__name__}: {exc}")
    return ev


def _failed_evaluation(
    resource: ScalableResource, exc: Exception, *, now: datetime, store: bool
) -> Evaluation:
    """A "no change" decision saying why ``resource`` could not be evaluated (stored when
    executing, so the operator finds it with the other decisions)."""
    units = resource.current_units
    reason = f"evaluation failed: {type(exc).__name__}: {exc}"[:1000]
    decision = engine.Decision(
        at=now.timestamp(), resource=resource.name, current_units=units, desired_units=units,
        recommendation=units, action=engine.Action.NONE, status=engine.DecisionStatus.FAILED,
        winning_sources=(), reasons=(reason,), proposals=(), emergency=False, predictive=False,
        cost=engine.cost_impact(units, units, resource.cost_per_unit_hour),
        expected_utilization=None,
    )  # fmt: skip
    ev = Evaluation(resource, decision, {"rule_ids": {}, "errors": [reason]}, None, [reason])
    if store:
        ev.row = _store(ev, now=now)
        ScalingDecision.objects.filter(pk=ev.row.pk).update(actuator_detail=reason)
        ev.row.refresh_from_db()
    return ev


# --- judging -----------------------------------------------------------------------------------


def _utilization_after(
    row: ScalingDecision, start: datetime, end: datetime
) -> tuple[np.ndarray, float, float | None]:
    """The values to judge ``row`` by, the target they aim at and the band's upper cap.

    With a load series: load / the capacity the decision left running (the size the actuator
    reported, else the requested one: a clamped request never ran), against the resource's
    target utilisation. Without: the metric of the decision's target-tracking rule (else the
    resource's first one) against *that rule's* target, which is what the rule steered to.
    """
    resource = row.resource
    series = load_series(resource)
    if series is not None:
        _, load = telemetry.series_values(series.pk, start, end)
        capacity = row.units_after * resource.unit_capacity
        if capacity <= 0:  # scaled to zero: load is unserved (a failure), no load says nothing
            return np.where(load > 0, np.inf, np.nan), resource.target_utilization, 1.0
        return load / capacity, resource.target_utilization, 1.0
    tracking = ScalingRule.Kind.TARGET_TRACKING
    rule = (
        row.rules.filter(kind=tracking).order_by("priority", "pk").first()
        or resource.rules.filter(enabled=True, kind=tracking).order_by("priority", "pk").first()
    )
    metric = telemetry.series_get(rule.metric, rule.metric_labels or {}) if rule else None
    if metric is None:
        return np.empty(0), resource.target_utilization, 1.0
    _, values = telemetry.series_values(metric.pk, start, end)
    return values, rule.target, (1.0 if rule.target <= 1 else None)


def _superseded_by(row: ScalingDecision, end: datetime) -> ScalingDecision | None:
    """A later change of the same resource executed before ``row``'s judging window ended:
    the window then measured another size, and says nothing about ``row``."""
    return (
        ScalingDecision.objects.filter(
            resource_id=row.resource_id,
            status=ScalingDecision.Status.EXECUTED,
            executed_at__gt=row.executed_at,
            executed_at__lt=end,
        )
        .exclude(action=ScalingDecision.Action.NONE)
        .order_by("executed_at", "pk")
        .first()
    )


def outcomes_check(*, now: datetime | None = None) -> dict:
    """Judge executed decisions whose settle time has passed: back inside the target band?

    A decision superseded by a later change before its window ended is ``unknown``.
    """
    now = now or timezone.now()
    counts = {"judged": 0, "success": 0, "failure": 0, "unknown": 0, "waiting": 0}
    pending = ScalingDecision.objects.select_related("resource").filter(
        outcome=ScalingDecision.Outcome.PENDING, executed_at__isnull=False
    )
    for row in pending:
        settle = timedelta(seconds=row.resource.settle_seconds)
        start = row.executed_at + settle
        end = start + max(settle, timedelta(minutes=10))
        if now < end:
            counts["waiting"] += 1
            continue
        later = _superseded_by(row, end)
        if later is not None:
            verdict = engine.OutcomeVerdict(
                None,
                None,
                f"superseded by decision #{later.pk} ({later.current_units}->"
                f"{later.units_after}) before the judging window ended",
            )
        else:
            values, target, upper_cap = _utilization_after(row, start, end)
            verdict = engine.judge_outcome(
                values, target, row.resource.outcome_tolerance, upper_cap=upper_cap
            )
        outcome = {True: "success", False: "failure", None: "unknown"}[verdict.success]
        ScalingDecision.objects.filter(pk=row.pk).update(
            outcome=outcome,
            outcome_utilization=verdict.utilization,
            outcome_reason=verdict.reason[:300],
            outcome_checked_at=now,
        )
        counts[outcome] += 1
        counts["judged"] += 1
    return counts


def decisions_prune(*, days: int = 14, now: datetime | None = None) -> dict:
    """Drop old "no change" evaluations: they only matter inside the stabilisation window."""
    now = now or timezone.now()
    deleted, _ = ScalingDecision.objects.filter(
        action=ScalingDecision.Action.NONE, at__lt=now - timedelta(days=days)
    ).delete()
    return {"deleted": deleted}
