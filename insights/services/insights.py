"""Generate prioritised insights from every system's findings, and operators' actions on them."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from insights.engine import priority as pr
from insights.findings import OWN_SOURCES, Finding
from insights.models import Insight
from insights.sources import collect_other_systems


def _reference(insight: Insight) -> float | None:
    return insight.reference_value if insight.reference_value is not None else insight.key_value


def _novelty(previous: Insight | None, finding: Finding, now: datetime) -> tuple[pr.Part, float]:
    """(novelty part, how much the key figure moved on the change scale: >= 1 is material).

    Measured from the insight's reference value (its figure when first seen, dismissed
    or last moved materially), not from the previous run's: a figure drifting 2% an
    hour never moved "materially" from one hour to the next, yet tripled in three days.
    """
    current = finding.key_value if finding.key_value is not None else 0.0
    if previous is None:
        return pr.novelty(previous_value=None, current_value=current, days_since_first_seen=0), 1.0
    reference = _reference(previous)
    before = reference if reference is not None else current
    age_days = (now - previous.first_seen_at).total_seconds() / 86400
    shift = None
    if finding.key_material_earlier_s is not None:
        # A crossing date: only coming materially earlier is news (see crossing_moved).
        shift = pr.crossing_moved(
            reference_at=before,
            current_at=current,
            material_seconds=finding.key_material_earlier_s,
        )
    part = pr.novelty(
        previous_value=before, current_value=current, days_since_first_seen=age_days, moved=shift
    )
    moved = pr.novelty(
        previous_value=before, current_value=current, days_since_first_seen=math.inf, moved=shift
    ).value
    return part, moved


def insights_generate(*, now: datetime | None = None, since_days: int = 7) -> dict[str, int]:
    """Collect findings, score them, and upsert one insight per dedup key.

    A known finding is updated, not repeated: its figures, priority and last-seen time
    change and ``times_seen`` grows. A dismissed insight stays dismissed unless its key
    figure moved materially, in which case it is reopened as new.
    """
    if since_days < 1:
        raise ValueError("since_days must be at least 1")
    now = now or timezone.now()
    findings: list[Finding] = []
    for build in OWN_SOURCES.values():
        findings += build()
    others, status = collect_other_systems(since=now - timedelta(days=since_days))
    findings += others
    # One finding per key: when two say the same thing, keep the stronger.
    by_key: dict[str, Finding] = {}
    for f in findings:
        best = by_key.get(f.dedup_key)
        if best is None or f.impact.value * f.confidence.value > (
            best.impact.value * best.confidence.value
        ):
            by_key[f.dedup_key] = f
    created = updated = reopened = 0
    with transaction.atomic():
        existing = {
            i.dedup_key: i
            for i in Insight.objects.select_for_update().filter(dedup_key__in=list(by_key))
        }
        for key, f in by_key.items():
            previous = existing.get(key)
            novelty, moved = _novelty(previous, f, now)
            p = pr.priority(impact=f.impact, confidence=f.confidence, novelty=novelty)
            fields = {
                "category": f.category,
                "source": f.source,
                "title": f.title[:300],
                "body": f.body,
                "evidence": f.evidence,
                "priority": p.score,
                "impact": p.impact.value,
                "confidence": p.confidence.value,
                "novelty": p.novelty.value,
                "priority_explanation": p.explanation,
                "key_value": f.key_value,
                "last_seen_at": now,
            }
            if previous is None:
                Insight.objects.create(
                    dedup_key=key, first_seen_at=now, reference_value=f.key_value, **fields
                )
                created += 1
                continue
            for name, value in fields.items():
                setattr(previous, name, value)
            previous.times_seen += 1
            if moved >= 1.0:
                # Novelty is back to full for this change: later runs measure from here.
                previous.reference_value = f.key_value
            if previous.status == Insight.Status.DISMISSED and moved >= 1.0:
                previous.status = Insight.Status.NEW
                previous.status_changed_at = now
                previous.status_changed_by = "insights: key figure moved"
                reopened += 1
            previous.save()
            updated += 1
    return {
        "findings": len(by_key),
        "created": created,
        "updated": updated,
        "reopened": reopened,
        "sources_read": sum(1 for s in status.values() if s.endswith("findings")),
    }


def _set_status(insight: Insight, status: str, actor: str) -> Insight:
    with transaction.atomic():
        locked = Insight.objects.select_for_update().get(pk=insight.pk)
        if locked.status != status:
            locked.status = status
            locked.status_changed_at = timezone.now()
            locked.status_changed_by = actor[:150]
            fields = ["status", "status_changed_at", "status_changed_by"]
            if status == Insight.Status.DISMISSED:
                # Reopening measures the move from the figure the operator dismissed.
                locked.reference_value = locked.key_value
                fields.append("reference_value")
            locked.save(update_fields=fields)
    return locked


def insight_acknowledge(*, insight: Insight, actor: str) -> Insight:
    """An operator has seen it and will act; it stays listed but stops counting as new."""
    return _set_status(insight, Insight.Status.ACKNOWLEDGED, actor)


def insight_dismiss(*, insight: Insight, actor: str) -> Insight:
    """Not useful: hidden from the top list until its key figure moves materially
    from its value at dismissal (kept as the reference value)."""
    return _set_status(insight, Insight.Status.DISMISSED, actor)
