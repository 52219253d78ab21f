"""Recommendations: refresh from the analysis, operator actions, verification of applied ones.

Lifecycle (Google Recommender): active -> claimed -> succeeded | failed, or dismissed.
``recommendation_mark_applied`` records when the change went live; ``recommendations_verify``
later measures the metric before and after against its baseline and decides success.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
from django.db import IntegrityError, transaction
from django.utils import timezone

from telemetry import selectors as telemetry
from telemetry import services as telemetry_services
from telemetry.models import Series

from ..engine.baselines import hour_of_week_baseline
from ..engine.impact import INCONCLUSIVE, SUCCEEDED, realised_impact
from ..engine.recommendations import RecommendationDraft
from ..models import Recommendation
from .jsonable import jsonable

logger = logging.getLogger(__name__)

State = Recommendation.State
# The verifier gives up on a change this long after it went live (``give_up_days``); an
# applied_at further back could never be verified.
APPLIED_AT_MAX_AGE = timedelta(days=14)
# A dismissed recommendation stays dismissed while its cause keeps being seen within this gap.
DISMISSED_MEMORY = timedelta(hours=24)


class RecommendationStateError(Exception):
    """An operator action that the recommendation's state does not allow."""

    def __init__(self, message: str, field: str = "state") -> None:
        super().__init__(message)
        self.field = field


def _metric_series(draft: RecommendationDraft) -> Series | None:
    if not draft.metric:
        return None
    if draft.endpoint:
        found = telemetry.series_get(draft.metric, {"endpoint": draft.endpoint})
        if found:
            return found
    return telemetry.series_get(draft.metric)


def _fields(draft: RecommendationDraft) -> dict:
    return {
        "category": draft.category,
        "title": draft.title[:300],
        "endpoint": draft.endpoint,
        "resource": draft.resource,
        "evidence": jsonable(draft.evidence),
        "confidence": draft.confidence,
        "confidence_explanation": draft.confidence_explanation,
        "predicted_ms_saved_per_day": float(np.nan_to_num(draft.predicted_ms_saved_per_day)),
        "predicted_db_ms_saved_per_day": float(np.nan_to_num(draft.predicted_db_ms_saved_per_day)),
        "calibration": jsonable(draft.calibration),
        "complexity": draft.complexity,
        "risk": draft.risk,
        "rollback_plan": draft.rollback_plan,
    }


def _latest_locked(dedup_key: str, *, open_only: bool = False) -> Recommendation | None:
    rows = Recommendation.objects.select_for_update().filter(dedup_key=dedup_key)
    if open_only:
        rows = rows.filter(state__in=Recommendation.OPEN_STATES)
    return rows.order_by("-first_seen_at", "-pk").first()


def _refresh(latest: Recommendation | None, draft: RecommendationDraft, now: datetime) -> bool:
    """Refresh ``latest`` from the draft when it still stands for it; False if a new one is due."""
    if latest is None or not (
        latest.state in Recommendation.OPEN_STATES
        or (latest.state == State.DISMISSED and now - latest.last_seen_at <= DISMISSED_MEMORY)
    ):
        return False
    if latest.state in Recommendation.OPEN_STATES and latest.applied_at is None:
        for name, value in _fields(draft).items():
            setattr(latest, name, value)
    latest.last_seen_at = now
    latest.times_seen += 1
    latest.save()
    return True


@transaction.atomic
def recommendations_upsert(
    *, drafts: Sequence[RecommendationDraft], now: datetime
) -> dict[str, int]:
    """Refresh the open recommendation of each dedup key, or create one.

    An open one (active or claimed) gets the new evidence and figures; a claimed one keeps its
    state so an operator's work is not reset. A recently dismissed one is left dismissed (only
    its ``last_seen_at`` moves) so a dismissal holds while the cause persists.

    A key with no row yet has nothing to lock, so an overlapping run (the schedule and an
    operator's "run now") may insert the same key first. The insert runs in a savepoint: on
    the unique-constraint error only the savepoint is undone, and the row the other run made
    is refreshed instead, rather than the error rolling back this run's snapshot and report.
    """
    created = seen = 0
    for draft in drafts:
        seen += 1
        if _refresh(_latest_locked(draft.dedup_key), draft, now):
            continue
        metric_series = _metric_series(draft)
        try:
            with transaction.atomic():
                Recommendation.objects.create(
                    dedup_key=draft.dedup_key,
                    metric_series=metric_series,
                    lower_is_better=True,
                    first_seen_at=now,
                    last_seen_at=now,
                    state_changed_at=now,
                    **_fields(draft),
                )
        except IntegrityError:
            # the other run's open row, committed by now (the insert waited for it)
            if not _refresh(_latest_locked(draft.dedup_key, open_only=True), draft, now):
                raise
            continue
        created += 1
    return {"seen": seen, "created": created}


