"""What an experiment's lifecycle changes in the product, recorded as change events.

Starting an experiment, stopping it, shipping a variant or ramping its rollout changes
what users see, as a feature flag does: an anomaly that follows names it among the
changes just before its onset (`telemetry.ChangeEvent`, read by the anomaly system).
The experiment targets users, not series, so the change carries no labels and concerns
every series, as a flag flip does in Datadog's change tracking.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.utils import timezone

from telemetry.services import ChangeInvalid, change_record

from ..models import Experiment

logger = logging.getLogger(__name__)


def experiment_change_record(exp: Experiment, what: str, *, now: datetime, by: str = "") -> None:
    """Record `experiment <key>: <what>`. The lifecycle move happens whatever happens here:
    a record the checks refuse is logged, never raised into the move's transaction."""
    try:
        change_record(
            title=f"experiment {exp.key}: {what}",
            at=min(now, timezone.now()),  # a replayed `now` ahead of the clock is not news
            kind="feature_flag",
            source="personalization",
            created_by=by,
        )
    except ChangeInvalid as exc:
        logger.warning("change of experiment %s not recorded: %s", exp.key, exc.errors)
