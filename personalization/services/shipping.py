"""Shipping a variant: after an experiment, serve the chosen variant to its whole audience.

Without it, stopping an experiment made every user fall back to the rules without the
experiment's variant, so the rule that gave the winner its UI (``conditions:
{"variant": {"exp": ["b"]}}``) stopped matching and everyone got the control's UI
until an operator edited the rules by hand. Shipping (GrowthBook's "roll out the
winner", Statsig's "ship") records the decision on the experiment; config resolution
then serves the variant to every user the experiment's targeting matches, as if
assigned to it, so rules conditioned on it keep applying. It records no exposure and
leaves the analysis alone: the results stay those of the run (they count exposures
and events up to ``ends_at`` only).

A ship may reach only a percentage of the targeted users (GrowthBook's and
LaunchDarkly's percentage rollout): ``rollout_percent``, chosen at ship time and
changed afterwards (``experiment_rollout_set``, or shipping the same variant at another
percentage). Who is in is ``engine.rollout``'s deterministic, monotone hash, so the
users in at 10 % are still in at 50 %. Each change closes the live history row and opens
the next, so ``ExperimentShipment`` says who ramped to what and when.

A ramp may also be scheduled (+``ramp_step_percent`` every ``ramp_every_hours``, set
with the ship): ``rollouts_advance``, run by beat, takes one step per due experiment,
recorded under ``RAMP_ACTOR``. Any manual change of the percentage, a new ship or an
un-ship ends the schedule: an operator who ramps down because something broke must not
see the schedule ramp back up an hour later.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from ..engine.rollout import FULL_ROLLOUT, ramp_errors, ramp_next_percent, rollout_percent_error
from ..models import Experiment, ExperimentShipment
from .changes import experiment_change_record
from .config import config_invalidate
from .experiments import ExperimentStateError, final_results_compute, stop_locked

logger = logging.getLogger(__name__)

# Who the history records for a scheduled step.
RAMP_ACTOR = "schedule"
SCHEDULE_FIELDS = ["rollout_step_percent", "rollout_step_hours", "rollout_next_step_at"]


def _close_live_shipment(exp: Experiment, *, by: str, now: datetime) -> None:
    ExperimentShipment.objects.filter(experiment=exp, unshipped_at__isnull=True).update(
        unshipped_at=now, unshipped_by=by
    )


def _check_percent(rollout_percent: object) -> None:
    """Every face (API, admin, CLI, shell) reaches the same check, worded the same way."""
    error = rollout_percent_error(rollout_percent)
    if error:
        raise ExperimentStateError(error, field="rollout_percent")


def _check_ramp(step: float | None, hours: float | None) -> None:
    errors = ramp_errors(step, hours)
    if errors:
        field, message = next(iter(errors.items()))
        raise ExperimentStateError(message, field=field)


def _shipped_save(
    exp: Experiment, *, variant: str, at: datetime | None, by: str, percent: float
) -> None:
    """What the experiment row says is shipped (an empty variant: nothing), saved."""
    exp.shipped_variant, exp.shipped_at, exp.shipped_by = variant, at, by
    exp.rollout_percent = percent
    exp.save(
        update_fields=[
            "shipped_variant", "shipped_at", "shipped_by", "rollout_percent", "updated_at",
        ]
    )  # fmt: skip


def _schedule_save(
    exp: Experiment, *, step: float | None, hours: float | None, now: datetime
) -> None:
    """Set (both given) or end (``step`` None) the scheduled ramp of a locked experiment;
    the first step is one period from now."""
    if step is None or hours is None:
        if not exp.rollout_step_percent and exp.rollout_next_step_at is None:
            return
        exp.rollout_step_percent, exp.rollout_step_hours, exp.rollout_next_step_at = (
            0.0,
            0.0,
            None,
        )
    else:
        exp.rollout_step_percent, exp.rollout_step_hours = float(step), float(hours)
        exp.rollout_next_step_at = now + timedelta(hours=hours)
    exp.save(update_fields=[*SCHEDULE_FIELDS, "updated_at"])


def _rollout_change_locked(
    exp: Experiment, *, rollout_percent: float, by: str, now: datetime
) -> None:
    """Ramp the live ship of a locked, shipped experiment to ``rollout_percent``: a
    history row closes and the next opens (same variant), as a replacing ship does.
    ``shipped_at`` / ``shipped_by`` stay those of the variant's ship; the rows hold the
    ramp's steps."""
    _close_live_shipment(exp, by=by, now=now)
    ExperimentShipment.objects.create(
        experiment=exp,
        variant=exp.shipped_variant,
        rollout_percent=rollout_percent,
        shipped_at=now,
        shipped_by=by,
    )
    exp.rollout_percent = float(rollout_percent)
    # The save's post_save receiver bumps the configuration version too (apps.py); the
    # explicit call keeps the rule "every ship write invalidates" visible here.
    exp.save(update_fields=["rollout_percent", "updated_at"])
    config_invalidate()
    experiment_change_record(
        exp, f'"{exp.shipped_variant}" at {rollout_percent:g} %', now=now, by=by
    )