def _transition(recommendation_id: int, allowed: Sequence[str], action: str) -> Recommendation:
    try:
        recommendation = Recommendation.objects.select_for_update().get(pk=recommendation_id)
    except Recommendation.DoesNotExist as exc:
        raise RecommendationStateError("no such recommendation", field="id") from exc
    if recommendation.state not in allowed:
        raise RecommendationStateError(
            f"cannot {action} a recommendation in state {recommendation.state!r} "
            f"(allowed from: {', '.join(allowed)})"
        )
    return recommendation


@transaction.atomic
def recommendation_claim(*, recommendation_id: int, actor: str) -> Recommendation:
    """An operator takes the recommendation: others see it is being worked on."""
    rec = _transition(recommendation_id, [State.ACTIVE], "claim")
    rec.state, rec.claimed_by, rec.state_changed_at = State.CLAIMED, actor[:150], timezone.now()
    rec.save()
    return rec


@transaction.atomic
def recommendation_mark_applied(
    *, recommendation_id: int, actor: str, applied_at: datetime | None = None
) -> Recommendation:
    """The change is live; verification will compare the metric before and after ``applied_at``."""
    rec = _transition(recommendation_id, [State.ACTIVE, State.CLAIMED], "mark applied")
    now = timezone.now()
    applied_at = applied_at or now
    if applied_at > now:
        raise RecommendationStateError("cannot be in the future", field="applied_at")
    if now - applied_at > APPLIED_AT_MAX_AGE:
        raise RecommendationStateError(
            f"cannot be more than {APPLIED_AT_MAX_AGE.days} days ago: "
            "verification compares the days just before and after the change",
            field="applied_at",
        )
    rec.state, rec.applied_at, rec.state_changed_at = State.CLAIMED, applied_at, now
    rec.claimed_by = rec.claimed_by or actor[:150]
    rec.save()
    _change_record(rec, "applied", at=applied_at, actor=actor)
    return rec


def _change_record(rec: Recommendation, what: str, *, at: datetime, actor: str) -> None:
    """An applied (or reverted) recommendation is a change to the product: an anomaly on
    its endpoint soon after names it among the changes just before its onset
    (`telemetry.ChangeEvent`)."""
    labels = (rec.metric_series.labels or {}) if rec.metric_series else {}
    if not labels and rec.endpoint:
        labels = {"endpoint": rec.endpoint}
    telemetry_services.change_record_quietly(
        title=f"optimization {what}: {rec.title}"[:200],
        at=at,
        kind="config",
        labels=labels,
        source="optimization",
        created_by=actor,
    )


@transaction.atomic
def recommendation_dismiss(
    *, recommendation_id: int, actor: str, reason: str = ""
) -> Recommendation:
    """Not worth doing; stays dismissed while the cause persists."""
    rec = _transition(recommendation_id, [State.ACTIVE, State.CLAIMED], "dismiss")
    rec.state, rec.state_changed_at = State.DISMISSED, timezone.now()
    rec.note = f"dismissed by {actor}: {reason}".strip(": ")
    rec.save()
    return rec


@transaction.atomic
def recommendation_rollback(
    *, recommendation_id: int, actor: str, reason: str = ""
) -> Recommendation:
    """The applied change was reverted (following its rollback plan): the outcome is a failure.

    A reverted change saves nothing any more: ``realised_ms_saved_per_day`` is cleared (the
    figure measured before, if any, stays in ``realised`` under ``ms_saved_per_day_before_
    rollback``), so the overview's realised savings and calibration's impact factor do not
    count it. A rollback is an outcome on its own (``Recommendation.with_outcome``):
    one made before the verifier ran still counts as a failure.
    """
    rec = _transition(recommendation_id, [State.CLAIMED, State.SUCCEEDED], "roll back")
    if rec.applied_at is None:
        raise RecommendationStateError("was never marked applied", field="applied_at")
    now = timezone.now()
    history = dict(rec.realised or {})
    if rec.realised_ms_saved_per_day is not None:
        history["ms_saved_per_day_before_rollback"] = rec.realised_ms_saved_per_day
    history["rolled_back_at"] = now.isoformat()
    rec.realised, rec.realised_ms_saved_per_day = history, None
    rec.state, rec.rolled_back_at, rec.state_changed_at = State.FAILED, now, now
    rec.note = f"rolled back by {actor}: {reason}".strip(": ")
    rec.save()
    _change_record(rec, "rolled back", at=now, actor=actor)
    return rec


