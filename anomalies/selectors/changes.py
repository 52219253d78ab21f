"""The changes just before each anomaly: the first suspects of "what changed?"."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from datetime import timedelta

from telemetry.models import ChangeEvent
from telemetry.selectors import changes_between

from ..models import Anomaly

# How long before an onset a change is a suspect: a deploy's effect shows within minutes,
# a config push's within the half hour the root-cause window also reads.
CHANGE_LOOKBACK = timedelta(minutes=30)
# After the onset: the onset is estimated within a sampling step, and a deploy recorded
# when its pipeline finished can land a little after the traffic moved.
CHANGE_LOOKAHEAD = timedelta(minutes=2)
# Changes named per anomaly, the closest first.
MAX_CHANGES = 5


def changes_before(anomalies: Iterable[Anomaly]) -> dict[int, list[ChangeEvent]]:
    """For each anomaly, the changes that concern its series (`ChangeEvent.concerns`) from
    `CHANGE_LOOKBACK` before its onset to `CHANGE_LOOKAHEAD` after it, the closest to the
    onset first. One query for any number of anomalies."""
    anomalies = list(anomalies)
    out: dict[int, list[ChangeEvent]] = {a.pk: [] for a in anomalies}
    if not anomalies:
        return out
    onsets = [a.started_at for a in anomalies]
    changes = changes_between(min(onsets) - CHANGE_LOOKBACK, max(onsets) + CHANGE_LOOKAHEAD)
    if not changes:
        return out
    # By time, so each anomaly reads only its own window: a page of a thousand anomalies
    # over a week of a busy team's deploys is not a million comparisons.
    changes.sort(key=lambda c: c.at)
    times = [c.at for c in changes]
    for a in anomalies:
        lo = bisect_left(times, a.started_at - CHANGE_LOOKBACK)
        hi = bisect_right(times, a.started_at + CHANGE_LOOKAHEAD)
        near = [c for c in changes[lo:hi] if c.concerns(a.series.labels)]
        near.sort(key=lambda c: abs((a.started_at - c.at).total_seconds()))
        out[a.pk] = near[:MAX_CHANGES]
    return out


def change_text(change: ChangeEvent, onset) -> str:
    """`deploy checkout 1.4.2 (4 min before)`: how a page names a suspect."""
    minutes = (onset - change.at).total_seconds() / 60
    when = (
        f"{minutes:.0f} min before"
        if minutes >= 0.5
        else ("at the onset" if minutes > -0.5 else f"{-minutes:.0f} min after")
    )
    return f"{change.get_kind_display().lower()} {change.title} ({when})"


def incident_changes(incidents: list[dict]) -> dict[int, list[ChangeEvent]]:
    """For each incident of `incidents_in` (by its leading anomaly), the changes just before
    any of its listed members, the closest to the incident's start first: a deploy
    labelled with the endpoint it broke is named on the incident even when its leader is
    the database the endpoint overloaded. Two queries for any number of incidents."""
    members = Anomaly.objects.filter(
        pk__in={pk for i in incidents for pk in i["anomaly_ids"]}
    ).select_related("series")
    found = changes_before(members)
    out = {}
    for incident in incidents:
        union = {c.pk: c for pk in incident["anomaly_ids"] for c in found.get(pk, [])}
        start = incident["started_at"]
        out[incident["cause"]] = sorted(
            union.values(), key=lambda c: abs((start - c.at).total_seconds())
        )[:MAX_CHANGES]
    return out
