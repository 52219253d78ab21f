"""The only writers of the anomaly system: telemetry -> engine -> anomalies, one transaction.

`anomalies_score_recent` is the scheduled job: it loads every series' detector state,
reads only the samples after each state's last point, scores them in one vectorised pass,
stores the new states, opens / extends / closes anomalies, ranks their root causes and
queues the matching response playbooks (after commit, so a rolled-back run sends nothing).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from telemetry.models import Series
from telemetry.selectors import series_values, to_datetime

from .engine import STALLED, DetectorConfig, StreamingDetector, ThresholdRule, is_current_state
from .engine.feedback import Fingerprint, is_dismissed
from .engine.root_cause import CauseCandidate, estimate_onset, rank_causes
from .engine.severity import classify_severity
from .models import (
    Anomaly,
    DetectionRule,
    DetectorState,
    DismissedPattern,
    LearnedModel,
    ResponseExecution,
    ResponsePlaybook,
    RootCauseCandidate,
)
from .responses import ResponseActionError, ResponseConfigError, perform_action, post_webhook
from .validation import playbook_errors, rule_errors

logger = logging.getLogger(__name__)

# A new series is first scored over this much history.
BACKFILL = timedelta(days=7)
# An anomaly is over after this many consecutive points without any method's vote.
RECOVERY_POINTS = 3
# Other series' anomalies this close to an onset are root-cause candidates.
CAUSE_WINDOW = timedelta(minutes=30)
# Points kept per anomaly for its chart.
MAX_POINTS = 500
SEVERITY_ORDER = {"info": 0, "warning": 1, "critical": 2}


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
    touched: set[int] = field(default_factory=set)

    def counts(self) -> dict:
        return {
            "series": self.series,
            "points": self.points,
            "opened": self.opened,
            "updated": self.updated,
            "closed": self.closed,
            "suppressed": self.suppressed,
            "responses": self.responses,
        }


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


def _rules_for(series: Series, rules: list[DetectionRule]) -> list[ThresholdRule]:
    labels = series.labels or {}
    return [
        ThresholdRule(
            name=r.name, above=r.above, below=r.below, min_duration_seconds=r.min_duration_seconds
        )
        for r in rules
        if r.series_name == series.name and all(labels.get(k) == v for k, v in r.labels.items())
    ]


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

        stale = [states[s.pk] for s in series if s.pk in states]
        stale = [st for st in stale if not is_current_state(bytes(st.state))]
        if stale:
            _rebuild_states(stale, fleet, cfg)

        new_points = []
        for s in series:
            state = states.get(s.pk)
            start = state.last_ts + timedelta(microseconds=1) if state else now - BACKFILL
            ts, values = series_values(s.pk, start=start, end=now + timedelta(microseconds=1))
            new_points.append((ts, values))
        active = [i for i, (ts, _) in enumerate(new_points) if ts.size]
        if not active:
            return run.counts()
        chosen = [series[i] for i in active]
        ts_block, value_block = _rectangular([new_points[i] for i in active])
        detector = StreamingDetector.from_states(
            [bytes(states[s.pk].state) if s.pk in states else None for s in chosen],
            fleet=bytes(fleet.blob) if fleet else None,
            rules=[_rules_for(s, rules) for s in chosen],
            config=cfg,
        )
        result = detector.update(ts_block, value_block, auto_retrain=False)
        _save_states(detector, chosen, ts_block, states)
        _save_fleet(detector, fleet)

        run.series, run.points = len(chosen), int(np.isfinite(ts_block).sum())
        dismissed = _dismissed_by_series([s.pk for s in chosen])
        for row, s in enumerate(chosen):
            _track_episodes(s, row, result, ts_block, value_block, cfg, dismissed, run)
        if run.touched:
            _rank_causes_around(run.touched)
            run.responses = _queue_responses(run.touched)
            _queue_resolved_notices(run.touched)
    return run.counts()


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


def _save_states(detector, chosen, ts_block, states) -> None:
    for row, s in enumerate(chosen):
        valid_ts = ts_block[row][np.isfinite(ts_block[row])]
        blob = detector.series_state(row)
        last = to_datetime(valid_ts[-1])
        state = states.get(s.pk)
        if state is None:
            DetectorState.objects.create(
                series=s, state=blob, last_ts=last, points_scored=valid_ts.size
            )
        else:
            state.state, state.last_ts = blob, last
            state.points_scored += valid_ts.size
            state.save(update_fields=["state", "last_ts", "points_scored", "updated_at"])


def _save_fleet(detector: StreamingDetector, fleet: LearnedModel | None) -> None:
    blob = detector.fleet_state()
    if fleet is None:
        LearnedModel.objects.create(
            name="fleet", blob=blob, windows=detector.fleet.reservoir.shape[0]
        )
    else:
        fleet.blob, fleet.windows = blob, detector.fleet.reservoir.shape[0]
        fleet.save(update_fields=["blob", "windows", "updated_at"])


def _dismissed_by_series(series_ids: list[int]) -> dict[int, list[tuple[int, Fingerprint]]]:
    out: dict[int, list[tuple[int, Fingerprint]]] = {}
    for d in DismissedPattern.objects.filter(series_id__in=series_ids):
        fp = Fingerprint(direction=d.direction, peak_z=d.peak_z, methods=frozenset(d.methods))
        out.setdefault(d.series_id, []).append((d.pk, fp))
    return out


def _track_episodes(s, row, result, ts_block, value_block, cfg, dismissed, run: ScoreRun) -> None:
    """Walk this series' new points: open, extend and close its anomaly."""
    n = int(np.isfinite(ts_block[row]).sum())
    ts, values = ts_block[row, :n], value_block[row, :n]
    expected, scale = result.expected[row, :n], result.scale[row, :n]
    families = {f: v[row, :n] for f, v in result.surprisal.items()}
    # Reported beside the families (it is part of the pattern family's evidence): operators
    # see "stalled" among the methods, and severity does not ask a stopped series for size.
    families[STALLED] = result.stalled[row, :n]
    voting = result.any_vote()[row, :n]
    total = result.total[row, :n]
    z = (values - expected) / scale
    alert = result.scores[row, :n] >= cfg.alert_score
    current = Anomaly.objects.filter(series=s, ended_at__isnull=True).first()
    calm = 0
    suppressing = False
    for i in range(n):
        if current is not None:
            if voting[i] or alert[i]:
                calm = 0
                _extend(current, i, ts, values, expected, scale, result, row, families, total, z)
            else:
                calm += 1
                if calm >= RECOVERY_POINTS:
                    _close(current, to_datetime(ts[i]), run)
                    current, calm = None, 0
            continue
        if suppressing:
            suppressing = bool(voting[i] or alert[i])
            continue
        if not alert[i]:
            continue
        methods = frozenset(f for f, v in families.items() if v[i] >= cfg.vote_surprisal)
        candidate = Fingerprint(
            direction=1 if z[i] >= 0 else -1, peak_z=float(abs(z[i])), methods=methods
        )
        matches = [pk for pk, fp in dismissed.get(s.pk, []) if is_dismissed(candidate, [fp])]
        if matches:
            DismissedPattern.objects.filter(pk=matches[0]).update(
                suppressed_count=F("suppressed_count") + 1
            )
            run.suppressed += 1
            suppressing = True
            continue
        onset = estimate_onset(ts, z, i)
        current = Anomaly(
            series=s,
            started_at=to_datetime(onset),
            detected_at=to_datetime(ts[i]),
            last_seen_at=to_datetime(ts[i]),
            peak_score=0.0,
            peak_surprisal=0.0,
            peak_z=0.0,
            direction=candidate.direction,
            observed=float(values[i]),
            expected=float(expected[i]),
        )
        _extend(current, i, ts, values, expected, scale, result, row, families, total, z)
        run.opened += 1
        calm = 0
    if current is not None and current.pk and current.pk not in run.touched:
        run.updated += 1
    if current is not None:
        current.save()
        run.touched.add(current.pk)


