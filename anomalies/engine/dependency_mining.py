"""Dependencies learned from incident history: inhibition rules to suggest.

The root-cause ranking names each anomaly's likeliest cause from onsets, one incident at
a time, and an operator who knows that every endpoint waits on the database declares it
once as an inhibition rule. Between the two is what history shows: when the database's
anomalies have been the likeliest cause of the checkout latency's in incident after
incident, and never the other way round, that is a dependency worth declaring, so that
the next incident pages once even where that run's ranking is wrong (an onset outside the
window, a busy CPU that moved in the same step). This module finds those pairs; it never
declares one (an operator accepts a suggestion, which becomes an ordinary rule).

Pure: links in, suggestions out, no Django.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from statistics import median

# A pair suggested needs this many distinct incidents (cause anomalies) at least: two can
# be a coincidence of one bad day.
MIN_INCIDENTS = 3
# ... and to point one way: the share of the pair's incidents in this direction.
MIN_CONFIDENCE = 0.8
# Incidents (cause anomalies) a suggestion quotes, the latest first.
EXAMPLES = 5


@dataclass(frozen=True)
class Link:
    """One anomaly (the effect) whose likeliest cause was an anomaly on another series."""

    cause_anomaly: int
    effect_anomaly: int
    cause_name: str
    cause_labels: Mapping[str, str]
    effect_name: str
    effect_labels: Mapping[str, str]
    lead_seconds: float


@dataclass
class Suggestion:
    """An inhibition rule history supports: `source_series` over `target_series`, with
    `equal` the labels both sides shared in every incident."""

    source_series: str
    target_series: str
    equal: list[str]
    incidents: int
    reverse: int
    confidence: float
    effects: int
    coverage: float
    median_lead_seconds: float
    examples: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.source_series} takes {self.target_series} down"


def suggest_dependencies(
    links: Iterable[Link],
    anomalies_by_name: Mapping[str, int],
    *,
    min_incidents: int = MIN_INCIDENTS,
    min_confidence: float = MIN_CONFIDENCE,
) -> list[Suggestion]:
    """The metric pairs (by name: labels tell instances apart, the dependency is between
    metrics) whose anomalies were the likeliest cause of the other's in at least
    `min_incidents` distinct incidents, in that direction at least `min_confidence` of the
    time. `anomalies_by_name` counts every anomaly of each metric in the same period, for
    `coverage`: the share of the target's anomalies the source explained.

    Most incidents first, then the most one-sided. Pairs of one metric with itself (one
    endpoint's latency before another's) are left out: a rule of a metric over itself
    holds back every instance behind whichever went first.
    """
    incidents: dict[tuple[str, str], set[int]] = defaultdict(set)
    effects: dict[tuple[str, str], set[int]] = defaultdict(set)
    leads: dict[tuple[str, str], list[float]] = defaultdict(list)
    # Label names whose values were equal on both sides in every link of the pair.
    shared: dict[tuple[str, str], set[str]] = {}
    for link in links:
        if link.cause_name == link.effect_name:
            continue
        pair = (link.cause_name, link.effect_name)
        incidents[pair].add(link.cause_anomaly)
        effects[pair].add(link.effect_anomaly)
        leads[pair].append(link.lead_seconds)
        same = {
            k for k, v in link.cause_labels.items() if v != "" and link.effect_labels.get(k) == v
        }
        shared[pair] = shared[pair] & same if pair in shared else same
    found = []
    for pair, causes in incidents.items():
        n = len(causes)
        reverse = len(incidents.get((pair[1], pair[0]), ()))
        confidence = n / (n + reverse)
        if n < min_incidents or confidence < min_confidence:
            continue
        explained = len(effects[pair])
        found.append(
            Suggestion(
                source_series=pair[0],
                target_series=pair[1],
                equal=sorted(shared[pair]),
                incidents=n,
                reverse=reverse,
                confidence=confidence,
                effects=explained,
                coverage=explained / max(anomalies_by_name.get(pair[1], 0), explained),
                median_lead_seconds=float(median(leads[pair])),
                # Anomaly ids grow with time: the latest incidents first.
                examples=sorted(causes, reverse=True)[:EXAMPLES],
            )
        )
    found.sort(key=lambda s: (-s.incidents, -s.confidence, -s.effects, s.name))
    return found
