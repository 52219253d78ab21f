"""Factories and event helpers for personalization tests (ids never collide with demo users)."""

from __future__ import annotations

from datetime import datetime, timedelta

import factory
from django.utils import timezone

from personalization.models import Experiment, PersonalizationRule, UserProfile
from telemetry.models import Event


class UserProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = UserProfile

    user_id = factory.Sequence(lambda n: f"t-user-{n}")
    persona = "optimizer"
    persona_confidence = 0.9


class RuleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PersonalizationRule

    key = factory.Sequence(lambda n: f"t-rule-{n}")
    name = factory.LazyAttribute(lambda o: o.key)
    conditions = factory.LazyFunction(dict)
    action = factory.LazyFunction(lambda: {"banner": {"show": True}})
    priority = 10


class ExperimentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Experiment

    key = factory.Sequence(lambda n: f"t-exp-{n}")
    name = factory.LazyAttribute(lambda o: o.key)
    variants = factory.LazyFunction(
        lambda: [{"name": "control", "weight": 0.5}, {"name": "treatment", "weight": 0.5}]
    )
    primary_metric = factory.LazyFunction(lambda: {"kind": "conversion", "event": "t_convert"})
    status = Experiment.Status.RUNNING
    starts_at = factory.LazyFunction(lambda: timezone.now() - timedelta(days=7))


def add_events(rows: list[tuple[str, str, datetime, dict]]) -> None:
    """rows: (user_id, name, ts, properties)."""
    Event.objects.bulk_create(
        [Event(user_id=u, name=n, ts=t, session_id=f"{u}-s", properties=p) for u, n, t, p in rows]
    )
