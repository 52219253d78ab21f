"""From per-point scores to anomalies: open at an alert, extend while abnormal, close on recovery.

The job runs every minute and usually sees one new point per series, so everything an
episode needs from earlier runs (the calm points counted towards recovery, whether a
dismissed pattern is being suppressed, the recent residuals an onset is traced back
through) is carried in `DetectorState.episode`. Without it a run that saw one point could
never count three calm ones, and an anomaly on a one-minute job stayed open for good.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.db.models import F, Max
from django.utils import timezone

from phase3.bulk import bulk_update_rows
from telemetry.models import Series
from telemetry.selectors import to_datetime

from ..engine import COLLAPSE, FAMILIES, STALLED, DetectorConfig, pattern
from ..engine.calibration import score_from_surprisal
from ..engine.feedback import RECURRENCE, Fingerprint, is_dismissed, is_recurrence
from ..engine.root_cause import estimate_onset
from ..engine.severity import classify_severity
from ..models import SEVERITY_ORDER, Anomaly, DetectorState, DismissedPattern

# An anomaly is over after this many consecutive points that are not abnormal any more.
RECOVERY_POINTS = 3
# How far a point must still be from normal, in scale widths, for a vote to keep its
# anomaly going. The views that find sustained shifts (the short and medium averages, the
# level-shift and variance statistics, the forest's windows) remember the incident after
# the series is back: on the demo's hour-long database outage they voted for three more
# hours with every value within one scale width of normal, so its 23 effects stayed
# "ongoing", got paged when the cause ended, and MTTR read four hours. "Normal" is the
# expected value now, or the one when the anomaly opened: the expected value follows an
# outage that goes on (a level shift), and the outage must not end because it did.
# Operator rules, a stalled series and a collapse are judged on the point and always count.
EXTEND_Z = 2.0
# ... and, measured from the expected value when it opened, this share of its peak: the
# demo's database connections, back to normal after the outage, then rose with the
# afternoon's traffic past two scale widths of the morning's expected value.
PEAK_SHARE = 1 / 3
_POINT_FAMILIES = ("rules", STALLED, COLLAPSE)
# Points kept per anomaly for its chart.
MAX_POINTS = 500
# Residuals kept across runs for tracing an onset back (a drift that crept up for two
# hours of five-minute points before it alerted).
ONSET_TAIL = 24
# An anomaly that has recovered stays open for this long before it closes, so that a
# series that breaches again a few minutes after recovering ("flapping") is one incident,
# one page and no "resolved" in between (Prometheus' `keep_firing_for`, Datadog's recovery
# hysteresis): this many of the series' steps, and at least `QUIET_MIN_SECONDS`.
QUIET_STEPS = 3
QUIET_MIN_SECONDS = 900.0
# A point under the alert level opens an anomaly as the recurrence of a confirmed incident
# when its evidence still ranks this high ("still abnormal?", 0.7 = the top 1.8 % of the
# series' history) and it is nearly as large (engine.feedback). A repeated outage of an hour
# ranks at 0.74-0.83 the second time; routine points of a series are far below.
RECURRENCE_SCORE = 0.7


def quiet_seconds(step_seconds: float | None) -> float:
    """How long a recovered anomaly waits for a relapse before it closes.

    Sized by the series' step, as the silence check is (`engine.pattern.SILENT_STEPS`):
    three points of an hourly series are three hours, of a one-minute series three
    minutes, too short to tell a recovery from a blip, hence the 15-minute floor.
    `settings.ANOMALIES_QUIET_SECONDS` replaces it for every series (0: close at once).
    """
    fixed = getattr(settings, "ANOMALIES_QUIET_SECONDS", None)
    if fixed is not None:
        return max(float(fixed), 0.0)
    step = step_seconds if step_seconds and np.isfinite(step_seconds) else 0.0
    return max(QUIET_STEPS * step, QUIET_MIN_SECONDS)


@dataclass(frozen=True)
class Feedback:
    """What operators said about the run's series, by series id."""

    # Dismissed patterns (DismissedPattern id, fingerprint): a match is suppressed.
    dismissed: dict[int, list[tuple[int, Fingerprint]]] = field(default_factory=dict)
    # Confirmed incidents' fingerprints: a near-alert match opens an anomaly.
    confirmed: dict[int, list[Fingerprint]] = field(default_factory=dict)
    # A series' one unanswered incident (engine.feedback.unanswered_incident): the same,
    # for the first anomaly the run opens on the series only.
    unanswered: dict[int, Fingerprint] = field(default_factory=dict)


