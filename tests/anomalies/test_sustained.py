"""The sustained-evidence stage and the fresh-run escalation it feeds."""

import numpy as np
import pytest

from anomalies.engine import DetectorConfig, score_series
from anomalies.engine.sustained import SustainedEvidence


def _feed(stage: SustainedEvidence, evidence, valid=None):
    floors, ranks = [], []
    for k, x in enumerate(evidence):
        ok = np.array([True if valid is None else valid[k]])
        floor, rank = stage.floor_and_surprisal(np.array([x]), ok, ok)
        floors.append(float(floor[0]))
        ranks.append(float(rank[0]))
    return floors, ranks


def test_floor_is_the_least_evidence_of_the_last_run_points():
    stage = SustainedEvidence(1, run=3, span=1000.0, record_bonus=0.5)
    floors, _ = _feed(stage, [5.0, 1.0, 5.0, 5.0, 5.0, 7.0])
    assert floors == [0.0, 0.0, 1.0, 1.0, 5.0, 5.0]


def test_a_point_without_a_value_neither_breaks_nor_extends_the_run():
    stage = SustainedEvidence(1, run=3, span=1000.0, record_bonus=0.5)
    floors, _ = _feed(stage, [4.0, 4.0, 0.0, 4.0], valid=[True, True, False, True])
    assert floors == [0.0, 0.0, 0.0, 4.0]  # the gap scores 0 and the run continues past it


def test_a_run_of_one_point_is_the_point_itself():
    stage = SustainedEvidence(1, run=1, span=1000.0, record_bonus=0.5)
    floors, _ = _feed(stage, [3.0, 9.0, 2.0])
    assert floors == [3.0, 9.0, 2.0]
    with pytest.raises(ValueError, match="at least 1"):
        SustainedEvidence(1, run=0, span=1000.0, record_bonus=0.5)


def test_a_run_ranks_high_on_a_series_whose_spikes_are_single_points():
    """Spikes of 20 every 50 points are routine as points, but none lasted: three points
    of 8 in a row are a first, while a fourth spike of 20 is not."""
    history = np.ones(2000)
    history[::50] = 20.0
    stage = SustainedEvidence(1, run=3, span=8000.0, record_bonus=0.5)
    _feed(stage, history)
    _, spike = _feed(stage, [20.0, 1.0, 1.0])
    _, run = _feed(stage, [8.0, 8.0, 8.0])
    assert spike[0] < 1.0  # its floor is 1, like that of almost every run before it
    assert run[-1] > 3.0  # rarer than one point in a thousand of this series' runs


def _latency_with_outage(seed: int):
    rng = np.random.default_rng(seed)
    n = 3000
    ts = 1_700_000_000.0 + 300.0 * np.arange(n)
    values = 120.0 * np.exp(rng.normal(0, 0.3, n))
    spikes = rng.random(n) < 0.005
    values[spikes] *= rng.uniform(3, 6, spikes.sum())  # routine one-point spikes
    values[2400] = 960.0  # a large spike alert opens a one-day pause
    values[2460:2484] *= 3.0  # five hours later, a two-hour outage at three times normal
    return ts, values


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_an_outage_hours_after_a_spike_alert_is_reported(seed):
    # The held-out latency archetype: each point of the outage carries less evidence than
    # the spike that opened the pause and ranks below the routine spikes, so it needs both
    # the sustained rank (to be alert-worthy) and the fresh-run escalation (to get through).
    ts, values = _latency_with_outage(seed)
    alert = DetectorConfig().alert_score
    scores = score_series(ts, values)
    assert scores[2400] >= alert
    assert scores[2460:2484].max() >= alert
    for without in (DetectorConfig(sustained_run=1), DetectorConfig(escalation_run=0)):
        assert score_series(ts, values, without)[2460:2484].max() < alert
