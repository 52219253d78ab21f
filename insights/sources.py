"""Findings from the other systems, read defensively through their selectors.

The other systems are built in parallel and may not exist, may not have migrated, or
may expose different reads over time. Each source is imported lazily and any failure
(missing module, missing function, missing table) skips that source and is reported,
so one system's absence never stops insights about the others. Nobody imports this
app; this module only reads.

The preferred contract for a system is one selector::

    insight_feed(*, since: datetime) -> list[dict]

each dict with ``category`` (forecast, experiment, recommendation, anomaly),
``subject`` (a stable id of the thing), ``title``, ``body``, ``effect`` (relative size,
0.25 = 25 %), ``confidence`` (0..1), optional ``key_value`` and ``evidence``. When a
system has no feed, a specific adapter reads its known selectors.
"""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from django.db import DatabaseError, transaction

from insights.engine import priority as pr
from insights.findings import Finding
from insights.models import Insight

logger = logging.getLogger(__name__)

SYSTEMS = ("forecasting", "anomalies", "personalization", "optimization")
CATEGORIES = {c.value for c in Insight.Category}
# A saving of an hour of request time a day scores impact 0.63 (1 - 1/e).
SAVING_SCALE_S = 3600.0


def _selectors(system: str) -> Any:
    return importlib.import_module(f"{system}.selectors")


def _num(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def feed_findings(system: str, items: Iterable[dict]) -> list[Finding]:
    """Turn ``insight_feed`` dicts into findings; malformed items are skipped, not fatal."""
    out = []
    for item in items:
        if not isinstance(item, dict):
            continue
        category = item.get("category")
        subject = item.get("subject")
        title = item.get("title")
        effect = _num(item.get("effect"))
        confidence = _num(item.get("confidence"))
        if category not in CATEGORIES or not subject or not title or effect is None:
            continue
        out.append(
            Finding(
                category=category,
                source=system,
                subject=(str(subject),),
                title=str(title)[:300],
                body=str(item.get("body") or title),
                impact=pr.impact_from_effect(effect, scale=0.25, what="relative effect"),
                confidence=pr.Part(
                    min(max(confidence or 0.0, 0.0), 1.0),
                    f"{system} reports confidence {confidence if confidence is not None else 0:.2f}",
                ),
                key_value=_num(item.get("key_value")) if "key_value" in item else effect,
                evidence=item.get("evidence") if isinstance(item.get("evidence"), dict) else {},
            )
        )
    return out


def optimization_findings(selectors: Any, since: datetime) -> list[Finding]:
    """Recommendations operators accepted, and whether their saving was realised."""
    qs = selectors.recommendation_queryset().filter(
        state__in=["claimed", "succeeded", "failed"], state_changed_at__gte=since
    )
    out = []
    for rec in qs[:50]:
        predicted = (rec.predicted_ms_saved_per_day or 0.0) + (
            rec.predicted_db_ms_saved_per_day or 0.0
        )
        realised = rec.realised_ms_saved_per_day
        if rec.state == "claimed":
            title = f"Accepted: {rec.title}"
            body = (
                f"An operator accepted “{rec.title}”; it is predicted to save "
                f"{predicted / 1000:.0f} s of request time a day. Its result is not measured yet."
            )
            seconds, what, key = predicted / 1000, "predicted saving s/day", predicted
        else:
            ratio = (realised or 0.0) / predicted if predicted > 0 else 0.0
            title = f"{'Realised' if rec.state == 'succeeded' else 'Not realised'}: {rec.title}"
            body = (
                f"“{rec.title}” was predicted to save {predicted / 1000:.0f} s a day and "
                f"measured {(realised or 0.0) / 1000:.0f} s a day after the change "
                f"({ratio:.0%} of the prediction)."
            )
            if rec.state == "succeeded":
                seconds, what = (realised or 0.0) / 1000, "realised saving s/day"
            else:
                seconds, what = (predicted - (realised or 0.0)) / 1000, "missed saving s/day"
            key = realised or 0.0
        out.append(
            Finding(
                category=Insight.Category.RECOMMENDATION,
                source="optimization",
                subject=(rec.state, rec.dedup_key),
                title=title[:300],
                body=body,
                impact=pr.impact_from_effect(seconds, scale=SAVING_SCALE_S, what=what),
                confidence=pr.Part(
                    min(max(rec.confidence, 0.0), 1.0), f"optimization confidence {rec.confidence}"
                ),
                key_value=key,
                evidence={"recommendation_id": rec.pk, "state": rec.state},
            )
        )
    return out


# Adapters for systems without ``insight_feed``: system -> reader(selectors, since).
ADAPTERS: dict[str, Callable[[Any, datetime], list[Finding]]] = {
    "optimization": optimization_findings,
}


def collect_other_systems(*, since: datetime) -> tuple[list[Finding], dict[str, str]]:
    """Findings from every other system that is there; and per system what happened."""
    findings: list[Finding] = []
    status: dict[str, str] = {}
    for system in SYSTEMS:
        try:
            selectors = _selectors(system)
        except ImportError:
            status[system] = "not installed"
            continue
        feed = getattr(selectors, "insight_feed", None)
        if feed is None and system not in ADAPTERS:
            status[system] = "no insight feed"
            continue
        try:
            # A savepoint: a failing query (a table not migrated yet) must not poison
            # the caller's transaction.
            with transaction.atomic():
                if feed is not None:
                    found = feed_findings(system, feed(since=since))
                else:
                    found = ADAPTERS[system](selectors, since)
        except (AttributeError, TypeError, LookupError, DatabaseError) as exc:
            logger.warning("insights: source %s skipped: %s", system, exc)
            status[system] = f"skipped: {type(exc).__name__}"
            continue
        findings += found
        status[system] = f"{len(found)} findings"
    return findings, status