@dataclass
class ScoreRun:
    """Counts of one scoring run (stored in JobRun.counts by the task)."""

    series: int = 0
    points: int = 0
    opened: int = 0
    updated: int = 0
    closed: int = 0
    suppressed: int = 0
    responses: int = 0
    # Anomalies whose responses an operator's silence held back in this run.
    silenced: int = 0
    touched: set[int] = field(default_factory=set)
    opened_ids: set[int] = field(default_factory=set)
    # Anomalies opened, extended or closed in this run, written together by
    # `save_anomalies` (keyed by identity: new ones have no primary key yet).
    pending: dict[int, Anomaly] = field(default_factory=dict)

    def write(self, a: Anomaly) -> None:
        self.pending[id(a)] = a

    def counts(self) -> dict:
        return {
            "series": self.series,
            "points": self.points,
            "opened": self.opened,
            "updated": self.updated,
            "closed": self.closed,
            "suppressed": self.suppressed,
            "responses": self.responses,
            "silenced": self.silenced,
        }


# What the job writes. Status only moves open/acknowledged -> resolved on recovery, and the
# job holds the row locks of the anomalies it loaded (`open_anomalies`), so an operator's
# acknowledgement or dismissal waits for the run and is never overwritten by it.
JOB_FIELDS = (
    "last_seen_at",
    "ended_at",
    "recovered_at",
    "status",
    "severity",
    "peak_score",
    "peak_surprisal",
    "peak_z",
    "observed",
    "expected",
    "methods",
    "rules_fired",
    "votes",
    "points",
    "updated_at",
)


def open_anomalies(series: list[Series]) -> list[Anomaly]:
    """The ongoing anomaly of each of these series (at most one each), locked, in one query.

    Locked because the run rewrites them: an operator who acknowledged or dismissed one
    while the run held a stale copy would otherwise have the change silently undone.
    """
    return list(
        Anomaly.objects.select_for_update(of=("self",))
        .filter(series__in=series, ended_at__isnull=True)
        .select_related("series")
    )


def save_anomalies(run: ScoreRun) -> None:
    """Write every anomaly the run touched: one INSERT for the new, one UPDATE for the rest."""
    pending = list(run.pending.values())
    run.pending = {}
    if not pending:
        return
    stamp = timezone.now()
    for a in pending:
        a.updated_at = stamp
    new = [a for a in pending if a.pk is None]
    old = [a for a in pending if a.pk is not None]
    bulk_update_rows(Anomaly, old, JOB_FIELDS)
    Anomaly.objects.bulk_create(new, batch_size=500)
    run.updated += sum(1 for a in old if a.ended_at is None and a.pk not in run.touched)
    run.opened_ids.update(a.pk for a in new)
    run.touched.update(a.pk for a in pending)


def _finite(x: float) -> float | None:
    """JSON has no NaN (PostgreSQL refuses it in a JSON column): a missing value is null."""
    x = float(x)
    return x if np.isfinite(x) else None


def _tail(episode: dict) -> tuple[np.ndarray, np.ndarray]:
    ts = np.asarray(episode.get("tail_ts") or [], dtype=float)
    z = np.asarray([np.nan if v is None else v for v in episode.get("tail_z") or []], float)
    return (ts, z) if ts.size == z.size else (np.empty(0), np.empty(0))


