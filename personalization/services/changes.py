"""What an experiment's lifecycle changes in the product, recorded as change events.

Starting an experiment, stopping it, shipping a variant or ramping its rollout changes
what users see, as a feature flag does: an anomaly that follows names it among the
changes just before its onset (`telemetry.ChangeEvent`, read by the anomaly system).
The experiment targets users, not series, so the change carries no labels and concerns
every series, as a flag flip does in Datadog's change tracking.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from telemetry.services import change_record_quietly

from ..models import Experiment


def experiment_change_record(exp: Experiment, what: str, *, now: datetime, by: str = "") -> None:
    """Record `experiment <key>: <what>`; the lifecycle move stands whatever happens to the
    record (`change_record_quietly`)."""
    change_record_quietly(
        title=f"experiment {exp.key}: {what}",
        at=min(now, timezone.now()),  # a replayed `now` ahead of the clock is not news
        kind="feature_flag",
        source="personalization",
        created_by=by,
    )
