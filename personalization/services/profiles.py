"""Daily recomputation of behaviour profiles and personas from telemetry events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from django.db import transaction
from django.utils import timezone

from telemetry.models import DemoUser
from telemetry.selectors import events_frame, to_datetime

from ..engine.features import EventArrays, UserFeatures, extract_user_features
from ..engine.personas import PERSONAS, PersonaModel, split_by_user
from ..models import PersonaChange, PersonaModelRun, UserProfile
from .config import config_invalidate

DORMANT_AFTER_DAYS = 7.0
POWER_USER_QUANTILE = 0.9


@dataclass(frozen=True)
class PersonaFit:
    """The engine's answer for one window, before anything is written."""

    features: UserFeatures
    persona: list[str | None]
    probabilities: np.ndarray
    model: PersonaModel | None
    report: dict
    note: str


def _segments(features: UserFeatures, purchasers: set[str]) -> list[list[str]]:
    """Descriptive segments used by rule conditions; thresholds come from the population."""
    sessions = features.column("sessions")
    power_cut = float(np.quantile(sessions, POWER_USER_QUANTILE)) if sessions.size else np.inf
    out = []
    for i, uid in enumerate(features.user_ids):
        tags = []
        if sessions[i] >= power_cut and sessions[i] > 1:
            tags.append("power_user")
        if features.column("recency_days")[i] > DORMANT_AFTER_DAYS:
            tags.append("dormant")
        if uid in purchasers:
            tags.append("purchaser")
        out.append(tags)
    return out


def personas_fit(
    features: UserFeatures, *, labels: dict[str, str], model: PersonaModel | None = None
) -> PersonaFit:
    """Fit the mixture; with labelled users, calibrate on half of them and measure on the rest.

    Labels never enter the mixture fit (it is unsupervised); they only set the
    temperature and measure accuracy/calibration on users that did not set it.
    """
    model = model or PersonaModel()
    n_eligible = int(model.eligible(features).sum())
    if n_eligible < model.n_components * 3:
        none = np.full((len(features.user_ids), len(PERSONAS)), np.nan)
        note = f"only {n_eligible} users with enough data: no personas assigned"
        return PersonaFit(features, [None] * len(features.user_ids), none, None, {}, note)
    model.fit(features)
    report: dict = {}
    labelled = [u for u in features.user_ids if labels.get(str(u)) in PERSONAS]
    if labelled:
        calib_mask = split_by_user(labelled, 0.5, seed=0)
        calib = {u: labels[u] for u, m in zip(labelled, calib_mask, strict=True) if m}
        held_out = {u: labels[u] for u, m in zip(labelled, calib_mask, strict=True) if not m}
        model.calibrate(features, calib)
        evaluation = model.evaluate(features, held_out)
        report = {
            "labelled_users": evaluation.n_users,
            "accuracy": evaluation.accuracy,
            "ece": evaluation.ece,
            "brier": evaluation.brier,
            "ece_uncalibrated": evaluation.ece_uncalibrated,
            "brier_uncalibrated": evaluation.brier_uncalibrated,
            "confusion": evaluation.confusion,
        }
    prediction = model.predict(features)
    return PersonaFit(features, prediction.persona, prediction.probabilities, model, report, "")


def profile_attributes_update(*, profile_id: int, attributes: dict) -> UserProfile:
    """Set the operator-owned ``attributes`` of one profile, and nothing else.

    Every other column belongs to ``profiles_recompute``. A full ``save()`` of a
    copy loaded before (or while) the job rewrites the row would put the old
    persona, features and model run back, and the persona history would no longer
    match the stored persona; writing only ``attributes`` cannot revert the job.
    ``save()`` (not ``update()``) so the post-save signal invalidates cached configs.
    """
    with transaction.atomic():
        profile = UserProfile.objects.select_for_update().get(pk=profile_id)
        profile.attributes = attributes
        profile.save(update_fields=["attributes"])
    return profile