def track_episodes(
    s: Series,
    row: int,
    result,
    ts_block: np.ndarray,
    value_block: np.ndarray,
    cfg: DetectorConfig,
    feedback: Feedback,
    current: Anomaly | None,
    episode: dict,
    run: ScoreRun,
    *,
    quiet: float = 0.0,
    rule_severity: dict[str, str] | None = None,
) -> dict:
    """Walk this series' new points: open, extend and close its anomaly; returns the episode.

    An anomaly has recovered after `RECOVERY_POINTS` calm points, but closes only once
    `quiet` seconds (`quiet_seconds`) have passed since without a point that would open
    an anomaly; such a point within them resumes it. Its `ended_at` is still the recovery.
    `rule_severity` is the severity operators gave this series' rules, by rule name ("" for
    a rule given none).
    """
    floors = rule_severity or {}
    n = int(np.isfinite(ts_block[row]).sum())
    ts, values = ts_block[row, :n], value_block[row, :n]
    expected, scale = result.expected[row, :n], result.scale[row, :n]
    families = {f: v[row, :n] for f, v in result.surprisal.items()}
    # Reported beside the families (it is part of the pattern family's evidence): operators
    # see "stalled" among the methods, and severity does not ask a stopped series for size.
    families[STALLED] = result.stalled[row, :n]
    # Likewise "collapse": its size in residual scales understates a fall to 1 % (collapse.py).
    families[COLLAPSE] = result.collapsed[row, :n]
    voting = result.any_vote()[row, :n]
    total = result.total[row, :n]
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (values - expected) / scale
    alert = result.scores[row, :n] >= cfg.alert_score
    with np.errstate(invalid="ignore"):
        off = ~(np.abs(z) < EXTEND_Z)  # NaN (a missing value) counts as off
    on_point = np.logical_or.reduce([families[f] >= cfg.vote_surprisal for f in _POINT_FAMILIES])
    base = _baseline(episode, current)

    def abnormal(i: int) -> bool:
        """Whether point i keeps the open anomaly going (`EXTEND_Z`)."""
        if alert[i] or on_point[i] or (voting[i] and off[i]):
            return True
        if not voting[i]:
            return False
        if base is None:  # opened before the baseline was kept: any vote, as then
            return True
        # Still out the way it went, by a share of its peak: a seasonal series' own daily
        # rise since the onset is not the incident going on.
        out = (values[i] - base[0]) * current.direction
        return out >= max(
            EXTEND_Z * base[1], PEAK_SHARE * (current.observed - base[0]) * current.direction
        )

    tail_ts, tail_z = _tail(episode)
    trace_ts, trace_z = np.concatenate([tail_ts, ts]), np.concatenate([tail_z, z])
    calm, recovered = _held(episode, current)
    suppressing = bool(episode.get("suppressing", False))
    confirmed = feedback.confirmed.get(s.pk, [])
    vouched = [feedback.unanswered[s.pk]] if s.pk in feedback.unanswered else []

    def candidate_at(i: int) -> tuple[Fingerprint, bool] | None:
        """The point's fingerprint and whether it recurs, if it would open an anomaly."""
        if not (alert[i] or (voting[i] and result.combined[row, i] >= RECURRENCE_SCORE)):
            return None
        methods = frozenset(f for f, v in families.items() if v[i] >= cfg.vote_surprisal)
        finite_z = float(z[i]) if np.isfinite(z[i]) else 0.0
        candidate = Fingerprint(
            direction=1 if finite_z >= 0 else -1, peak_z=abs(finite_z), methods=methods
        )
        # Only said of a point under the alert level: one above it opens anyway.
        recurs = not alert[i] and is_recurrence(candidate, confirmed + vouched)
        return (candidate, recurs) if alert[i] or recurs else None

    for i in range(n):
        if current is not None:
            if recovered is None and abnormal(i):
                calm = 0
                _extend(
                    current, i, ts, values, expected, scale, result, row, families, total, z, floors
                )
            elif recovered is not None and (abnormal(i) or candidate_at(i) is not None):
                # A relapse within the quiet period: the same incident goes on, with no
                # "resolved" and no new page between (it used to flap). Any abnormal point
                # counts, not only one that would open an anomaly: inside the alert pause
                # a burst of variance at an unchanged mean scores under the alert level,
                # and six hours of it were an anomaly of its first two.
                calm, recovered = 0, None
                _extend(
                    current, i, ts, values, expected, scale, result, row, families, total, z, floors
                )
            else:
                calm += 1
                if calm >= RECOVERY_POINTS and recovered is None:
                    recovered = float(ts[i])
                if recovered is not None and ts[i] - recovered >= quiet:
                    _close(current, to_datetime(recovered), run)
                    current, calm, recovered = None, 0, None
            continue
        if suppressing:
            # A dismissed episode stays quiet while it lasts, but each of its alert-level
            # points is judged again: a dismissed backup bump that grows into an outage
            # must open an anomaly, not be swallowed as part of the bump.
            suppressing = bool(voting[i] or alert[i])
            if not alert[i]:
                continue
        found = candidate_at(i)
        if found is None:
            continue
        candidate, recurs = found
        dismissed = feedback.dismissed.get(s.pk, [])
        matches = [pk for pk, fp in dismissed if is_dismissed(candidate, [fp])]
        if matches:
            if not suppressing:  # counted once per suppressed episode
                DismissedPattern.objects.filter(pk=matches[0]).update(
                    suppressed_count=F("suppressed_count") + 1
                )
                run.suppressed += 1
            suppressing = True
            continue
        suppressing = False
        onset = estimate_onset(trace_ts, trace_z, i + tail_ts.size)
        current = Anomaly(
            series=s,
            started_at=to_datetime(onset),
            detected_at=to_datetime(ts[i]),
            last_seen_at=to_datetime(ts[i]),
            peak_score=0.0,
            peak_surprisal=0.0,
            peak_z=0.0,
            direction=candidate.direction,
            observed=_finite(values[i]) or 0.0,
            expected=_finite(expected[i]) or 0.0,
        )
        base = (
            (float(expected[i]), float(scale[i])) if np.isfinite(expected[i] * scale[i]) else None
        )
        if recurs:
            # Reported among the methods, so operators see why it opened under the alert level.
            current.votes = {RECURRENCE: round(float(total[i]), 3)}
        _extend(current, i, ts, values, expected, scale, result, row, families, total, z, floors)
        run.opened += 1
        calm = 0
        # Spent by its recurrence, or no longer the series' one incident: either way the
        # next anomaly of this run is judged as the next run would judge it.
        vouched = []
    if current is not None:
        # Shown as "recovering" while it waits out its quiet period (the episode keeps the
        # same moment for the job; this is the copy operators can list and filter).
        current.recovered_at = None if recovered is None else to_datetime(recovered)
        run.write(current)
    return {
        "calm": calm,
        # The anomaly the calm points belong to (its detection time: a new one has no id
        # yet), and when it recovered, if it is waiting out its quiet period.
        "anomaly": current.detected_at.timestamp() if current is not None else None,
        "recovered_at": recovered,
        # What was expected when it opened, and the scale then: "back to normal" (EXTEND_Z).
        "baseline": list(base) if current is not None and base is not None else None,
        "suppressing": suppressing,
        "tail_ts": trace_ts[-ONSET_TAIL:].tolist(),
        "tail_z": [_finite(round(float(v), 4)) for v in trace_z[-ONSET_TAIL:]],
    }


