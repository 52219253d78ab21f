"""Severity of an anomaly from how unlikely it was, how long it lasted and who cares.

Operators page on "critical", look at "warning" during the day and let "info" be. The
three inputs multiply because each one alone can be misleading: a one-point 8-sigma blip on
an unimportant series is not critical, nor is a long but barely-abnormal drift.
"""

from __future__ import annotations

import math

# Points of "severity index" at which an anomaly becomes a warning / critical.
WARNING_AT = 1.0
CRITICAL_AT = 2.0
# Surprisal (-log10 p) that counts as one unit of magnitude.
SURPRISAL_UNIT = 8.0
# Duration that doubles the weight of an anomaly.
DURATION_UNIT_SECONDS = 1800.0


def severity_index(peak_surprisal: float, duration_seconds: float, importance: float) -> float:
    magnitude = max(peak_surprisal, 0.0) / SURPRISAL_UNIT
    persistence = 1.0 + math.log2(1.0 + max(duration_seconds, 0.0) / DURATION_UNIT_SECONDS)
    return magnitude * persistence * max(importance, 0.0)


def classify_severity(peak_surprisal: float, duration_seconds: float, importance: float) -> str:
    """'info', 'warning' or 'critical'."""
    index = severity_index(peak_surprisal, duration_seconds, importance)
    if index >= CRITICAL_AT:
        return "critical"
    if index >= WARNING_AT:
        return "warning"
    return "info"
