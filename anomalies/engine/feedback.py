"""Learning from operators: a dismissed pattern stops alerting, a confirmed one keeps alerting.

When an operator says an anomaly was normal, we keep its fingerprint: which way it went,
how far (in the series' own scale units) and which methods fired.
A later candidate on the same series that goes the same way, no further than the dismissed
one (plus a margin), with no method the dismissed one did not have, is suppressed. A
bigger or different excursion still alerts: dismissing a small wobble must not blind the
detector to a real incident.

The other way round: when an operator acknowledged or resolved an anomaly, it was a real
incident, and its recurrence must alert. The detector alone would not: it ranks evidence
against the series' own history, and that history now holds the incident, so the same
outage three days later ranks just under the alert level (an hour at 80 standard
deviations peaked at 0.80 the second time). Ranking that way is what keeps a bursty
series' routine spikes quiet, so the ranking stays; an operator's confirmation is the
information that tells the two apart. A candidate going the same way as a confirmed
incident, at least `RECURRENCE_FRACTION` of its size, recurs (the caller also asks for
near-alert evidence, so a confirmed incident does not turn every wobble into an alert).
"""

from __future__ import annotations

from dataclasses import dataclass

# A candidate up to this much bigger than the dismissed one counts as "the same pattern".
MAGNITUDE_MARGIN = 1.25
# ...and one at least this share of a confirmed incident's size as its recurrence (the
# same margin, the other way).
RECURRENCE_FRACTION = 1.0 / MAGNITUDE_MARGIN
# The name under which an anomaly opened as a recurrence reports it among its methods.
RECURRENCE = "recurrence"


@dataclass(frozen=True)
class Fingerprint:
    direction: int  # +1 above expected, -1 below
    peak_z: float  # largest |observed - expected| / scale over the anomaly
    methods: frozenset[str]


def fingerprint_matches(candidate: Fingerprint, dismissed: Fingerprint) -> bool:
    """True when `candidate` is no worse than `dismissed` in every respect we measure."""
    return (
        candidate.direction == dismissed.direction
        and candidate.peak_z <= dismissed.peak_z * MAGNITUDE_MARGIN
        and candidate.methods <= dismissed.methods
    )


def is_dismissed(candidate: Fingerprint, dismissed: list[Fingerprint]) -> bool:
    return any(fingerprint_matches(candidate, d) for d in dismissed)


def is_recurrence(candidate: Fingerprint, confirmed: list[Fingerprint]) -> bool:
    """True when `candidate` goes the way of a confirmed incident and is nearly as large."""
    return any(
        candidate.direction == c.direction
        and candidate.peak_z >= c.peak_z * RECURRENCE_FRACTION
        and c.peak_z > 0
        for c in confirmed
    )
