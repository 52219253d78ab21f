"""The scheduled scoring job: every series' new points through the engine, in one transaction.

Each run loads the detector states, reads only the samples after each state's last point
(a new series is backfilled over a week), scores them, stores the new states, turns the
scores into anomalies (episodes.py), ranks root causes (causes.py) and queues the
matching playbooks (playbooks.py, after commit, so a rolled-back run sends nothing).

Samples that arrive with a timestamp at or before a series' last scored point are not
scored: detection is online, and its state has moved past them.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta

import numpy as np
from django.db import connection, transaction
from django.db.models import Count, F, Max, Q, QuerySet
from django.utils import timezone

from phase3.bulk import bulk_update_rows
from telemetry.models import Series
from telemetry.selectors import series_values, series_values_since, to_datetime

from ..engine import DetectorConfig, StreamingDetector, ThresholdRule, is_current_state
from ..engine.feedback import (
    RECURRENCE,
    UNANSWERED_MIN_SECONDS,
    Fingerprint,
    PastAnomaly,
    unanswered_incident,
)
from ..matching import series_matches
from ..models import Anomaly, DetectionRule, DetectorState, DismissedPattern, LearnedModel
from ..tunings import engine_tuning, tuning_of, usable_tunings
from ..validation import rule_errors
from .causes import causes_rank_around
from .episodes import (
    Feedback,
    ScoreRun,
    close_recovered,
    open_anomalies,
    quiet_seconds,
    report_silence,
    save_anomalies,
    track_episodes,
)
from .playbooks import queue_resolved_notices, queue_responses

logger = logging.getLogger(__name__)

# A new series is first scored over this much history.
BACKFILL = timedelta(days=7)
# How long an incident an operator confirmed makes its recurrence alert (episodes.py): the
# evidence ranking forgets over about four weeks of five-minute points, after which a
# recurrence alerts on its own.
CONFIRMED_MEMORY = timedelta(days=28)
# Runs hold this PostgreSQL advisory lock for their transaction, so the beat job and
# `manage.py score_anomalies` never score the same new points twice.
_RUN_LOCK = int.from_bytes(hashlib.sha1(b"anomalies.score_recent").digest()[:8], "big", signed=True)


def _usable_rules() -> list[DetectionRule]:
    """Enabled rules the engine can apply; one broken row must not stop every series."""
    usable = []
    for r in DetectionRule.objects.filter(enabled=True):
        errors = rule_errors(labels=r.labels, above=r.above, below=r.below)
        if errors:
            logger.warning("detection rule %r skipped: %s", r.name, errors)
        else:
            usable.append(r)
    return usable


def _rules_of(series: Series, rules: list[DetectionRule]) -> list[DetectionRule]:
    """The rules that apply to this series (matched once per run: the detector's
    thresholds and the severities of the anomalies they fire in both come from these)."""
    return [r for r in rules if series_matches(r.series_name, r.labels, series.name, series.labels)]


def _thresholds(rules: list[DetectionRule]) -> list[ThresholdRule]:
    return [
        ThresholdRule(
            name=r.name, above=r.above, below=r.below, min_duration_seconds=r.min_duration_seconds
        )
        for r in rules
    ]


def _severities(rules: list[DetectionRule]) -> dict[str, str]:
    """The severities operators gave a series' rules, by name ("" for a rule given none:
    its breach is judged on improbability).

    Only that series' rules: an open anomaly keeps the names of rules that fired in it
    after a rename, and another series' rule since given that name must not set its
    severity (a lookup among every rule escalated it to that rule's "critical").
    """
    return {r.name: r.severity for r in rules}


def anomalies_score_recent(
    *,
    now: datetime | None = None,
    series_ids: list[int] | None = None,
    config: DetectorConfig | None = None,
) -> dict:
    """Score what arrived since the last run for every series; returns counts."""
    cfg = config or DetectorConfig(ml_retrain_every=0)
    now = now or timezone.now()
    run = ScoreRun()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_RUN_LOCK])
        series_qs = Series.objects.order_by("pk")
        if series_ids is not None:
            series_qs = series_qs.filter(pk__in=series_ids)
        series = list(series_qs)
        states = {
            s.series_id: s
            for s in DetectorState.objects.select_for_update().filter(series__in=series)
        }
        fleet = LearnedModel.objects.select_for_update().filter(name="fleet").first()
        rules = _usable_rules()
        tunings = usable_tunings()

        stale = [st for st in states.values() if not is_current_state(bytes(st.state))]
        if stale:
            _rebuild_states(stale, fleet, cfg)

        starts = {
            s.pk: states[s.pk].last_ts + timedelta(microseconds=1)
            if s.pk in states
            else now - BACKFILL
            for s in series
        }
        points = series_values_since(starts, end=now + timedelta(microseconds=1))
        active = [s for s in series if points[s.pk][0].size]
        # Lock the open anomalies before reading the operators' feedback: a false positive
        # marked between the two reads would end an anomaly the run then no longer holds,
        # while its dismissal is not in the feedback read, so the next alert point opened
        # a fresh anomaly and paged. Locked first, the operator's request waits for the run.
        open_now = {a.series_id: a for a in open_anomalies(series)}
        feedback = _feedback_for([s.pk for s in series], now)
        if active:
            _score_active(
                active, points, states, fleet, (rules, tunings), cfg, feedback, open_now, run
            )
        sent = {s.pk for s in active}
        silent = [(s, states[s.pk]) for s in series if s.pk in states and s.pk not in sent]
        close_recovered(silent, now, open_now, run)
        report_silence(silent, now, cfg, feedback, open_now, run)
        save_anomalies(run)
        run.series = len(active)
        if run.opened_ids:
            causes_rank_around(run.opened_ids)
        if run.touched:
            run.responses, run.silenced = queue_responses(run.touched, now=now)
            queue_resolved_notices(run.touched)
    return run.counts()


def _score_active(
    active, points, states, fleet, operators, cfg, feedback, open_now, run: ScoreRun
) -> None:
    """Score the series that sent points, track their anomalies, store states and fleet.

    `operators` is what operators set: (detection rules, detection tunings).
    """
    rules, tunings = operators
    fleet_blob = bytes(fleet.blob) if fleet else None
    detector = None
    groups = _groups_by_width(active, points)
    for number, group in enumerate(groups):
        applying = {s.pk: _rules_of(s, rules) for s in group}
        ts_block, value_block = _rectangular([points[s.pk] for s in group])
        detector = StreamingDetector.from_states(
            [bytes(states[s.pk].state) if s.pk in states else None for s in group],
            fleet=fleet_blob,
            rules=[_thresholds(applying[s.pk]) for s in group],
            config=cfg,
            tunings=[engine_tuning(tuning_of(s, tunings)) for s in group],
        )
        result = detector.update(ts_block, value_block, auto_retrain=False)
        if number + 1 < len(groups):  # the next group carries on from this forest
            fleet_blob = detector.fleet_state()
        for row, s in enumerate(group):
            state = states.get(s.pk) or DetectorState(series=s, points_scored=0, episode={})
            step = float(detector.step[row])
            state.episode = track_episodes(
                s,
                row,
                result,
                ts_block,
                value_block,
                cfg,
                feedback,
                open_now.get(s.pk),
                state.episode,
                run,
                quiet=quiet_seconds(step),
                rule_severity=_severities(applying[s.pk]),
            )
            valid_ts = ts_block[row][np.isfinite(ts_block[row])]
            state.state = detector.series_state(row)
            state.last_ts = to_datetime(valid_ts[-1])
            state.points_scored += valid_ts.size
            state.step_seconds = step if np.isfinite(step) else None
            states[s.pk] = state
            run.points += valid_ts.size
    _save_states([states[s.pk] for s in active])
    _save_fleet(detector, fleet)


def _groups_by_width(
    series: list[Series], points: dict[int, tuple[np.ndarray, np.ndarray]]
) -> list[list[Series]]:
    """Series grouped so that none is padded to more than twice its number of new points.

    The engine steps a (series, time) block; one new series with a week of backfill would
    otherwise widen the block for every series (2,000 series x 2,016 steps: 22 s, 590 MiB).
    """
    groups: dict[int, list[Series]] = {}
    for s in series:
        width = points[s.pk][0].size
        groups.setdefault(int(np.ceil(np.log2(width))), []).append(s)
    return [groups[k] for k in sorted(groups)]


def _rectangular(points: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Stack series of different lengths into (series, time) blocks padded with NaN."""
    width = max((ts.size for ts, _ in points), default=0)
    ts_block = np.full((len(points), width), np.nan)
    value_block = np.full((len(points), width), np.nan)
    for row, (ts, values) in enumerate(points):
        ts_block[row, : ts.size] = ts
        value_block[row, : ts.size] = values
    return ts_block, value_block


def _rebuild_states(stale: list[DetectorState], fleet, cfg: DetectorConfig) -> None:
    """Give states written by an older detector layout a fresh state (in memory).

    Such a state cannot be read. Failing every run is not an option, and rescoring a week
    would reopen anomalies already recorded. Instead a new detector learns silently from
    the week before each state's last point and carries on from that point.
    """
    history = [
        series_values(
            st.series_id, start=st.last_ts - BACKFILL, end=st.last_ts + timedelta(microseconds=1)
        )
        for st in stale
    ]
    ts_block, value_block = _rectangular(history)
    detector = StreamingDetector.from_states(
        [None] * len(stale), fleet=bytes(fleet.blob) if fleet else None, config=cfg
    )
    if ts_block.shape[1]:
        detector.update(ts_block, value_block, auto_retrain=False)
    for row, st in enumerate(stale):
        st.state = detector.series_state(row)
        st.save(update_fields=["state", "updated_at"])


def _save_states(states: list[DetectorState]) -> None:
    """One UPDATE for the series scored before, one INSERT for the new ones."""
    stamp = timezone.now()
    for st in states:
        st.updated_at = stamp
    bulk_update_rows(
        DetectorState,
        states,
        ["state", "last_ts", "points_scored", "episode", "step_seconds", "updated_at"],
    )
    DetectorState.objects.bulk_create([st for st in states if st.pk is None], batch_size=500)


def _save_fleet(detector: StreamingDetector, fleet: LearnedModel | None) -> None:
    blob = detector.fleet_state()
    if fleet is None:
        LearnedModel.objects.create(
            name="fleet", blob=blob, windows=detector.fleet.reservoir.shape[0]
        )
    else:
        fleet.blob, fleet.windows = blob, detector.fleet.reservoir.shape[0]
        fleet.save(update_fields=["blob", "windows", "updated_at"])


def _feedback_for(series_ids: list[int], now: datetime) -> Feedback:
    """The run's dismissed patterns, and the incidents within `CONFIRMED_MEMORY` whose
    recurrence alerts: those an operator confirmed, and a series' one unanswered incident
    (`engine.feedback.unanswered_incident`)."""
    dismissed: dict[int, list[tuple[int, Fingerprint]]] = {}
    for d in DismissedPattern.objects.filter(series_id__in=series_ids):
        fp = Fingerprint(direction=d.direction, peak_z=d.peak_z, methods=frozenset(d.methods))
        dismissed.setdefault(d.series_id, []).append((d.pk, fp))
    recent = Anomaly.objects.filter(
        series_id__in=series_ids, started_at__gte=now - CONFIRMED_MEMORY
    )
    confirmed: dict[int, list[Fingerprint]] = {}
    for series_id, direction, peak_z, methods in (
        recent.filter(confirmed_at__isnull=False)
        .exclude(status=Anomaly.Status.FALSE_POSITIVE)
        .values_list("series_id", "direction", "peak_z", "methods")
    ):
        fp = Fingerprint(direction=direction, peak_z=peak_z, methods=frozenset(methods))
        confirmed.setdefault(series_id, []).append(fp)
    unanswered = _unanswered_incidents(recent)
    return Feedback(dismissed=dismissed, confirmed=confirmed, unanswered=unanswered)


def _unanswered_incidents(recent: QuerySet[Anomaly]) -> dict[int, Fingerprint]:
    """Each series' one unanswered incident among `recent` (`unanswered_incident`).

    Only a series with one anomaly in the memory can have one, and only a long critical
    anomaly nobody answered vouches: the engine's rule, counted here in SQL first so that
    an incident across the fleet does not load every series' anomaly each minute (a
    subquery that did took 1.0-1.5 s of each of its runs at 2,000 series).
    """
    unanswered_now = (
        Q(severity=Anomaly.Severity.CRITICAL, confirmed_at__isnull=True)
        & Q(last_seen_at__gte=F("started_at") + timedelta(seconds=UNANSWERED_MIN_SECONDS))
        & ~Q(status=Anomaly.Status.FALSE_POSITIVE)
    )
    alone = (
        recent.order_by()
        .values("series_id")
        .annotate(n=Count("pk"), open=Count("pk", filter=unanswered_now), last=Max("pk"))
        .filter(n=1, open=1)
        .values_list("last", flat=True)
    )
    unanswered: dict[int, Fingerprint] = {}
    for a in Anomaly.objects.filter(pk__in=list(alone)).only(
        "series_id",
        "direction",
        "peak_z",
        "methods",
        "severity",
        "status",
        "confirmed_at",
        "started_at",
        "last_seen_at",
    ):
        fp = Fingerprint(direction=a.direction, peak_z=a.peak_z, methods=frozenset(a.methods))
        past = PastAnomaly(
            fingerprint=fp,
            lasted_seconds=(a.last_seen_at - a.started_at).total_seconds(),
            critical=a.severity == Anomaly.Severity.CRITICAL,
            confirmed=a.confirmed_at is not None,
            dismissed=a.status == Anomaly.Status.FALSE_POSITIVE,
            recurrence=RECURRENCE in a.methods,
        )
        if (vouched := unanswered_incident([past])) is not None:
            unanswered[a.series_id] = vouched
    return unanswered


def learned_model_retrain() -> dict:
    """Refit the shared isolation forest on its reservoir (the daily job)."""
    with transaction.atomic():
        fleet = LearnedModel.objects.select_for_update().filter(name="fleet").first()
        if fleet is None:
            return {"retrained": 0, "windows": 0}
        detector = StreamingDetector.from_states([], fleet=bytes(fleet.blob))
        fitted = detector.retrain()
        fleet.blob = detector.fleet_state()
        fleet.windows = detector.fleet.reservoir.shape[0]
        if fitted:
            fleet.trained_at = timezone.now()
        fleet.save()
        return {"retrained": int(fitted), "windows": fleet.windows}
