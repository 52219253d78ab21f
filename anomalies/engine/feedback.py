"""Learning from an operator's "false positive": the same pattern stops raising anomalies.

When an operator says an anomaly was normal, we keep its fingerprint: which way it went,
how far (in the series' own scale units) and which methods fired.
A later candidate on the same series that goes the same way, no further than the dismissed
one (plus a margin), with no method the dismissed one did not have, is suppressed. A
bigger or different excursion still alerts: dismissing a small wobble must not blind the
detector to a real incident.
"""

from __future__ import annotations

from dataclasses import dataclass

# A candidate up to this much bigger than the dismissed one counts as "the same pattern".
MAGNITUDE_MARGIN = 1.25


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