def _baseline(episode: dict, current: Anomaly | None) -> tuple[float, float] | None:
    """(expected value, scale) when the series' open anomaly opened, if kept for it."""
    if current is None or not _owns(episode, current):
        return None
    kept = episode.get("baseline")
    return (float(kept[0]), float(kept[1])) if kept else None


def _owns(episode: dict, current: Anomaly) -> bool:
    """Whether the episode was counted for `current` (by its detection time)."""
    owner = episode.get("anomaly", current.detected_at.timestamp())
    return owner is not None and abs(owner - current.detected_at.timestamp()) <= 1e-3


def _held(episode: dict, current: Anomaly | None) -> tuple[int, float | None]:
    """(calm points, recovery time or None) carried over for the series' open anomaly.

    Only if they were counted for that anomaly: one closed meanwhile (by an operator, or
    on the clock while its series sent nothing) leaves counts that mean nothing for the
    next. Episodes written before the anomaly was recorded in them keep their calm count.
    """
    if current is None or not _owns(episode, current):
        return 0, None
    recovered = episode.get("recovered_at")
    return int(episode.get("calm", 0)), None if recovered is None else float(recovered)


def close_recovered(
    silent: list[tuple[Series, DetectorState]],
    now: datetime,
    open_now: dict[int, Anomaly],
    run: ScoreRun,
) -> None:
    """Close the recovered anomalies of series that sent nothing, once the quiet period is over.

    Counted on the clock: without new points `track_episodes` never sees the period end,
    and an anomaly that recovered just before its exporter stopped stayed open for good.
    """
    for s, st in silent:
        a = open_now.get(s.pk)
        if a is None:
            continue
        _, recovered = _held(st.episode or {}, a)
        if recovered is not None and now.timestamp() - recovered >= quiet_seconds(st.step_seconds):
            _close(a, to_datetime(recovered), run)
            del open_now[s.pk]


