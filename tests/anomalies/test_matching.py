"""Rules, playbooks and silences name series by a shell-style pattern plus labels."""

from __future__ import annotations

import pytest
from django.utils import timezone

from anomalies import services
from anomalies.matching import series_matches
from anomalies.models import Anomaly, DetectionRule, ResponseExecution, ResponsePlaybook
from anomalies.services.playbooks import queue_responses
from telemetry.bulk import insert_samples
from telemetry.selectors import to_datetime
from telemetry.services import series_ensure
from tests.anomalies.factories import AnomalyFactory
from tests.anomalies.test_services import _synthetic


@pytest.mark.parametrize(
    ("pattern", "required", "name", "labels", "matches"),
    [
        ("", {}, "anything", {}, True),  # a playbook for any series
        ("disk.used", {}, "disk.used", {}, True),  # a plain name is itself
        ("disk.used", {}, "disk.used.sda", {}, False),
        ("disk.used.*", {}, "disk.used.sda", {}, True),
        ("disk.used.sd[ab]", {}, "disk.used.sdc", {}, False),
        ("Disk.*", {}, "disk.used", {}, False),
        ("*", {"env": "prod"}, "cpu", {"env": "prod", "az": "a"}, True),
        ("*", {"env": "prod"}, "cpu", None, False),
        # An empty value is no label (telemetry's rule): env="" names the series without env.
        ("*", {"env": ""}, "cpu", {"host": "a"}, True),
        ("*", {"env": ""}, "cpu", None, True),
        ("*", {"env": ""}, "cpu", {"env": "prod"}, False),
        ("*", {"env": "prod"}, "cpu", {"env": ""}, False),
    ],
)
def test_series_match_by_pattern_and_labels(pattern, required, name, labels, matches):
    assert series_matches(pattern, required, name, labels) is matches


@pytest.mark.parametrize(
    ("required", "labels", "matches"),
    [
        ({"host": "a", "env": ""}, {"host": "a"}, True),
        ({"host": "a"}, {"host": "a", "env": ""}, True),
        ({"host": "a"}, {"host": "a", "core": "1"}, False),
    ],
)
def test_exact_labels_ignore_empty_values(required, labels, matches):
    assert series_matches("cpu", required, "cpu", labels, exact_labels=True) is matches


@pytest.mark.django_db
def test_a_rule_with_a_pattern_applies_to_every_series_it_names():
    named = []
    for name in ("disk.used.sda", "disk.used.sdb", "disk.free.sda"):
        series, ts, values = _synthetic(name, n=600, seed=1, daily=0.0)
        values[500:520] = 150.0  # above the limit for 100 minutes on every disk series
        insert_samples([series.pk] * 600, ts, values)
        named.append(series)
    DetectionRule.objects.create(
        name="disk nearly full", series_name="disk.used.*", above=140.0, min_duration_seconds=600
    )
    services.anomalies_score_recent(now=to_datetime(ts[-1]), series_ids=[s.pk for s in named])
    by_rule = {
        s.name: any("rules" in a.methods for a in Anomaly.objects.filter(series=s)) for s in named
    }
    assert by_rule == {"disk.used.sda": True, "disk.used.sdb": True, "disk.free.sda": False}


@pytest.mark.django_db
def test_a_playbook_with_a_pattern_answers_for_every_series_it_names():
    ResponsePlaybook.objects.create(
        name="checkout pages", action="email", target="ops@example.com", series_name="checkout.*"
    )
    hit = [
        AnomalyFactory(series=series_ensure(name=n))
        for n in ("checkout.latency", "checkout.errors")
    ]
    miss = AnomalyFactory(series=series_ensure(name="search.latency"))
    assert queue_responses({a.pk for a in [*hit, miss]}, now=timezone.now()).queued == 2
    assert set(ResponseExecution.objects.values_list("anomaly_id", flat=True)) == {
        a.pk for a in hit
    }


@pytest.mark.django_db
def test_an_ongoing_anomaly_that_escalates_reaches_the_playbooks_of_its_new_severity():
    """A warning that grows into an outage must page whoever only takes critical alerts."""
    ResponsePlaybook.objects.create(
        name="chat", action="email", target="team@example.com", min_severity="warning"
    )
    ResponsePlaybook.objects.create(
        name="pager", action="email", target="oncall@example.com", min_severity="critical"
    )
    anomaly = AnomalyFactory(series=series_ensure(name="api.latency"), severity="warning")
    assert queue_responses({anomaly.pk}, now=timezone.now()).queued == 1
    Anomaly.objects.filter(pk=anomaly.pk).update(severity="critical")
    assert queue_responses({anomaly.pk}, now=timezone.now()).queued == 1
    sent = dict(ResponseExecution.objects.values_list("playbook__name", "repeats"))
    assert sent == {"chat": 1, "pager": 0}  # the chat message is grouped, not sent again
