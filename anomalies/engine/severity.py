"""Severity of an anomaly from how unlikely it was, how big, how long, and who cares.

Operators page on "critical", look at "warning" during the day and let "info" be. The
inputs multiply because each one alone can be misleading: a one-point 8-sigma blip on an
unimportant series is not critical, nor is a long but barely-abnormal drift.

Magnitude is the lesser of improbability (the raw evidence, in units of what an alert
needs) and size (the peak deviation in units of ten scale widths): an anomaly is only as
severe as the weaker of the two. Improbability alone called every alert at least a
warning, since it takes a fixed amount of evidence to alert at all: on the demo world,
26 of 29 anomalies were critical, including a false alarm 4 scale widths off for three
hours. Size alone would call a routine 50-sigma burst of a spiky counter critical. An
operator's rule breach is severe by definition of the rule, whatever its size in scale
units, so it is judged on improbability alone. So is data that stopped (a stuck exporter
repeating a normal value, missing points): it has no size at all, and judged on size it
stayed "info" for as long as the monitoring was blind.
"""

from __future__ import annotations

import math

# Points of "severity index" at which an anomaly becomes a warning / critical.
WARNING_AT = 1.0
CRITICAL_AT = 3.0
# Raw evidence (summed surprisal) that counts as one unit of improbability: about what an
# alert needs (DetectorConfig: alert surprisal 2.5 x evidence_per_surprisal 3.75 = 9.4).
SURPRISAL_UNIT = 10.0
# Deviation from the expected value, in scale widths, that counts as one unit of size.
Z_UNIT = 10.0
# Duration that doubles the weight of an anomaly.
DURATION_UNIT_SECONDS = 1800.0


def severity_index(
    peak_surprisal: float,
    peak_z: float,
    duration_seconds: float,
    importance: float,
    *,
    improbability_only: bool = False,
) -> float:
    """`improbability_only` for an anomaly without a meaningful size: a rule breach, data
    that stopped (see the module docstring)."""
    improbability = max(peak_surprisal, 0.0) / SURPRISAL_UNIT
    size = abs(peak_z) / Z_UNIT if math.isfinite(peak_z) else 0.0
    magnitude = improbability if improbability_only else min(improbability, size)
    persistence = 1.0 + math.log2(1.0 + max(duration_seconds, 0.0) / DURATION_UNIT_SECONDS)
    return magnitude * persistence * max(importance, 0.0)


def classify_severity(
    peak_surprisal: float,
    peak_z: float,
    duration_seconds: float,
    importance: float,
    *,
    improbability_only: bool = False,
) -> str:
    """'info', 'warning' or 'critical'."""
    index = severity_index(
        peak_surprisal,
        peak_z,
        duration_seconds,
        importance,
        improbability_only=improbability_only,
    )
    if index >= CRITICAL_AT:
        return "critical"
    if index >= WARNING_AT:
        return "warning"
    return "info"
