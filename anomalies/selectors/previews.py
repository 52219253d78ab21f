"""Previews before saving: the series a pattern names, where a rule would have fired,
what a silence or an inhibition rule would hold."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
from django.utils import timezone

from telemetry.models import Series
from telemetry.selectors import series_points, to_datetime

from ..engine import ThresholdRule
from ..engine.rule_preview import RulePreview, preview_rule
from ..matching import series_matches
from ..models import (
    SEVERITY_ORDER,
    InhibitionRule,
)
from .recent import anomalies_matching, anomalies_open


def series_matching(pattern: str, labels: dict, *, exact_labels: bool = False) -> list[Series]:
    """Every series a pattern and labels name, by name then labels, as scoring, silences
    and playbooks match them (`matching.series_matches`): one pass over names and labels."""
    return [
        s
        for s in Series.objects.only("pk", "name", "labels", "labels_key")
        .order_by("name", "labels_key")
        .iterator()
        if series_matches(pattern, labels, s.name, s.labels, exact_labels=exact_labels)
    ]


# How many matching series a preview names; the count covers them all.
PREVIEW_NAMES = 20


def silence_preview(*, series_pattern: str, labels: dict, exact_labels: bool = False) -> dict:
    """What a silence with this pattern and these labels would cover, before it exists:
    the series it matches (a count and the first names) and their open anomalies.

    One pass over the series' names and labels, not their samples: a typo in a pattern
    shows as 0 series at once.
    """
    matched = series_matching(series_pattern, labels, exact_labels=exact_labels)
    return {
        "series": len(matched),
        "series_names": [str(series) for series in matched[:PREVIEW_NAMES]],
        "open_anomalies": anomalies_matching(
            anomalies_open(), series_pattern, labels, exact_labels=exact_labels
        ),
    }


# Pairs an inhibition rule's preview lists at most; the count covers them all.
PREVIEW_PAIRS = 100


def inhibition_rule_preview(rule: InhibitionRule) -> dict:
    """What a rule with these fields would tie, before it exists: the series its source
    and its target name (a count and the first names: a typo shows as 0 at once), and
    the ongoing anomalies it would hold back now, each with its source (for a playbook
    that paged the source, at least as severe as the target)."""
    sources = series_matching(rule.source_series, rule.source_labels)
    targets = series_matching(rule.target_series, rule.target_labels)
    ongoing = [a for a in anomalies_open() if a.ended_at is None]
    by_key = rule.group_sources(ongoing, lambda a: a.series)
    pairs = []
    for a in ongoing:
        if not rule.targets(a.series):
            continue
        for c in by_key.get(rule.equal_key(a.series), []):
            if (
                c.series_id != a.series_id
                and SEVERITY_ORDER[a.severity] <= SEVERITY_ORDER[c.severity]
            ):
                pairs.append({"anomaly": a.pk, "held_back_behind": c.pk})
                break
    return {
        "source_series": len(sources),
        "source_names": [str(s) for s in sources[:PREVIEW_NAMES]],
        "target_series": len(targets),
        "target_names": [str(s) for s in targets[:PREVIEW_NAMES]],
        "would_hold_back": len(pairs),
        "pairs": pairs[:PREVIEW_PAIRS],
    }


# A rule preview reads every matching series' history: at most this many series (the
# first by name), and at most this many days; each series lists its newest episodes.
RULE_PREVIEW_MAX_SERIES = 50
RULE_PREVIEW_MAX_DAYS = 30
RULE_PREVIEW_MAX_EPISODES = 100
# And it stops once it has read this many points: a month of one-minute points on 50
# series is 2.2 million rows and 11-13 s on PostgreSQL (fetching dominates), too long
# for a request; the series not read are counted as capped.
RULE_PREVIEW_MAX_POINTS = 1_000_000
# History read before the window, beyond the rule's duration, so that a breach going on
# at the window's start is measured from its real start (see `rule_preview`).
_PREVIEW_MARGIN = timedelta(days=1)


def rule_preview(
    *,
    series_name: str,
    labels: dict,
    above: float | None,
    below: float | None,
    min_duration_seconds: int = 0,
    days: int = 7,
    now: datetime | None = None,
) -> dict:
    """Where a detection rule would have fired over the last `days`, before it is saved.

    The series are those live scoring applies the rule to (`matching.series_matches`, as
    `services.scoring` matches them) and the firing is the engine's own evaluation
    (`engine.rule_preview`), so the preview cannot disagree with the job. History comes
    from telemetry's `series_points`: raw samples, and hourly rollups for any part older
    than the raw retention (the answer says which). A breach going on when the window
    opens is measured from before it: the history is read from `min_duration_seconds`
    (capped at the longest window) plus a day before the window.
    """
    now = now or timezone.now()
    since = now - timedelta(days=days)
    lookback = min(timedelta(seconds=min_duration_seconds), timedelta(days=RULE_PREVIEW_MAX_DAYS))
    read_from = since - lookback - _PREVIEW_MARGIN
    rule = ThresholdRule(
        name="preview", above=above, below=below, min_duration_seconds=min_duration_seconds
    )
    matched = series_matching(series_name, labels)
    rows = []
    sources: set[str] = set()
    raw_from = rollup_step = None
    read = 0
    for s in matched[:RULE_PREVIEW_MAX_SERIES]:
        if read >= RULE_PREVIEW_MAX_POINTS:
            break
        points = series_points(s.pk, start=read_from, end=now + timedelta(microseconds=1))
        read += points.ts.size
        raw_from, coarse = points.raw_from, points.rollup_step
        if coarse is not None:
            rollup_step = coarse
        preview = preview_rule(
            points.ts,
            points.values,
            rule,
            since=since.timestamp(),
            coarse_until=raw_from.timestamp() if coarse is not None else None,
            coarse_step=coarse,
            limit=RULE_PREVIEW_MAX_EPISODES,
        )
        in_window = int((points.ts >= since.timestamp()).sum())
        if in_window:
            sources.add(points.source)
        rows.append(_rule_preview_row(s, preview, in_window, points.source))
    rows.sort(key=lambda r: -r["count"])  # stable: the noisiest first, then by name
    answer = {
        "since": since,
        "until": now,
        "days": days,
        "series_matched": len(matched),
        "series_previewed": len(rows),
        "capped": len(matched) > len(rows),
        "count": sum(r["count"] for r in rows),
        "series_firing": sum(r["count"] > 0 for r in rows),
        # Each series says where its points came from; this says whether any were rollups.
        "source": "rollup+raw" if any("rollup" in x for x in sources) else "raw",
        "raw_from": raw_from,
        "rollup_step_seconds": rollup_step,
        "series": rows,
    }
    if answer["capped"]:
        answer["note"] = (
            f"{len(matched)} series match; only the first {len(rows)} by name were previewed "
            f"(at most {RULE_PREVIEW_MAX_SERIES} series and about {RULE_PREVIEW_MAX_POINTS:,} "
            "points): narrow the pattern or the labels, or shorten the window, to see the others"
        )
    return answer


def _rule_preview_row(series: Series, preview: RulePreview, points: int, source: str) -> dict:
    return {
        "series_id": series.pk,
        "series": str(series),
        "points": points,
        "source": source if points else "raw",
        "step_seconds": preview.step_seconds if np.isfinite(preview.step_seconds) else None,
        "breaching_points": preview.breaching_points,
        "firing_points": preview.firing_points,
        "count": preview.count,
        "episodes": [
            {
                "started_at": to_datetime(e.started_at),
                "start_known": e.start_known,
                "fired_at": to_datetime(e.fired_at),
                "ended_at": to_datetime(e.ended_at),
                "ongoing": e.ongoing,
                "duration_seconds": e.ended_at - e.started_at,
                "peak": e.peak,
                "points": e.points,
            }
            for e in preview.episodes
        ],
    }