def _extend(a: Anomaly, i, ts, values, expected, scale, result, row, families, total, z) -> None:
    """Fold point i into the anomaly (peak, methods, points), then refresh its severity."""
    score = float(result.combined[row, i])
    a.last_seen_at = to_datetime(ts[i])
    if score >= a.peak_score:
        a.peak_score = score
        a.peak_surprisal = float(total[i])
        a.observed, a.expected = float(values[i]), float(expected[i])
    if np.isfinite(z[i]) and abs(z[i]) > a.peak_z:
        a.peak_z = float(abs(z[i]))
    votes = dict(a.votes)
    for f, v in families.items():
        votes[f] = max(votes.get(f, 0.0), round(float(v[i]), 3))
    a.votes = votes
    a.methods = sorted(f for f, v in votes.items() if v >= result.vote_surprisal)
    if len(a.points) < MAX_POINTS:
        a.points = [
            *a.points,
            [float(ts[i]), float(values[i]), float(expected[i]), float(scale[i]), score],
        ]
    duration = (a.last_seen_at - a.started_at).total_seconds()
    severity = classify_severity(
        a.peak_surprisal,
        a.peak_z,
        duration,
        a.series.importance,
        improbability_only="rules" in a.methods or STALLED in a.methods,
    )
    if SEVERITY_ORDER[severity] > SEVERITY_ORDER.get(a.severity, 0) or a.pk is None:
        a.severity = severity


