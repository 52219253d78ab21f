"""Experiment lifecycle and result computation (frequentist, Bayesian, sequential, SRM)."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta

import numpy as np
from django.db import OperationalError, transaction
from django.db.models import Exists, IntegerField, OuterRef, Q, Value
from django.db.models.fields.json import KeyTransform
from django.utils import timezone

from telemetry.selectors import events_queryset

from ..engine.analysis import (
    VariantSummary,
    analyse_experiment,
    arm_estimates,
    arms_to_json,
    dataclass_to_json,
)
from ..engine.cuped import cuped_analysis
from ..engine.sequential import SequentialState
from ..engine.stats import srm_check
from ..models import Experiment, ExperimentResult, Exposure
from ..validation import metric_name
from .changes import experiment_change_record
from .config import config_invalidate

logger = logging.getLogger(__name__)

SRM_NOTE = "sample ratio mismatch (p < 0.001): do not trust these results"

# CUPED's covariate: the same metric over this window before each user's own exposure
# (Statsig's Cloud uses 7 days; two weekly cycles give more users some pre-exposure data,
# and Deng et al. found longer pre-periods reduce more variance).
CUPED_WINDOW = timedelta(days=14)
CUPED_NO_DATA = "no pre-exposure data in the window: nothing to adjust with"

OVERFLOW_NOTE = "metric values too large to analyse (their squares overflow): check the events"

# Below this much running time an exposure rate is mostly the launch burst: no days estimate.
RATE_MIN_SECONDS = 3600.0

# What defines an experiment's arms and who is in them: changing it after the start would
# mix users assigned under different rules into one comparison. ``alpha`` and
# ``planned_users`` define the sequential test: loosening them after peeking at the
# results would turn a non-significant result "significant".
FROZEN_ONCE_STARTED = (
    "key", "variants", "coverage", "targeting", "primary_metric", "starts_at", "alpha",
    "planned_users",
)  # fmt: skip


# Written by ship / unship / rollout changes only (``services.shipping``), never by an edit.
SHIP_FIELDS = (
    "shipped_variant", "shipped_at", "shipped_by", "rollout_percent", "rollout_step_percent",
    "rollout_step_hours", "rollout_next_step_at",
)  # fmt: skip


class ExperimentStateError(Exception):
    """A lifecycle move that is not allowed; ``field`` names what is wrong for a 400."""

    def __init__(self, message: str, field: str = "status") -> None:
        super().__init__(message)
        self.field = field


def experiment_start(*, experiment_id: int, now: datetime | None = None) -> Experiment:
    """draft -> running. A stopped experiment is not restarted: its sequential
    evidence and exposures belong to the old run; copy it under a new key instead."""
    now = now or timezone.now()
    with transaction.atomic():
        exp = Experiment.objects.select_for_update().get(pk=experiment_id)
        if exp.status != Experiment.Status.DRAFT:
            raise ExperimentStateError(f"only a draft experiment can start (it is {exp.status})")
        exp.status = Experiment.Status.RUNNING
        exp.starts_at = exp.starts_at or now
        exp.save(update_fields=["status", "starts_at", "updated_at"])
        config_invalidate()
        experiment_change_record(exp, "started", now=now)
    return exp


def experiment_stop(*, experiment_id: int, now: datetime | None = None) -> Experiment:
    """running -> stopped; users fall back to the rules without the experiment's variant.

    The final results are computed right after the stop: the hourly job only looks
    at running experiments, so the results read after a stop were those of the last
    hourly look, missing up to an hour of data before ``ends_at``. The stop is
    committed first (its own savepoint): an analysis that fails is logged and left
    to ``experiments_results_recompute``, which retries stopped experiments that
    have no result at or after their end; it never undoes the stop.
    """
    now = now or timezone.now()
    with transaction.atomic():
        exp = Experiment.objects.select_for_update().get(pk=experiment_id)
        if exp.status != Experiment.Status.RUNNING:
            raise ExperimentStateError(f"only a running experiment can stop (it is {exp.status})")
        stop_locked(exp, now=now)
    final_results_compute(experiment_id=exp.pk)
    return exp


def stop_locked(exp: Experiment, *, now: datetime) -> None:
    """Stop a running experiment whose row the caller holds locked (stop, and ship)."""
    exp.status = Experiment.Status.STOPPED
    exp.ends_at = now if exp.ends_at is None or exp.ends_at > now else exp.ends_at
    exp.save(update_fields=["status", "ends_at", "updated_at"])
    config_invalidate()
    experiment_change_record(exp, "stopped", now=now)


def final_results_compute(*, experiment_id: int) -> None:
    """The final look after a stop has committed; a failure never undoes the stop (the
    hourly job retries stopped experiments lacking a result at or after their end)."""
    try:
        experiment_results_recompute(experiment_id=experiment_id)
    except OperationalError:
        logger.warning("personalization: final results of experiment %s deferred", experiment_id)
    except Exception:
        logger.exception("personalization: final results of experiment %s failed", experiment_id)


def experiment_update(*, experiment_id: int, changes: dict) -> Experiment:
    """Write an operator's edit (admin form or API) of the configured fields only.

    ``status`` belongs to start/stop, and once stopped so does ``ends_at`` (stop
    sets it; results count no event after it). An edit form or API body carries
    the values from when it was read: a full ``save()`` of it after a concurrent
    stop cleared or moved the stop's ``ends_at`` and could even put ``running``
    back. Under the row lock the stored ``ends_at`` of a stopped experiment is kept
    and only the fields in ``changes`` (plus ``updated_at``) are written. ``no_key``:
    as in ``experiment_results_recompute``, exposures may still be inserted meanwhile.
    """
    with transaction.atomic():
        exp = Experiment.objects.select_for_update(no_key=True).get(pk=experiment_id)
        if exp.status != Experiment.Status.DRAFT:
            # Checked again under the lock: a start may have landed since the form was read.
            for field in FROZEN_ONCE_STARTED:
                if field in changes and changes[field] != getattr(exp, field):
                    raise ExperimentStateError(
                        "cannot change once the experiment has started", field=field
                    )
        owned = {"status", "created_at", "updated_at", "id", *SHIP_FIELDS}
        if exp.status == Experiment.Status.STOPPED:
            owned.add("ends_at")
        fields = [f for f in changes if f not in owned]
        for field in fields:
            setattr(exp, field, changes[field])
        exp.save(update_fields=[*fields, "updated_at"])
    return exp


def _per_user_values(
    metric: dict,
    exposed_at: dict[str, datetime],
    start: datetime,
    end: datetime,
    *,
    experiment_id: int | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """Metric value of each exposed user after their exposure, and the same metric over
    the ``CUPED_WINDOW`` before it (the CUPED covariate), from one read of the events.

    With ``experiment_id`` the database sends only the rows that count: events of users
    exposed to it, from ``CUPED_WINDOW`` before their own exposure (an indexed semi-join
    on the exposures), and only the property the metric sums. Reading every user's events
    of the metric from 14 days before the first exposure and decoding each row's whole
    ``properties`` made a recomputation 1.3-1.5 times slower than before CUPED
    (``bench/personalization.py results``); the rows dropped are those the loop skipped.
    """
    prop = metric.get("property") or ""
    values: dict[str, float] = defaultdict(float)
    before: dict[str, float] = defaultdict(float)
    events = events_queryset(start=start - CUPED_WINDOW, end=end, names=[metric["event"]])
    if experiment_id is not None:
        events = events.filter(
            Exists(
                Exposure.objects.filter(
                    experiment_id=experiment_id,
                    user_id=OuterRef("user_id"),
                    exposed_at__lte=OuterRef("ts") + CUPED_WINDOW,
                )
            )
        )
    if metric["kind"] != "conversion" and prop:
        rows = events.annotate(raw=KeyTransform(prop, "properties")).values_list(
            "user_id", "ts", "raw"
        )
    else:
        rows = events.values_list("user_id", "ts", Value(0, output_field=IntegerField()))
    for user_id, ts, raw in rows.iterator(chunk_size=5000):
        first = exposed_at.get(user_id)
        if first is None or ts < first - CUPED_WINDOW:
            continue
        target = values if ts >= first else before
        if metric["kind"] == "conversion":
            target[user_id] = 1.0
        elif prop:
            if isinstance(raw, int | float) and not isinstance(raw, bool):
                target[user_id] += float(raw)
        else:
            target[user_id] += 1.0
    return values, before


def _state_from_json(data: dict | None) -> SequentialState | None:
    if not data:
        return None
    lower, upper = data.get("lower"), data.get("upper")
    return SequentialState(
        p_value=float(data.get("p_value", 1.0)),
        lower=-np.inf if lower is None else float(lower),
        upper=np.inf if upper is None else float(upper),
        looks=int(data.get("looks", 0)),
    )


def _state_to_json(state: SequentialState) -> dict:
    return {
        "p_value": state.p_value,
        "lower": None if not np.isfinite(state.lower) else state.lower,
        "upper": None if not np.isfinite(state.upper) else state.upper,
        "looks": state.looks,
    }


def _exposures_per_day(
    exp: Experiment, users: int, first: datetime | None, end: datetime
) -> float | None:
    """Exposures per day so far, for the days-remaining estimate; None once the experiment
    stopped (nobody more is exposed) or before an hour has passed since its start."""
    starts = [t for t in (exp.starts_at, first) if t is not None]
    if exp.status != Experiment.Status.RUNNING or not starts:
        return None
    seconds = (end - min(starts)).total_seconds()
    if seconds < RATE_MIN_SECONDS:
        return None
    return users / (seconds / 86_400.0)


def experiment_results_recompute(*, experiment_id: int, now: datetime | None = None) -> dict:
    """Analyse the primary and guardrail metrics of one experiment; one result row each.

    The sequential test carries its running p-value and interval from the previous
    result of the same metric, so results may be recomputed as often as wanted.

    Recomputations of one experiment (the hourly job, the admin action, the API)
    run one after the other: each holds the experiment's row lock from before it
    reads the previous result until its own is committed. Without it two of them
    read the same previous state and the second to commit dropped the first's look
    (its running minimum p-value and narrowed interval). ``no_key`` (PostgreSQL's
    FOR NO KEY UPDATE) still lets config resolution insert exposures meanwhile: their
    foreign-key check takes FOR KEY SHARE, which only FOR UPDATE would block.
    ``now`` defaults to after the wait, so the later look also sorts as the newer.
    """
    written = 0
    with transaction.atomic():
        exp = Experiment.objects.select_for_update(no_key=True).get(pk=experiment_id)
        now = now or timezone.now()
        names = exp.variant_names
        exposures = list(
            Exposure.objects.filter(experiment=exp, variant__in=names).values_list(
                "user_id", "variant", "exposed_at"
            )
        )
        exposed_at = {u: t for u, _, t in exposures}
        variant_of = {u: v for u, v, _ in exposures}
        end = min(now, exp.ends_at) if exp.ends_at else now
        start = min(exposed_at.values()) if exposed_at else (exp.starts_at or now)
        metrics = [(exp.primary_metric, True)] + [(m, False) for m in exp.guardrail_metrics or []]
        for metric, is_primary in metrics:
            name = metric_name(metric)
            values, before = _per_user_values(metric, exposed_at, start, end, experiment_id=exp.pk)
            arrays: dict[str, list[float]] = {v: [] for v in names}
            covariates: dict[str, list[float]] = {v: [] for v in names}
            for user_id, variant in variant_of.items():
                arrays[variant].append(values.get(user_id, 0.0))
                covariates[variant].append(before.get(user_id, 0.0))
            with np.errstate(over="ignore"):  # an overflow is inf, reported as a note below
                summaries = [
                    VariantSummary(v, len(arrays[v]), float(np.sum(arrays[v])),
                                   float(np.sum(np.square(arrays[v]))))
                    for v in names
                ]  # fmt: skip
            users = {s.name: s.users for s in summaries}
            previous = (
                ExperimentResult.objects.filter(experiment=exp, metric=name)
                .order_by("-computed_at")
                .values_list("sequential_state", flat=True)
                .first()
            ) or {}
            result = ExperimentResult(
                experiment=exp, metric=name, is_primary=is_primary,
                metric_kind=metric["kind"], computed_at=now, users=users,
            )  # fmt: skip
            # Sums of squares beyond a float (amounts of 1e200 sent by a broken client) made
            # every statistic NaN or raised: a 500 on recompute, and no result at all.
            overflow = not np.isfinite([s.total_sq for s in summaries]).all()
            if min(users.values()) < 2 or overflow:
                # Arm sizes are checked before anything else: an arm that receives nobody
                # (500 vs 0 at 50/50) is the plainest mismatch, not a reason to wait.
                srm = srm_check([s.users for s in summaries], exp.weights)
                if sum(users.values()):
                    result.srm_p_value, result.srm_mismatch = srm.p_value, srm.mismatch
                result.note = (
                    SRM_NOTE
                    if srm.mismatch
                    else OVERFLOW_NOTE
                    if overflow
                    else "waiting for at least two exposed users in every variant"
                )
                result.sequential_state = previous
                # Each arm's own figure is defined before a comparison is: shown while waiting.
                result.arms = arms_to_json(
                    arm_estimates(summaries, metric_kind=metric["kind"], alpha=exp.alpha)
                )
            else:
                analysis = analyse_experiment(
                    summaries,
                    weights=exp.weights,
                    metric_kind=metric["kind"],
                    alpha=exp.alpha,
                    n_planned=exp.planned_users,
                    previous_states={v: _state_from_json(previous.get(v)) for v in names
                                     if previous.get(v)},
                    minimum_effect=exp.minimum_effect,
                    exposures_per_day=_exposures_per_day(
                        exp, len(exposures), start if exposed_at else None, end
                    ),
                )  # fmt: skip
                data = analysis.to_dict()
                result.power = data["power"]
                cuped = cuped_analysis(
                    names, [arrays[v] for v in names], [covariates[v] for v in names],
                    alpha=exp.alpha,
                )  # fmt: skip
                window = {"window_days": CUPED_WINDOW.days}
                result.cuped = (
                    {"applied": True, **window, **dataclass_to_json(cuped)}
                    if cuped is not None
                    else {"applied": False, **window, "note": CUPED_NO_DATA}
                )
                result.srm_p_value = analysis.srm.p_value
                result.srm_mismatch = analysis.srm.mismatch
                result.comparisons = data["comparisons"]
                result.arms = data["arms"]
                result.sequential_state = {
                    c.variant: _state_to_json(c.sequential.state) for c in analysis.comparisons
                }
                if analysis.srm.mismatch:
                    result.note = SRM_NOTE
            result.save()
            written += 1
    return {"experiment": exp.pk, "results": written, "exposures": len(exposures)}


def experiments_results_recompute(*, now: datetime | None = None) -> dict:
    """The hourly job: recompute every running experiment, and every stopped one still
    lacking its final look (no result at or after its end: the stop's own failed)."""
    final_missing = Q(status=Experiment.Status.STOPPED, ends_at__isnull=False) & ~Exists(
        ExperimentResult.objects.filter(
            experiment=OuterRef("pk"), computed_at__gte=OuterRef("ends_at")
        )
    )
    ids = list(
        Experiment.objects.filter(Q(status=Experiment.Status.RUNNING) | final_missing)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    results = 0
    failed: dict[str, str] = {}
    for pk in ids:
        # One experiment that cannot be analysed (a setting stored before it was validated,
        # data the analysis rejects) must not stop the results of every one after it. Its
        # own transaction is rolled back; transient database errors still fail the job so
        # that it is retried.
        try:
            results += experiment_results_recompute(experiment_id=pk, now=now)["results"]
        except OperationalError:
            raise
        except Exception as exc:
            logger.exception("personalization: results of experiment %s failed", pk)
            failed[str(pk)] = f"{type(exc).__name__}: {exc}"[:300]
    counts = {"experiments": len(ids), "results": results, "failed": len(failed)}
    if failed:
        counts["errors"] = failed
    return counts