def _extend(
    a: Anomaly, i, ts, values, expected, scale, result, row, families, total, z, floors
) -> None:
    """Fold point i into the anomaly (peak, methods, points), then refresh its severity.

    `floors` maps a rule's name to the severity its operator gave it: the anomaly is at
    least that severe once the rule has fired in it. A rule given none ("") is judged on
    improbability, as without a floor; a name not there (renamed, deleted) counts neither.
    """
    score = float(result.combined[row, i])
    # Never backwards: a silence is seen "now", and data that comes back may be backfilled.
    a.last_seen_at = max(a.last_seen_at, to_datetime(ts[i]))
    if score >= a.peak_score:
        a.peak_score = score
        a.peak_surprisal = float(total[i])
        if np.isfinite(values[i]) and np.isfinite(expected[i]):
            a.observed, a.expected = float(values[i]), float(expected[i])
    if np.isfinite(z[i]) and abs(z[i]) > a.peak_z:
        a.peak_z = float(abs(z[i]))
    votes = dict(a.votes)
    for f, v in families.items():
        votes[f] = max(votes.get(f, 0.0), round(float(v[i]), 3))
    a.votes = votes
    a.methods = sorted(f for f, v in votes.items() if v >= result.vote_surprisal)
    fired = result.rules_fired[row].get(i, ()) if result.rules_fired else ()
    if not set(fired) <= set(a.rules_fired):
        a.rules_fired = sorted({*a.rules_fired, *fired})
    if len(a.points) < MAX_POINTS:
        a.points = [
            *a.points,
            [float(ts[i]), _finite(values[i]), _finite(expected[i]), _finite(scale[i]), score],
        ]
    known = [floors[r] for r in a.rules_fired if r in floors]
    _refresh_severity(a, floor=max(known, key=_order, default=""), judge_rules="" in known)


def _order(severity: str) -> int:
    return SEVERITY_ORDER.get(severity, 0)