def _close(a: Anomaly, when: datetime, run: ScoreRun) -> None:
    a.ended_at = when
    if a.status in (Anomaly.Status.OPEN, Anomaly.Status.ACKNOWLEDGED):
        a.status = Anomaly.Status.RESOLVED
    a.save()
    run.closed += 1
    run.touched.add(a.pk)


def _rank_causes_around(anomaly_ids: set[int]) -> None:
    """(Re)rank root-cause candidates of every anomaly near the ones this run touched."""
    touched = list(Anomaly.objects.filter(pk__in=anomaly_ids).only("started_at"))
    lo = min(a.started_at for a in touched) - CAUSE_WINDOW
    hi = max(a.started_at for a in touched) + CAUSE_WINDOW
    nearby = list(
        Anomaly.objects.filter(started_at__gte=lo, started_at__lte=hi)
        .exclude(status=Anomaly.Status.FALSE_POSITIVE)
        .select_related("series")
    )
    for target in nearby:
        peers = [
            p
            for p in nearby
            if abs((p.started_at - target.started_at).total_seconds())
            <= CAUSE_WINDOW.total_seconds()
        ]
        step = _grid_step(target)
        ranked = rank_causes(
            target.started_at.timestamp(),
            [
                CauseCandidate(p.pk, p.started_at.timestamp(), p.peak_surprisal, p.peak_z)
                for p in peers
            ],
            step,
        )
        by_pk = {p.pk: p for p in peers}
        RootCauseCandidate.objects.filter(anomaly=target).delete()
        RootCauseCandidate.objects.bulk_create(
            [
                RootCauseCandidate(
                    anomaly=target,
                    series=by_pk[r.key].series,
                    cause_anomaly=by_pk[r.key],
                    rank=r.rank,
                    score=r.score,
                    lead_seconds=r.lead_seconds,
                    evidence={
                        "onset": by_pk[r.key].started_at.isoformat(),
                        "peak_surprisal": by_pk[r.key].peak_surprisal,
                        "peak_z": by_pk[r.key].peak_z,
                        "methods": by_pk[r.key].methods,
                        "is_self": r.key == target.pk,
                    },
                )
                for r in ranked
                if by_pk[r.key].series_id != target.series_id or r.key == target.pk
            ]
        )