def _finite_or_none(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def profiles_recompute(*, days: int = 28, now: datetime | None = None) -> dict:
    """Recompute every active user's profile and persona over the last ``days`` days.

    Profiles of users with no event in the window are marked dormant, with no persona
    (recorded as a persona change), in the same transaction.

    Idempotent: running twice on the same data writes the same profiles and no
    second history row (a change is recorded only when the persona differs).
    """
    if days < 1:
        raise ValueError("days must be at least 1")
    now = now or timezone.now()
    start = now - timedelta(days=days)
    frame = events_frame(start=start, end=now)
    events = EventArrays(
        frame["user_id"], frame["name"], frame["ts"], frame["session_id"],
        list(frame["properties"]),
    )  # fmt: skip
    features = extract_user_features(events, as_of=now.timestamp())
    labels = dict(DemoUser.objects.values_list("user_id", "kind"))
    fit = personas_fit(features, labels=labels)
    purchasers = set(frame["user_id"][frame["name"] == "purchase"].tolist())
    segments = _segments(features, purchasers)

    with transaction.atomic():
        distribution = {p: fit.persona.count(p) for p in PERSONAS}
        report = fit.report
        run = PersonaModelRun.objects.create(
            computed_at=now,
            window_start=start,
            window_end=now,
            users_total=len(features.user_ids),
            users_classified=sum(p is not None for p in fit.persona),
            distribution=distribution,
            temperature=fit.model.temperature if fit.model else 1.0,
            labelled_users=report.get("labelled_users", 0),
            accuracy=_finite_or_none(report.get("accuracy")),
            ece=_finite_or_none(report.get("ece")),
            brier=_finite_or_none(report.get("brier")),
            ece_uncalibrated=_finite_or_none(report.get("ece_uncalibrated")),
            brier_uncalibrated=_finite_or_none(report.get("brier_uncalibrated")),
            confusion=report.get("confusion", {}),
            summary=fit.model.summary() if fit.model else {},
            note=fit.note,
        )
        previous = dict(
            UserProfile.objects.filter(user_id__in=list(features.user_ids)).values_list(
                "user_id", "persona"
            )
        )
        profiles = []
        for i, uid in enumerate(features.user_ids):
            row = features.matrix[i]
            feats = {n: _finite_or_none(v) for n, v in zip(features.names, row, strict=True)}
            persona = fit.persona[i] or ""
            probs = fit.probabilities[i]
            profiles.append(
                UserProfile(
                    user_id=str(uid),
                    features=feats,
                    persona=persona,
                    persona_confidence=_finite_or_none(np.nanmax(probs)) if persona else None,
                    persona_probabilities=(
                        {p: float(v) for p, v in zip(PERSONAS, probs, strict=True)}
                        if persona
                        else {}
                    ),
                    segments=segments[i],
                    sessions=int(feats["sessions"] or 0),
                    event_count=int(feats["event_count"] or 0),
                    last_seen_at=to_datetime(
                        now.timestamp() - (feats["recency_days"] or 0) * 86400
                    ),
                    model_run=run,
                    computed_at=now,
                )
            )
        UserProfile.objects.bulk_create(
            profiles,
            batch_size=1000,
            update_conflicts=True,
            unique_fields=["user_id"],
            update_fields=[
                "features", "persona", "persona_confidence", "persona_probabilities", "segments",
                "sessions", "event_count", "last_seen_at", "model_run", "computed_at",
            ],
        )  # fmt: skip
        # Users with no event in the window are not in ``profiles``: left alone they kept the
        # persona and segments (power_user...) of their last active window for ever, and
        # rules kept matching them. They are dormant now, with no persona.
        # A window with no event at all says the event feed stopped, not that every user
        # left: then no profile is touched, so an ingestion outage cannot wipe every persona.
        gone_changes, gone_count = [], 0
        if features.user_ids.size:
            gone = UserProfile.objects.exclude(model_run=run).exclude(
                persona="", persona_confidence=None, persona_probabilities={}, segments=["dormant"]
            )
            gone_changes = [
                PersonaChange(profile_id=pk, previous_persona=persona, persona="",
                              confidence=None, model_run=run, changed_at=now)
                for pk, persona in gone.exclude(persona="").values_list("pk", "persona")
            ]  # fmt: skip
            gone_count = gone.update(
                persona="", persona_confidence=None, persona_probabilities={},
                segments=["dormant"], computed_at=now,
            )  # fmt: skip
            PersonaChange.objects.bulk_create(gone_changes, batch_size=1000)
        changed = {p.user_id: p for p in profiles if previous.get(p.user_id, "") != p.persona}
        ids = dict(
            UserProfile.objects.filter(user_id__in=list(changed)).values_list("user_id", "id")
        )
        PersonaChange.objects.bulk_create(
            [
                PersonaChange(
                    profile_id=ids[uid],
                    previous_persona=previous.get(uid, ""),
                    persona=p.persona,
                    confidence=p.persona_confidence,
                    model_run=run,
                    changed_at=now,
                )
                for uid, p in changed.items()
            ],
            batch_size=1000,
        )
        config_invalidate()
    return {
        "users": len(profiles),
        "classified": run.users_classified,
        "persona_changes": len(changed) + len(gone_changes),
        "gone_dormant": gone_count,
        "run": run.pk,
    }