def experiment_ship(
    *,
    experiment_id: int,
    variant: str,
    rollout_percent: float | None = None,
    ramp_step_percent: float | None = None,
    ramp_every_hours: float | None = None,
    by: str = "",
    now: datetime | None = None,
) -> Experiment:
    """Serve ``variant`` to ``rollout_percent`` % of the targeted users from now on (all
    of them by default); stop the experiment first if it still runs (in the same
    transaction, so no request sees it stopped but not shipped). With
    ``ramp_step_percent`` and ``ramp_every_hours`` the percentage then grows by the step
    every period until 100 (``rollouts_advance``).

    A draft has no evidence to ship from (ship is a decision on a run's results; to
    give everyone a UI without an experiment, write a rule). Shipping another variant
    replaces the shipped one (its history row is closed), at 100 % unless a percentage
    is given: a new variant is a new decision, not a step of the old one's ramp. The
    same variant again at another percentage is a ramp (``experiment_rollout_set``);
    without a percentage it changes nothing, at the same one it records nothing (a ramp
    given sets the schedule from the current percentage). A percentage given or a ship
    that changes anything, without a ramp, ends the scheduled one. A ramp needs a
    rollout below 100 to grow. The final results of a stop made here are computed
    once the ship has committed, as after ``experiment_stop``.
    """
    if rollout_percent is not None:
        _check_percent(rollout_percent)
    _check_ramp(ramp_step_percent, ramp_every_hours)
    now = now or timezone.now()
    with transaction.atomic():
        exp = Experiment.objects.select_for_update().get(pk=experiment_id)
        if exp.status == Experiment.Status.DRAFT:
            raise ExperimentStateError(
                "a draft experiment has no results to ship: start it (or write a rule)"
            )
        if variant not in exp.variant_names:
            names = ", ".join(f'"{n}"' for n in exp.variant_names[:20])
            raise ExperimentStateError(
                f'unknown variant "{variant}"; the experiment\'s variants: {names}',
                field="variant",
            )
        stopped_here = exp.status == Experiment.Status.RUNNING
        ramping = exp.status == Experiment.Status.STOPPED and exp.shipped_variant == variant
        if rollout_percent is not None:
            percent = float(rollout_percent)
        else:
            percent = exp.rollout_percent if ramping else FULL_ROLLOUT
        if ramp_step_percent is not None and percent >= FULL_ROLLOUT:
            # Nothing left to grow: the schedule's only step would record a "ramp" from 100
            # to 100 and invalidate every cached configuration for nothing. Usually a
            # forgotten rollout_percent, so it is said rather than ignored.
            raise ExperimentStateError(
                "a scheduled ramp grows a rollout below 100 %: give a rollout_percent below 100",
                field="ramp_step_percent",
            )
        if stopped_here:
            stop_locked(exp, now=now)
        elif ramping:
            if rollout_percent is not None and percent != exp.rollout_percent:
                _rollout_change_locked(exp, rollout_percent=percent, by=by, now=now)
            # A percentage given is a manual setting, even the current one (the API's way to
            # hold a ramp, as ``experiment_rollout_set`` is the CLI's and the admin's): it
            # ends the schedule unless this ship sets a new one.
            if rollout_percent is not None or ramp_step_percent is not None:
                _schedule_save(exp, step=ramp_step_percent, hours=ramp_every_hours, now=now)
            return exp
        _close_live_shipment(exp, by=by, now=now)
        ExperimentShipment.objects.create(
            experiment=exp, variant=variant, rollout_percent=percent, shipped_at=now, shipped_by=by
        )
        _shipped_save(exp, variant=variant, at=now, by=by, percent=percent)
        _schedule_save(exp, step=ramp_step_percent, hours=ramp_every_hours, now=now)
        config_invalidate()
        experiment_change_record(exp, f'"{variant}" shipped to {percent:g} %', now=now, by=by)
    if stopped_here:
        final_results_compute(experiment_id=exp.pk)
    return exp