def _grid_step(a: Anomaly) -> float:
    pts = a.points
    if len(pts) >= 2:
        return float(np.median(np.diff([p[0] for p in pts])))
    return 300.0


def _usable_playbooks() -> list[ResponsePlaybook]:
    usable = []
    for p in ResponsePlaybook.objects.filter(enabled=True):
        errors = playbook_errors(
            action=p.action, target=p.target, labels=p.labels, arguments=p.arguments
        )
        if errors:
            logger.warning("response playbook %r skipped: %s", p.name, errors)
        else:
            usable.append(p)
    return usable


def _queue_responses(anomaly_ids: set[int]) -> int:
    """One execution per (playbook, anomaly); later matches only bump `repeats`."""
    playbooks = _usable_playbooks()
    queued: list[int] = []
    for a in Anomaly.objects.filter(pk__in=anomaly_ids).select_related("series"):
        if a.status == Anomaly.Status.FALSE_POSITIVE:
            continue
        for p in playbooks:
            if not _playbook_matches(p, a):
                continue
            execution, created = ResponseExecution.objects.get_or_create(playbook=p, anomaly=a)
            if created:
                queued.append(execution.pk)
            else:
                ResponseExecution.objects.filter(pk=execution.pk).update(repeats=F("repeats") + 1)
    if queued:
        from .tasks import execute_response

        transaction.on_commit(lambda: [execute_response.delay(pk) for pk in queued])
    return len(queued)


def _queue_resolved_notices(anomaly_ids: set[int]) -> int:
    """Tell webhook receivers that alerts they were sent have ended.

    Alertmanager receivers (PagerDuty, Opsgenie) keep an incident open until they get the
    same alert with status "resolved"; without it every page would have to be closed by
    hand. As in Alertmanager's defaults, e-mails and tasks get no resolved notice.
    """
    pending = list(
        ResponseExecution.objects.filter(
            anomaly_id__in=anomaly_ids,
            anomaly__ended_at__isnull=False,
            playbook__action=ResponsePlaybook.Action.WEBHOOK,
            status=ResponseExecution.Status.SUCCEEDED,
            resolved_notified_at__isnull=True,
        ).values_list("pk", flat=True)
    )
    if pending:
        from .tasks import notify_resolved

        transaction.on_commit(lambda: [notify_resolved.delay(pk) for pk in pending])
    return len(pending)


def _playbook_matches(p: ResponsePlaybook, a: Anomaly) -> bool:
    if p.series_name and p.series_name != a.series.name:
        return False
    labels = a.series.labels or {}
    if any(labels.get(k) != v for k, v in (p.labels or {}).items()):
        return False
    return SEVERITY_ORDER[a.severity] >= SEVERITY_ORDER[p.min_severity]


def response_execute(*, execution_id: int) -> dict:
    """Run one playbook action and record status, duration and result.

    Raises ResponseActionError after recording the failed attempt, so the task can retry
    with backoff; the final attempt is recorded as FAILED.
    """
    execution = ResponseExecution.objects.select_related(
        "playbook", "anomaly", "anomaly__series"
    ).get(pk=execution_id)
    if execution.status == ResponseExecution.Status.SUCCEEDED:
        return {"skipped": 1}
    started = time.perf_counter()
    error, result, final = "", {}, False
    try:
        result = perform_action(execution.anomaly, execution.playbook)
    except ResponseConfigError as exc:
        error, final = str(exc), True
    except ResponseActionError as exc:
        error = str(exc)
    with transaction.atomic():
        execution = ResponseExecution.objects.select_for_update().get(pk=execution_id)
        execution.attempts += 1
        execution.duration_ms = (time.perf_counter() - started) * 1000.0
        execution.finished_at = timezone.now()
        execution.result, execution.error = result, error
        if not error:
            execution.status = ResponseExecution.Status.SUCCEEDED
            if execution.anomaly.ended_at is not None:
                # What was sent already said "resolved" (the anomaly ended while retrying).
                execution.resolved_notified_at = execution.finished_at
        elif final or execution.attempts >= execution.playbook.max_attempts:
            execution.status = ResponseExecution.Status.FAILED
        else:
            execution.status = ResponseExecution.Status.RETRYING
        execution.save()
    if execution.status == ResponseExecution.Status.RETRYING:
        raise ResponseActionError(error)
    return {"succeeded": int(not error), "failed": int(bool(error))}