def _requests_per_day(rec: Recommendation, start: datetime, end: datetime) -> float | None:
    """Requests a day over the same traffic the metric series measures (None: not known).

    The metric is a per-request figure: an endpoint's series (``db.time.ms{endpoint=/v}``) is
    multiplied by that endpoint's requests, a global one (``db.time.ms{}``, when the endpoint
    has no series of its own) by all requests. Multiplying a global mean by one endpoint's
    rate gave a saving in no unit at all.
    """
    labels = (rec.metric_series.labels or {}) if rec.metric_series else {}
    endpoint = labels.get("endpoint")
    series = telemetry.series_get(
        "http.requests.rate", {"endpoint": endpoint} if endpoint else None
    )
    if series is None:
        if endpoint and endpoint == rec.endpoint and rec.evidence.get("requests_per_day"):
            return float(rec.evidence["requests_per_day"])
        return None
    values = telemetry.series_values(series.pk, start, end)[1]
    values = values[np.isfinite(values)]
    return float(values.mean() * 1440.0) if values.size else None


@transaction.atomic
def recommendation_verify(
    *,
    recommendation_id: int,
    now: datetime | None = None,
    window_days: float = 3.0,
    baseline_days: int = 28,
    give_up_days: float = 14.0,
) -> Recommendation:
    """Measure the realised impact of one applied recommendation and decide its state.

    The baseline is computed from data *before* ``applied_at`` only, so the change cannot make
    its own baseline look good. Inconclusive results wait for more data until ``give_up_days``.
    """
    now = now or timezone.now()
    rec = _transition(recommendation_id, [State.CLAIMED], "verify")
    if rec.applied_at is None or rec.metric_series_id is None:
        raise RecommendationStateError("needs applied_at and a metric series", field="applied_at")
    applied = rec.applied_at
    before_start = applied - timedelta(days=window_days)
    after_end = min(now, applied + timedelta(days=window_days))
    history_ts, history = telemetry.series_values(
        rec.metric_series_id, applied - timedelta(days=baseline_days), applied
    )
    after_ts, after = telemetry.series_values(rec.metric_series_id, applied, after_end)
    requests_per_day = _requests_per_day(rec, applied, after_end)
    if not np.isfinite(history).any():
        outcome_detail = {"outcome": INCONCLUSIVE, "reason": "no data before the change"}
        outcome = INCONCLUSIVE
        saved = None
    elif requests_per_day is None:
        scope = rec.metric_series.labels.get("endpoint") or "all endpoints"
        outcome_detail = {
            "outcome": INCONCLUSIVE,
            "reason": f"no request rate for the metric's scope ({scope}): the saving per day "
            "cannot be computed",
        }
        outcome = INCONCLUSIVE
        saved = None
    else:
        baseline = hour_of_week_baseline(history_ts, history)
        before = history_ts >= before_start.timestamp()
        impact = realised_impact(
            baseline=baseline,
            before_ts=history_ts[before],
            before_values=history[before],
            after_ts=after_ts,
            after_values=after,
            requests_per_day=requests_per_day,
            lower_is_better=rec.lower_is_better,
        )
        outcome, outcome_detail, saved = impact.outcome, impact.as_dict(), impact.saved_per_day
    rec.realised = jsonable(outcome_detail)
    if outcome == INCONCLUSIVE:
        if now - applied < timedelta(days=give_up_days):
            rec.save()
            return rec
        rec.state, rec.note = State.FAILED, "no conclusive data after the change"
    else:
        rec.state = State.SUCCEEDED if outcome == SUCCEEDED else State.FAILED
        rec.realised_ms_saved_per_day = saved
    rec.verified_at = rec.state_changed_at = now
    rec.save()
    return rec


def recommendations_verify(
    *, now: datetime | None = None, min_hours_after: float = 24.0
) -> dict[str, int]:
    """Verify every claimed recommendation applied at least ``min_hours_after`` ago."""
    now = now or timezone.now()
    due = Recommendation.objects.filter(
        state=State.CLAIMED,
        applied_at__lte=now - timedelta(hours=min_hours_after),
        metric_series__isnull=False,
    ).values_list("pk", flat=True)
    counts = {"checked": 0, "succeeded": 0, "failed": 0, "waiting": 0, "errors": 0}
    for pk in list(due):
        try:
            rec = recommendation_verify(recommendation_id=pk, now=now)
        except Exception as exc:  # one bad row must not stop the others' verification
            logger.exception("verification of recommendation %s failed", pk)
            Recommendation.objects.filter(pk=pk, state=State.CLAIMED).update(
                realised={"outcome": "error", "reason": f"{type(exc).__name__}: {exc}"[:500]}
            )
            counts["errors"] += 1
            continue
        counts["checked"] += 1
        key = {State.SUCCEEDED: "succeeded", State.FAILED: "failed"}.get(rec.state, "waiting")
        counts[key] += 1
    return counts
