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
from django.utils import timezone

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


def _clip01(x: float) -> float:
    return min(max(x, 0.0), 1.0)


def forecasting_findings(selectors: Any, since: datetime) -> list[Finding]:
    """Current growth rates and threshold crossings from ``forecasting.insights_current``."""
    now = timezone.now()
    out = []
    for row in selectors.insights_current()[:50]:
        target = getattr(row.target, "name", str(row.target_id))
        subject = (row.kind, target, str(row.horizon_days))
        material = None
        if row.kind == "growth" and _num(row.value) is not None:
            value = float(row.value)
            if row.confidence is not None:
                confidence = pr.Part(
                    _clip01(row.confidence), f"forecast confidence {row.confidence:.2f}"
                )
            elif _num(row.lower) is not None and _num(row.upper) is not None and value:
                width = (row.upper - row.lower) / (2 * abs(value))
                confidence = pr.Part(_clip01(1 - width), f"interval half-width {width:.0%} of rate")
            else:
                confidence = pr.Part(0.0, "no interval")
            impact = pr.impact_from_effect(value, scale=0.25, what="growth rate")
            key = value
        elif row.kind == "threshold_crossing" and row.expected_at is not None:
            days = max((row.expected_at - now).total_seconds() / 86400, 0.5)
            impact = pr.impact_from_effect(7 / days, scale=1.0, what="weeks⁻¹ until crossing")
            if row.confidence is not None:
                confidence = pr.Part(
                    _clip01(row.confidence), f"forecast confidence {row.confidence:.2f}"
                )
            elif row.earliest_at and row.latest_at:
                spread = (row.latest_at - row.earliest_at).total_seconds() / 86400
                confidence = pr.Part(
                    _clip01(1 - spread / (2 * days)), f"date range {spread:.1f} days"
                )
            else:
                confidence = pr.Part(0.0, "no date range")
            # Keyed by the crossing's date, what an operator dismisses; the days left shrink
            # on their own and reopened a dismissed crossing each time they halved.
            key = row.expected_at.timestamp()
            material = pr.crossing_material_seconds(_num(row.horizon_days) or 0.0)
        else:
            continue
        out.append(
            Finding(
                category=Insight.Category.FORECAST,
                source="forecasting",
                subject=subject,
                title=str(row.summary)[:300],
                body=str(row.summary),
                impact=impact,
                confidence=confidence,
                key_value=key,
                evidence={
                    "business_insight_id": row.pk,
                    "kind": row.kind,
                    "target": target,
                    "horizon_days": row.horizon_days,
                    **(
                        {"expected_at": row.expected_at.isoformat()} if material is not None else {}
                    ),
                },
                key_material_earlier_s=material,
            )
        )
    return out


def personalization_findings(selectors: Any, since: datetime) -> list[Finding]:
    """Significant results of running experiments (Holm-corrected or sequential)."""
    out = []
    for experiment in selectors.experiments_running()[:50]:
        for result in selectors.experiment_latest_results(experiment):
            if not result.is_primary or result.srm_mismatch:
                continue  # a sample-ratio mismatch makes the lift untrustworthy
            for c in selectors.result_summary(result)["comparisons"]:
                p = _num(c.get("p_value_holm"))
                lift = _num(c.get("relative_lift"))
                if lift is None or p is None or not (p < 0.05 or c.get("sequential_significant")):
                    continue
                out.append(
                    Finding(
                        category=Insight.Category.EXPERIMENT,
                        source="personalization",
                        subject=(experiment.key, str(c["variant"]), result.metric),
                        title=(
                            f"Experiment “{experiment.name}”: {c['variant']} "
                            f"{'lifts' if lift > 0 else 'lowers'} {result.metric} by {abs(lift):.1%}"
                        )[:300],
                        body=(
                            f"In “{experiment.name}”, variant {c['variant']} changes "
                            f"{result.metric} by {lift:+.1%} against control "
                            f"(Holm-corrected p={p:.3g}; chance to beat control "
                            f"{_num(c.get('chance_to_beat_control')) or 0:.0%})."
                        ),
                        impact=pr.impact_from_effect(lift, scale=0.1, what="relative lift"),
                        confidence=pr.confidence_from_p_value(p),
                        key_value=lift,
                        evidence={"experiment": experiment.key, "comparison": c},
                    )
                )
    return out


def anomalies_findings(selectors: Any, since: datetime) -> list[Finding]:
    """Series that keep having real anomalies: a recurring problem, not a one-off."""
    by_series: dict[int, list] = {}
    for a in selectors.anomalies_recent(since=since)[:500]:
        if a.status != "false_positive":
            by_series.setdefault(a.series_id, []).append(a)
    out = []
    for anomalies in by_series.values():
        if len(anomalies) < 2:
            continue
        series = anomalies[0].series
        critical = sum(1 for a in anomalies if a.severity == "critical")
        causes: dict[str, int] = {}
        for a in anomalies:
            first = next(iter(a.causes.all()), None)
            if first is not None:
                causes[str(first.series)] = causes.get(str(first.series), 0) + 1
        cause = max(causes, key=causes.get) if causes else None
        votes = [len(a.methods or []) for a in anomalies]
        out.append(
            Finding(
                category=Insight.Category.ANOMALY,
                source="anomalies",
                subject=("recurring", str(series)),
                title=f"{series} had {len(anomalies)} anomalies since {since:%Y-%m-%d}"[:300],
                body=(
                    f"{len(anomalies)} anomalies ({critical} critical) on {series}"
                    + (
                        f"; the most frequent first root-cause candidate is {cause}."
                        if cause
                        else "."
                    )
                ),
                impact=pr.impact_from_effect(
                    len(anomalies) + 2 * critical, scale=5.0, what="anomalies (critical count x3)"
                ),
                confidence=pr.confidence_from_count(sum(votes), half_at=len(anomalies) * 2),
                key_value=float(len(anomalies)),
                evidence={"anomaly_ids": [a.pk for a in anomalies][:50], "top_cause": cause},
            )
        )
    return out


# Adapters for systems without ``insight_feed``: system -> reader(selectors, since).
ADAPTERS: dict[str, Callable[[Any, datetime], list[Finding]]] = {
    "forecasting": forecasting_findings,
    "anomalies": anomalies_findings,
    "personalization": personalization_findings,
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
        except (AttributeError, TypeError, ValueError, LookupError, DatabaseError) as exc:
            logger.warning("insights: source %s skipped: %s", system, exc)
            status[system] = f"skipped: {type(exc).__name__}"
            continue
        findings += found
        status[system] = f"{len(found)} findings"
    return findings, status