def experiment_unship(
    *, experiment_id: int, by: str = "", now: datetime | None = None
) -> Experiment:
    """Roll a ship back: the experiment stays stopped and its users fall back to the rules
    without its variant (the control's UI), as after a plain stop. The history row keeps
    who shipped and who rolled back."""
    now = now or timezone.now()
    with transaction.atomic():
        exp = Experiment.objects.select_for_update().get(pk=experiment_id)
        if not exp.shipped_variant:
            raise ExperimentStateError(
                "no variant of this experiment is shipped", field="shipped_variant"
            )
        shipped = exp.shipped_variant
        _close_live_shipment(exp, by=by, now=now)
        # Back to 100 %: the default meaning for the next ship.
        _shipped_save(exp, variant="", at=None, by="", percent=FULL_ROLLOUT)
        _schedule_save(exp, step=None, hours=None, now=now)
        config_invalidate()
        experiment_change_record(exp, f'"{shipped}" rolled back', now=now, by=by)
    return exp


def experiment_rollout_set(
    *, experiment_id: int, rollout_percent: float, by: str = "", now: datetime | None = None
) -> Experiment:
    """Serve the shipped variant to ``rollout_percent`` % of the targeted users from now on.

    Raising it keeps everyone already in (``engine.rollout`` is monotone) and adds the
    next users; lowering it takes back the users added last. 0 keeps the decision
    recorded while serving nobody (a pause; un-ship to roll the decision back). The
    same percentage again records nothing. Either way a scheduled ramp ends: a manual
    setting is the operator taking the ramp over.
    """
    _check_percent(rollout_percent)
    now = now or timezone.now()
    with transaction.atomic():
        exp = Experiment.objects.select_for_update().get(pk=experiment_id)
        if not exp.shipped_variant:
            raise ExperimentStateError(
                "no variant of this experiment is shipped: ship one first",
                field="shipped_variant",
            )
        if float(rollout_percent) != exp.rollout_percent:
            _rollout_change_locked(exp, rollout_percent=rollout_percent, by=by, now=now)
        _schedule_save(exp, step=None, hours=None, now=now)
    return exp


def rollouts_advance(*, now: datetime | None = None) -> dict:
    """Take one step of every scheduled ramp that is due (beat, every few minutes).

    One step per due experiment and run, the next one period after *now*: after an
    outage of the job the ramp resumes step by step rather than jumping several steps
    at once. Each experiment in its own transaction under its row lock, re-checked
    there (a manual change may have ended the schedule since the read).
    """
    now = now or timezone.now()
    due = list(
        Experiment.objects.filter(
            status=Experiment.Status.STOPPED,
            rollout_step_percent__gt=0,
            rollout_next_step_at__lte=now,
        )
        .exclude(shipped_variant="")
        .values_list("pk", flat=True)
    )
    counts = {"due": len(due), "advanced": 0, "completed": 0}
    for pk in due:
        with transaction.atomic():
            exp = Experiment.objects.select_for_update().filter(pk=pk).first()
            if (
                exp is None
                or not exp.shipped_variant
                or exp.rollout_step_percent <= 0
                or exp.rollout_next_step_at is None
                or exp.rollout_next_step_at > now
            ):
                continue
            if exp.rollout_percent >= FULL_ROLLOUT:
                # Already at 100 (set from a shell): end the schedule, record no "step".
                _schedule_save(exp, step=None, hours=None, now=now)
                counts["completed"] += 1
                continue
            percent = ramp_next_percent(exp.rollout_percent, exp.rollout_step_percent)
            _rollout_change_locked(exp, rollout_percent=percent, by=RAMP_ACTOR, now=now)
            if percent >= FULL_ROLLOUT:
                _schedule_save(exp, step=None, hours=None, now=now)
                counts["completed"] += 1
            else:
                _schedule_save(
                    exp, step=exp.rollout_step_percent, hours=exp.rollout_step_hours, now=now
                )
            counts["advanced"] += 1
            logger.info("personalization: %s ramped to %g%%", exp.key, percent)
    return counts
