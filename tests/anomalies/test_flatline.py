"""The flatline stage: a run of repeated values judged by how the series usually repeats."""

import numpy as np
import pytest

from anomalies.engine import DetectorConfig, score_series
from anomalies.engine.flatline import CAP, flatline_surprisal, new_flatline_state

START = 1_700_000_000.0
STEP = 300.0


def _feed(values, span: float = 2000.0, valid=None) -> np.ndarray:
    state = new_flatline_state(1)
    previous = np.array([np.nan])
    out = []
    for k, x in enumerate(values):
        ok = np.array([np.isfinite(x) if valid is None else valid[k]])
        out.append(float(flatline_surprisal(state, np.array([x]), previous, ok, span)[0]))
        previous = np.where(ok, x, previous)
    return np.array(out)


def _rounded_cpu(n: int, seed: int) -> np.ndarray:
    """A CPU percentage exported with one decimal: about one point in ten repeats."""
    rng = np.random.default_rng(seed)
    return np.round(2.0 + 0.4 * rng.normal(size=n), 1)


def test_a_first_repeat_costs_the_shrunk_chance_of_repeating_after_a_move():
    # Two moves, no repeat yet: overall repeat rate (0 + 1) / (2 + 2) = 1/4, and with no
    # history of its own the after-a-move probability is that rate: (0 + 50/4) / (2 + 50).
    out = _feed([1.0, 2.0, 2.0], span=np.inf)
    assert out[:2].tolist() == [0.0, 0.0]
    assert out[2] == pytest.approx(-np.log10(12.5 / 52.0))


def test_a_stuck_run_keeps_gaining_evidence_where_the_series_rarely_repeats():
    values = _rounded_cpu(3000, seed=1)
    values[2500:2600] = values[2499]
    out = _feed(values)
    routine = out[500:2499]
    assert routine.max() < 6.0
    stuck = out[2500:2515]
    assert np.all(np.diff(stuck) > 0)  # learning from the run does not erode its evidence
    assert stuck[10] > 9.4  # alone enough to alert (evidence_per_surprisal x 2.5)
    assert out[2500:2600].max() == CAP


def test_a_constant_series_and_a_sticky_gauge_are_not_flatlines():
    assert _feed(np.full(5000, 7.0)).max() < 3.0
    # A gauge refreshed every tenth scrape: runs of nine repeats are its normal...
    rng = np.random.default_rng(3)
    gauge = np.repeat(rng.normal(50.0, 5.0, 500), 10)
    out = _feed(gauge)
    assert out[1000:4000].max() < 1.5
    # ...and one stuck for 200 scrapes is news, if less than on a series that never repeats.
    gauge[4000:4200] = gauge[3999]
    assert _feed(gauge)[4000:4200].max() > 3.0


def test_a_missing_point_neither_breaks_nor_extends_the_run():
    with_gap = _feed([1.0, 2.0, 2.0, np.nan, 2.0], span=np.inf)
    without = _feed([1.0, 2.0, 2.0, 2.0], span=np.inf)
    assert with_gap[3] == 0.0
    assert with_gap[4] == pytest.approx(without[3])


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_stuck_exporter_on_a_rounded_series_alerts_once_within_90_minutes(seed):
    n = 4032
    ts = START + STEP * np.arange(n)
    values = _rounded_cpu(n, seed) + 0.8 * (np.sin(2 * np.pi * np.arange(n) / 288) > 0.7)
    values[3000:3200] = values[2999]
    cfg = DetectorConfig()
    scores = score_series(ts, values, cfg)
    alerts = np.flatnonzero(scores[3000:3200] >= cfg.alert_score)
    assert alerts.size == 1 and alerts[0] < 18
