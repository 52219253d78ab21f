"""Factories for insights rows, for API tests that do not need a trained model."""

from __future__ import annotations

import factory
from django.utils import timezone

from insights.engine.registry import artefact_dump
from insights.models import Insight, MLModel, Segment

_ARTEFACT = artefact_dump({"placeholder": True})


class MLModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MLModel

    name = factory.Sequence(lambda n: f"model-{n}")
    kind = MLModel.Kind.CLUSTERING
    version = 1
    training_rows = 100
    holdout_rows = 30
    primary_metric = "silhouette"
    primary_score = factory.Faker("pyfloat", min_value=0.1, max_value=0.9)
    metrics = factory.LazyAttribute(lambda o: {"silhouette": o.primary_score})
    artefact = _ARTEFACT.payload
    artefact_sha256 = _ARTEFACT.sha256
    artefact_size = _ARTEFACT.size
    is_active = False


class SegmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Segment

    model = factory.SubFactory(MLModelFactory, is_active=True)
    label = factory.Sequence(int)
    name = factory.Sequence(lambda n: f"segment {n}")
    size = 50
    share = 0.25


class InsightFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Insight

    dedup_key = factory.Sequence(lambda n: f"test-key-{n}")
    category = Insight.Category.SEGMENT
    source = "insights"
    title = factory.Sequence(lambda n: f"finding {n}")
    body = "words"
    impact = factory.Faker("pyfloat", min_value=0.1, max_value=1.0)
    confidence = factory.Faker("pyfloat", min_value=0.1, max_value=1.0)
    novelty = 1.0
    priority = factory.LazyAttribute(lambda o: o.impact * o.confidence * o.novelty)
    priority_explanation = "test"
    last_seen_at = factory.LazyFunction(timezone.now)
