"""Operator rules at their edges: thresholds met exactly, durations met exactly, gaps in
the data during a breach, and a rule turned off and on while a breach goes on. No DB."""

from __future__ import annotations

import numpy as np

from anomalies.engine import StreamingDetector, ThresholdRule
from anomalies.engine.pattern import SILENT_STEPS
from anomalies.engine.rules import evaluate_rules

STEP = 300.0
RULE = ThresholdRule(name="disk full", above=90.0, min_duration_seconds=1800)


def test_a_value_exactly_at_the_threshold_does_not_breach_and_the_duration_is_inclusive():
    ts = STEP * np.arange(7)
    assert not evaluate_rules(ts, np.full(7, 90.0), [RULE], {})[1]["disk full"].any()
    fired = evaluate_rules(ts, np.full(7, 91.0), [RULE], {})[1]["disk full"]
    assert fired.tolist() == [False] * 6 + [True]  # 1,800 s after the first breach, exactly


def _detector(rules: list[ThresholdRule]) -> StreamingDetector:
    det = StreamingDetector.from_states([None], rules=[rules])
    det.update(STEP * np.arange(300)[None, :], np.full((1, 300), 50.0), auto_retrain=False)
    return det


def _fires(det: StreamingDetector, ts: np.ndarray, values: np.ndarray) -> np.ndarray:
    result = det.update(ts[None, :], values[None, :], auto_retrain=False)
    return result.surprisal["rules"][0] > 0


def test_a_breach_is_not_continuous_across_a_silence_of_the_series():
    # One breaching point, then the exporter is down for three hours, then one more: two
    # points do not show 30 minutes above 90 %, and the page went out at once.
    det = _detector([RULE])
    t = STEP * 300
    assert not _fires(det, np.array([t]), np.array([95.0])).any()
    later = t + (SILENT_STEPS + 26) * STEP
    assert not _fires(det, np.array([later]), np.array([95.0])).any()
    # Within one batch as well.
    det = _detector([RULE])
    ts = np.array([t, later, later + 3 * STEP, later + 6 * STEP])
    assert _fires(det, ts, np.full(4, 95.0)).tolist() == [False, False, False, True]
    # A short gap (a point or two missing) does not break a breach.
    det = _detector([RULE])
    ts = t + STEP * np.array([0, 1, 4, 5, 6])
    assert _fires(det, ts, np.full(5, 95.0)).tolist() == [False] * 4 + [True]


def test_a_rule_turned_off_and_on_again_measures_a_new_breach():
    # The rule was disabled while disk was at 95 %; the disk went back to normal, and the
    # rule was enabled hours later during a new breach: it fired at its first point.
    det = _detector([RULE])
    t = STEP * 300
    _fires(det, t + STEP * np.arange(3), np.full(3, 95.0))  # 10 minutes into a breach
    det.rules = [[]]  # disabled: the job passes no rule for this series
    _fires(det, t + STEP * np.arange(3, 40), np.full(37, 50.0))
    det.rules = [[RULE]]
    assert not _fires(det, np.array([t + 40 * STEP]), np.array([95.0])).any()


def test_the_detector_says_which_rules_fired_at_which_point():
    """Two thresholds on one series (warning and critical): the rules family alone says
    only "a rule"; the result names each rule at the points where it fired, with gaps
    (padding) in the block not shifting the columns."""
    warn = ThresholdRule(name="disk warn", above=80.0, min_duration_seconds=0)
    crit = ThresholdRule(name="disk full", above=90.0, min_duration_seconds=2 * STEP)
    det = StreamingDetector.from_states([None, None], rules=[[warn, crit], []])
    warm = np.vstack([STEP * np.arange(300)] * 2)
    det.update(warm, np.full((2, 300), 50.0), auto_retrain=False)
    t = STEP * 300
    ts = np.full((2, 6), np.nan)
    ts[0] = t + STEP * np.arange(6)
    ts[1, :3] = t + STEP * np.arange(3)  # a shorter series: padded after its last point
    values = np.full((2, 6), np.nan)
    values[0] = [85.0, 95.0, 95.0, 95.0, 85.0, 50.0]
    values[1, :3] = 95.0  # far above, but this series has no rule
    result = det.update(ts, values, auto_retrain=False)
    assert result.rules_fired[0] == {
        0: ("disk warn",),
        1: ("disk warn",),
        2: ("disk warn",),
        3: ("disk warn", "disk full"),
        4: ("disk warn",),
    }
    assert result.rules_fired[1] == {}
