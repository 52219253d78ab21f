"""The collapse stage: a positive series falling to a fraction of its expected value."""

import numpy as np
import pytest

from anomalies.engine import DetectorConfig, StreamingDetector
from anomalies.engine.collapse import collapse_surprisal, new_collapse_state

START = 1_700_000_000.0
HOUR = 3600.0


def _feed(values, expected) -> np.ndarray:
    cfg = DetectorConfig()
    state = new_collapse_state(1)
    out = []
    for k, (y, e) in enumerate(zip(values, expected, strict=True)):
        count = np.array([float(k)])
        surprisal = collapse_surprisal(
            state, np.array([y]), np.array([e]), np.array([True]), count, cfg
        )
        out.append(float(surprisal[0]))
    return np.array(out)


def _price(seed: int, n: int = 1200) -> tuple[np.ndarray, np.ndarray]:
    """An hourly price: a daily cycle from 0.07 to 0.54, multiplicative noise of 17 %."""
    rng = np.random.default_rng(seed)
    ts = START + HOUR * np.arange(n)
    level = 0.2 * np.exp(np.sin(2 * np.pi * ((ts / HOUR) % 24) / 24))
    return ts, level * np.exp(0.17 * rng.standard_normal(n))


def test_a_fall_is_measured_in_the_series_own_log_deviation():
    # Log deviations of exactly +-0.1: the yardstick settles at 0.1, and a fall to 1 % of
    # the expected value has P = exp(-ln(100) / 0.1), i.e. surprisal ln(100) / (0.1 ln 10).
    values = [np.exp(0.1 if k % 2 else -0.1) for k in range(400)] + [0.01]
    out = _feed(values, np.ones(len(values)))
    assert out[:-1].max() == 0.0
    assert out[-1] == pytest.approx(np.log(100.0) / (0.1 * np.log(10.0)), rel=1e-3)


def test_a_collapse_does_not_widen_its_own_yardstick():
    values = [np.exp(0.1 if k % 2 else -0.1) for k in range(400)] + [0.01] * 3
    out = _feed(values, np.ones(len(values)))
    # Each collapsed point moves the yardstick towards 4 yardsticks (the clip), not towards
    # its own 46: the yardstick grows by a factor 1 + 3a per point, and the third point is
    # judged almost like the first (unclipped it would have fallen from 20 to about 7).
    a = 2.0 / (DetectorConfig().collapse_span + 1.0)
    assert out[-3] == pytest.approx(20.0, rel=1e-3)
    assert out[-1] == pytest.approx(20.0 / (1.0 + 3.0 * a) ** 2, rel=1e-3)


def test_dips_zeros_and_counts_that_are_often_zero_are_not_collapses():
    rng = np.random.default_rng(3)
    calm = np.exp(0.1 * rng.standard_normal(600))
    # A dip to 60 % is the residual views' to judge, and an exact 0 is left to them too.
    dipped = np.concatenate([calm, [0.6, 0.0, 1.0]])
    assert _feed(dipped, np.ones(dipped.size)).max() == 0.0
    # A count around 3 is 0 one time in twenty: its 1s are sampling noise.
    counts = rng.poisson(3.0, 3000).astype(float)
    assert _feed(counts, np.full(counts.size, 3.0)).max() == 0.0


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_price_that_falls_to_half_a_percent_alerts(seed, monkeypatch):
    """On a multiplicative series the fall is only ~7 residual scales (the busy hours set
    the scale): without the stage it peaks at 0.67-0.73, under the alert level."""
    cfg = DetectorConfig()
    ts, values = _price(seed)
    quiet = StreamingDetector(1).update(ts[None], values[None])
    values[900] *= 0.005
    result = StreamingDetector(1).update(ts[None], values[None])
    assert result.scores[0, 900] >= cfg.alert_score
    # Nothing else changes: the same alerts before the fall.
    before = slice(None, 900)
    assert np.array_equal(result.scores[0, before], quiet.scores[0, before])

    import anomalies.engine.collapse as collapse

    monkeypatch.setattr(collapse, "collapse_surprisal", lambda state, y, *a: np.zeros(y.shape))
    without = StreamingDetector(1).update(ts[None], values[None])
    assert without.scores[0, 900] < cfg.alert_score


def test_a_price_held_at_zero_is_left_to_the_flatline_statistic():
    """An exact 0 is not a collapse (an error ratio's first 0 is routine); a price that
    stays at 0 repeats a value, and the flatline statistic finds it within a few points."""
    cfg = DetectorConfig()
    rng = np.random.default_rng(1)
    ts = START + 300.0 * np.arange(3000)
    values = 0.2 * np.exp(np.sin(2 * np.pi * ts / 86400.0) + 0.17 * rng.standard_normal(3000))
    at = 2800 + int(np.argmin(np.sin(2 * np.pi * ts[2800:2988] / 86400.0)))  # at night
    values[at : at + 24] = 0.0
    result = StreamingDetector(1).update(ts[None], values[None])
    assert result.collapsed[0, at : at + 24].max() == 0.0
    alerts = np.flatnonzero(result.scores[0, at : at + 24] >= cfg.alert_score)
    assert alerts.size and alerts[0] <= 3
    assert result.stalled[0, at + alerts[0]] >= cfg.vote_surprisal