def response_notify_resolved(*, execution_id: int) -> dict:
    """Send a webhook receiver the resolved state of an alert it was sent.

    Raises ResponseActionError for the task to retry; the error is kept on the execution.
    """
    execution = ResponseExecution.objects.select_related(
        "playbook", "anomaly", "anomaly__series"
    ).get(pk=execution_id)
    if execution.resolved_notified_at is not None or execution.anomaly.ended_at is None:
        return {"skipped": 1}
    try:
        post_webhook(execution.anomaly, execution.playbook)
    except ResponseActionError as exc:
        ResponseExecution.objects.filter(pk=execution_id).update(error=f"resolved notice: {exc}")
        raise
    ResponseExecution.objects.filter(pk=execution_id).update(
        resolved_notified_at=timezone.now(), error=""
    )
    return {"notified": 1}


# --------------------------------------------------------------------- operator actions
class AnomalyStateError(Exception):
    """An operator action that the anomaly's status does not allow."""

    field = "status"


def anomaly_acknowledge(*, anomaly_id: int, by: str = "", note: str = "") -> Anomaly:
    """Open -> acknowledged; acknowledging again changes nothing."""
    with transaction.atomic():
        a = Anomaly.objects.select_for_update().get(pk=anomaly_id)
        if a.status not in (Anomaly.Status.OPEN, Anomaly.Status.ACKNOWLEDGED):
            raise AnomalyStateError(
                f"anomaly {a.pk} is {a.get_status_display().lower()}: "
                "only an open anomaly can be acknowledged"
            )
        if a.status == Anomaly.Status.OPEN:
            a.status = Anomaly.Status.ACKNOWLEDGED
            a.acknowledged_by = by
        if note:
            a.note = note
        a.save(update_fields=["status", "acknowledged_by", "note", "updated_at"])
        return a


def anomaly_resolve(*, anomaly_id: int, by: str = "", note: str = "") -> Anomaly:
    """Close the anomaly as dealt with.

    Resolving a false positive says it was real after all: its dismissal is deleted, so
    the pattern alerts again (otherwise it would stay silenced under a "resolved" label).
    """
    with transaction.atomic():
        a = Anomaly.objects.select_for_update().get(pk=anomaly_id)
        if a.status == Anomaly.Status.FALSE_POSITIVE:
            DismissedPattern.objects.filter(anomaly=a).delete()
        if a.status != Anomaly.Status.RESOLVED:
            a.status = Anomaly.Status.RESOLVED
            a.resolved_by = by
        a.ended_at = a.ended_at or timezone.now()
        if note:
            a.note = note
        a.save(update_fields=["status", "resolved_by", "ended_at", "note", "updated_at"])
        _queue_resolved_notices({a.pk})
        return a


def anomaly_mark_false_positive(*, anomaly_id: int, by: str = "", note: str = "") -> Anomaly:
    """Dismiss the anomaly and remember its fingerprint so the pattern stops alerting."""
    with transaction.atomic():
        a = Anomaly.objects.select_for_update().get(pk=anomaly_id)
        a.status = Anomaly.Status.FALSE_POSITIVE
        a.ended_at = a.ended_at or a.last_seen_at
        if note:
            a.note = note
        a.save(update_fields=["status", "ended_at", "note", "updated_at"])
        _queue_resolved_notices({a.pk})
        DismissedPattern.objects.update_or_create(
            anomaly=a,
            defaults={
                "series_id": a.series_id,
                "direction": a.direction,
                "peak_z": a.peak_z,
                "methods": list(a.methods),
                "created_by": by,
            },
        )
        return a


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
