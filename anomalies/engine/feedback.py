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


# An incident nobody answered vouches for its recurrence only if it lasted this long: an
# outage lasts, most bursts of a busy counter do not.
UNANSWERED_MIN_SECONDS = 1800.0


@dataclass(frozen=True)
class PastAnomaly:
    """What `unanswered_incident` reads of one of a series' recent anomalies."""

    fingerprint: Fingerprint
    lasted_seconds: float  # onset to the last abnormal point (so far, if it goes on)
    critical: bool
    confirmed: bool  # acknowledged or resolved by an operator
    dismissed: bool  # marked a false positive by an operator
    recurrence: bool  # opened as the recurrence of another incident


def unanswered_incident(recent: list[PastAnomaly]) -> Fingerprint | None:
    """The incident nobody acknowledged that vouches for one recurrence, or None.

    Many receivers acknowledge in their pager, not here, so an outage that repeated three
    days later on a young series was missed: the evidence ranking holds the first one
    (docs/anomalies.md, known limits). Vouching for every critical anomaly nobody
    answered multiplied a bursty counter's alerts (Twitter AAPL: 16 anomalies in 52 days
    became 38 to 54), since each long burst vouched for the next. So the incident must be
    the series' only anomaly of the memory (`recent`, false positives included: they say
    the series has routine excursions), critical and at least half an hour long (an
    outage lasts, a burst rarely does). Its recurrence makes two, so it vouches once; an
    incident that keeps repeating needs an operator to say so. One still going on may
    vouch: a run that reads an hour of points can see it end and repeat.
    """
    if len(recent) != 1:
        return None
    (incident,) = recent
    if (
        incident.confirmed
        or incident.dismissed
        or incident.recurrence
        or not incident.critical
        or incident.lasted_seconds < UNANSWERED_MIN_SECONDS
    ):
        return None
    return incident.fingerprint
