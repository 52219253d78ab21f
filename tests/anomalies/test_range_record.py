"""The range-record stage: a value beyond what the series has shown earns ranked evidence."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from anomalies.engine import DetectorConfig, score_series
from anomalies.engine.range_record import RangeRecord

CFG = DetectorConfig(range_span=1e12)
YES = np.array([True])


def _feed(stage: RangeRecord, values, scored: bool = True) -> np.ndarray:
    flag = np.array([scored])
    return np.array(
        [stage.bonus_and_update(np.array([v]), YES, np.array([np.nan]), flag)[0] for v in values]
    )


def test_bonus_is_per_doubling_of_the_excess_over_the_margin():
    stage = RangeRecord(1, CFG)
    _feed(stage, np.tile([0.0, 100.0], 10))  # range 0..100, mature
    # 140 is 0.4 of the width above the high: two doublings over the 0.1 margin.
    got = _feed(stage, [140.0])[0]
    assert np.isclose(got, CFG.range_bonus * 2.0)
    # The high is now 140: 150 exceeds it by 10/140 of the width, inside the margin.
    assert _feed(stage, [150.0])[0] == 0.0
    # Below the low counts the same way: -30 is 0.2 of the 0..150 width under it.
    assert np.isclose(_feed(stage, [-30.0])[0], CFG.range_bonus * np.log2(0.2 / 0.1))


def test_no_bonus_during_the_burn_in_but_the_range_still_learns():
    young = RangeRecord(1, CFG)
    assert _feed(young, [0.0, 100.0, 1000.0], scored=False).max() == 0.0  # in the burn-in
    assert np.allclose([young.low[0], young.high[0]], [0.0, 1000.0])
    _feed(young, np.tile([0.0, 100.0], 5))
    assert _feed(young, [1000.0])[0] == 0.0  # a repeat of the high is no record
    assert _feed(young, [1300.0])[0] > 0.0


def test_the_range_relaxes_towards_the_expected_value():
    fast = RangeRecord(1, dataclasses.replace(CFG, range_span=50.0))
    _feed(fast, [0.0, 1000.0])
    for _ in range(500):
        fast.bonus_and_update(np.array([50.0]), YES, np.array([50.0]), YES)
    # One-off extremes are forgotten: both ends came back to the level of 50...
    assert 49.9 < fast.low[0] <= 50.0 <= fast.high[0] < 50.1
    # ...so a move of 10 is now far outside the range, where it was well inside before.
    assert _feed(fast, [60.0])[0] > 0.0


def test_invalid_points_neither_score_nor_learn():
    stage = RangeRecord(2, CFG)
    for _ in range(10):
        bonus = stage.bonus_and_update(
            np.array([1.0, 50.0]), np.array([True, False]), np.full(2, np.nan), np.ones(2, bool)
        )
        assert bonus[1] == 0.0
    assert stage.high[0] == 1.0 and np.isnan(stage.high[1]) and np.isnan(stage.low[1])


def _quiet_then_busy_counter(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Bursts of 100 while the counter is quiet, then a busier counter and a burst of 160."""
    rng = np.random.default_rng(seed)
    n = 3000
    ts = 1_700_000_000.0 + 300.0 * np.arange(n)
    values = rng.poisson(1.0, n).astype(float)
    values[1500:] = rng.poisson(15.0, n - 1500) * rng.choice([1, 1, 1, 2], n - 1500)
    for start in (700, 1000, 1300):
        values[start : start + 3] = 100.0
    values[2500:2503] = 160.0
    return ts, values


@pytest.mark.parametrize("seed", [0, 1])
def test_a_burst_above_every_earlier_burst_alerts_on_a_bursty_counter(seed):
    """The NAB Twitter case: the early bursts were measured against small scales, so their
    evidence outranks a higher burst on the busier series; the range record lifts it."""
    ts, values = _quiet_then_busy_counter(seed)
    cfg = DetectorConfig()
    with_record = score_series(ts, values, cfg)
    without = score_series(ts, values, dataclasses.replace(cfg, range_bonus=0.0))
    assert with_record[2500:2503].max() >= cfg.alert_score > without[2500:2503].max()
    # Before the record, the stage changes nothing: the bursts of 100 repeat a known height.
    assert np.array_equal(with_record[1100:2500], without[1100:2500])


def test_new_highs_the_methods_find_ordinary_never_alert_however_large_the_bonus():
    """A growing series sets a new high at nearly every point: the raw-evidence cap, which
    rank and bonus share, keeps every one of them quiet."""
    rng = np.random.default_rng(0)
    n = 6000
    ts = 1_700_000_000.0 + 300.0 * np.arange(n)
    cfg = DetectorConfig(range_bonus=50.0, range_margin=1e-4)
    for values in (
        100.0 + np.arange(n) + rng.normal(0, 2, n),  # a steep trend
        np.cumsum(rng.poisson(5, n)).astype(float),  # a monotonic counter
    ):
        assert (score_series(ts, values, cfg) >= cfg.alert_score).sum() == 0