def _refresh_severity(a: Anomaly, floor: str = "", judge_rules: bool = False) -> None:
    """Severity only rises while an anomaly goes on (a page is not taken back).

    A rule whose operator gave it a severity (`floor`) sets it, as a Prometheus rule's
    severity label does: its breach is not judged on improbability, which called nearly
    every breach of a few minutes critical, so a "warning" rule paged the on-call. The
    other methods can still raise it, judged on their own evidence as any anomaly is.
    `judge_rules`: a rule given no severity fired too; its breach is judged on
    improbability, as it would be alone (a "warning" rule beside it counted no rule).
    """
    duration = (a.last_seen_at - a.started_at).total_seconds()
    methods = set(a.methods)
    judged_alone = {STALLED, COLLAPSE}
    if floor and not judge_rules:
        # The other families' peaks (each at its own point: an upper bound of their sum).
        evidence = sum(v for f, v in a.votes.items() if f in FAMILIES and f != "rules")
    else:
        evidence, judged_alone = a.peak_surprisal, judged_alone | {"rules"}
    severity = classify_severity(
        evidence,
        a.peak_z,
        duration,
        a.series.importance,
        improbability_only=bool(judged_alone & methods),
    )
    severity = max(severity, floor, key=_order)  # ties keep the computed one ("" < info)
    if SEVERITY_ORDER[severity] > SEVERITY_ORDER.get(a.severity, 0) or a.pk is None:
        a.severity = severity


def report_silence(
    silent: list[tuple[Series, DetectorState]],
    now: datetime,
    cfg: DetectorConfig,
    feedback: Feedback,
    open_now: dict[int, Anomaly],
    run: ScoreRun,
) -> None:
    """Open (or extend) a "stalled" anomaly for each series that stopped sending.

    The engine judges a gap when the next point arrives; an exporter that died would
    otherwise be reported only once it came back. A silence is reported once: an ended
    anomaly that began after the series' last point (one only a silence can open, which
    an operator resolved) covers it. Any anomaly that merely ended after it did not: an
    operator who resolves a spike at the wall clock, after a restart that killed the
    exporter, must still hear that the series went quiet.
    """
    found = []
    for s, st in silent:
        if st.step_seconds is None or st.points_scored < cfg.burn_in:
            continue
        elapsed = (now - st.last_ts).total_seconds()
        surprisal = pattern.silence_surprisal(elapsed, st.step_seconds)
        if surprisal > 0:
            found.append((s, st, surprisal))
    if not found:
        return
    last_closed_onset = dict(
        Anomaly.objects.filter(series__in=[s for s, _, _ in found], ended_at__isnull=False)
        .values_list("series_id")
        .annotate(last=Max("started_at"))
    )
    for s, st, surprisal in found:
        a = open_now.get(s.pk)
        if a is None:
            if s.pk in last_closed_onset and last_closed_onset[s.pk] > st.last_ts:
                continue
            methods = frozenset({"pattern", STALLED})
            candidate = Fingerprint(direction=-1, peak_z=0.0, methods=methods)
            if any(is_dismissed(candidate, [fp]) for _, fp in feedback.dismissed.get(s.pk, [])):
                run.suppressed += 1
                continue
            a = Anomaly(
                series=s,
                started_at=st.last_ts + timedelta(seconds=st.step_seconds),
                detected_at=now,
                last_seen_at=now,
                peak_score=0.0,
                peak_surprisal=0.0,
                peak_z=0.0,
                direction=-1,
                observed=0.0,
                expected=0.0,
            )
            run.opened += 1
        a.last_seen_at = max(a.last_seen_at, now)
        a.peak_surprisal = max(a.peak_surprisal, surprisal)
        a.peak_score = max(
            a.peak_score, float(score_from_surprisal(surprisal, cfg.score_half_surprisal))
        )
        votes = dict(a.votes)
        for family in ("pattern", STALLED):
            votes[family] = max(votes.get(family, 0.0), round(surprisal, 3))
        a.votes = votes
        a.methods = sorted(f for f, v in votes.items() if v >= cfg.vote_surprisal)
        _refresh_severity(a)
        run.write(a)


def _close(a: Anomaly, when: datetime, run: ScoreRun) -> None:
    a.ended_at = max(when, a.last_seen_at)
    if a.status in (Anomaly.Status.OPEN, Anomaly.Status.ACKNOWLEDGED):
        a.status = Anomaly.Status.RESOLVED
    run.closed += 1
    run.write(a)
