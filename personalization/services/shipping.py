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
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from ..models import Experiment, ExperimentShipment
from .config import config_invalidate
from .experiments import ExperimentStateError, final_results_compute, stop_locked


def _close_live_shipment(exp: Experiment, *, by: str, now: datetime) -> None:
    ExperimentShipment.objects.filter(experiment=exp, unshipped_at__isnull=True).update(
        unshipped_at=now, unshipped_by=by
    )


def experiment_ship(
    *, experiment_id: int, variant: str, by: str = "", now: datetime | None = None
) -> Experiment:
    """Serve ``variant`` to every targeted user from now on; stop the experiment first
    if it still runs (in the same transaction, so no request sees it stopped but not
    shipped).

    A draft has no evidence to ship from (ship is a decision on a run's results; to
    give everyone a UI without an experiment, write a rule). Shipping another variant
    replaces the shipped one (its history row is closed); shipping the same one again
    changes nothing. The final results of a stop made here are computed once the
    ship has committed, as after ``experiment_stop``.
    """
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
        if stopped_here:
            stop_locked(exp, now=now)
        elif exp.shipped_variant == variant:
            return exp
        _close_live_shipment(exp, by=by, now=now)
        ExperimentShipment.objects.create(
            experiment=exp, variant=variant, shipped_at=now, shipped_by=by
        )
        exp.shipped_variant, exp.shipped_at, exp.shipped_by = variant, now, by
        exp.save(update_fields=["shipped_variant", "shipped_at", "shipped_by", "updated_at"])
        config_invalidate()
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
        _close_live_shipment(exp, by=by, now=now)
        exp.shipped_variant, exp.shipped_at, exp.shipped_by = "", None, ""
        exp.save(update_fields=["shipped_variant", "shipped_at", "shipped_by", "updated_at"])
        config_invalidate()
    return exp
