"""An operator's sensitivity and direction for a series (engine/tuning.py)."""

from __future__ import annotations

import numpy as np
import pytest

from anomalies.engine import DetectorConfig, StreamingDetector, Tuning, score_many
from anomalies.engine.tuning import alert_surprisal, evidence_factor
from tests.anomalies.test_engine import seasonal

ALERT = DetectorConfig().alert_score
DAY = 288  # five-minute points


def _scores(values, ts, tuning: Tuning | None) -> np.ndarray:
    return score_many([ts], [values], tunings=[tuning])[0]


def _spike_and_dip() -> tuple[np.ndarray, np.ndarray, int, int]:
    ts, values = seasonal(10 * DAY, seed=11)
    up, down = 5 * DAY, 7 * DAY + 100  # two days apart: each opens its own alert pause
    values[up] += 25.0
    values[down] -= 25.0
    return ts, values, up, down


def test_direction_keeps_only_the_deviations_the_operator_cares_about():
    ts, values, up, down = _spike_and_dip()
    both, above, below = score_many(
        [ts] * 3,
        [values] * 3,
        independent=True,
        tunings=[None, Tuning(direction="above"), Tuning(direction="below")],
    )
    assert both[up] >= ALERT and both[down] >= ALERT
    assert above[up] >= ALERT and above[down] < 0.1
    assert below[down] >= ALERT and below[up] < 0.1


@pytest.mark.parametrize(("seed", "phase_hours"), [(3, 0.0), (3, 17.5), (7, 5.0), (7, 11.0)])
def test_the_echo_of_a_dropped_deviation_does_not_alert_the_other_way(seed, phase_hours):
    """A dip pulls the expected value down, and for an hour the evidence still holding it
    (the short average, a variance shift) sits on points back above that value. Under
    "above" the dip was dropped before the alert pause, so nothing held that echo and it
    alerted one to three points after the dip (at every phase, for these seeds); the same
    for a spike under "below". The pause now opens either way."""
    ts, values = seasonal(12 * DAY, seed=seed, noise=2.0)
    ts = ts + phase_hours * 3600.0
    dips, spikes = values.copy(), values.copy()
    dips[10 * DAY] -= 40.0
    spikes[10 * DAY] += 40.0
    above, below, both = score_many(
        [ts] * 3,
        [dips, spikes, dips],
        independent=True,
        tunings=[Tuning(direction="above"), Tuning(direction="below"), None],
    )
    assert both[10 * DAY] >= ALERT  # the dip is an anomaly, only not one asked for
    assert above[7 * DAY :].max() < ALERT and below[7 * DAY :].max() < ALERT


def test_a_stalled_series_alerts_whichever_direction_was_asked_for():
    ts, values = seasonal(6 * DAY, seed=6)
    stuck = 4 * DAY + 144  # the evening low: stuck under what the daily cycle expects next
    values[stuck : stuck + 60] = values[stuck]
    directions = ("above", "below")
    scores = score_many(
        [ts] * 2, [values] * 2, independent=True, tunings=[Tuning(direction=d) for d in directions]
    )
    for direction, s in zip(directions, scores, strict=True):
        assert s[stuck : stuck + 60].max() >= ALERT, direction


SENSITIVITIES = ("low", "medium", "high")


def test_high_finds_smaller_spikes_than_the_default_and_low_only_larger():
    """Spikes of 3 to 30 noise widths, each on its own copy of a series, scored in one pass
    under every sensitivity: the smallest spike that alerts is ordered high < medium < low,
    and a spike's score never falls as the sensitivity rises."""
    ts, values = seasonal(6 * DAY, seed=21)
    at = 5 * DAY
    sizes = np.arange(3.0, 31.0, 1.0)
    rows = [(s, size) for s in SENSITIVITIES for size in sizes]
    copies = []
    for _, size in rows:
        v = values.copy()
        v[at] += size
        copies.append(v)
    scores = score_many(
        [ts] * len(rows), copies, independent=True, tunings=[Tuning(sensitivity=s) for s, _ in rows]
    )
    at_spike = {(s, size): sc[at] for (s, size), sc in zip(rows, scores, strict=True)}
    for size in sizes:
        low, medium, high = (at_spike[(s, size)] for s in SENSITIVITIES)
        assert low <= medium <= high

    def smallest(sensitivity: str) -> float:
        return min(size for size in sizes if at_spike[(sensitivity, size)] >= ALERT)

    assert smallest("high") < smallest("medium") < smallest("low")


def test_the_alert_rate_on_noise_follows_the_sensitivity():
    """On a month of noise the share of alert-worthy points (before the alert pause) is
    ordered high > medium > low, and "high" stays near its 1 % share."""
    rng = np.random.default_rng(5)
    n = 30 * DAY
    ts = 1_700_000_000.0 + 300.0 * np.arange(n)
    # Heavy-tailed noise, so that the raw evidence does not cap what the rank allows.
    values = 100 + rng.standard_t(3, n) * 5
    det = StreamingDetector(3, fleets=np.arange(3))
    det.tune([Tuning(sensitivity=s) for s in SENSITIVITIES])
    combined = det.update(np.tile(ts, (3, 1)), np.tile(values, (3, 1))).combined
    shares = dict(zip(SENSITIVITIES, np.mean(combined[:, 7 * DAY :] >= ALERT, axis=1)))
    assert shares["high"] > shares["medium"] > shares["low"]
    assert 0.005 < shares["high"] < 0.02  # 1.3 % measured
    assert shares["low"] < 0.003  # 0.17 %


def test_the_default_tuning_changes_nothing_and_no_tuning_changes_what_is_learned():
    ts, values, _, _ = _spike_and_dip()
    det = StreamingDetector(3, fleets=np.arange(3))
    det.tune([None, Tuning(), Tuning(sensitivity="low", direction="below")])
    scores = det.update(np.tile(ts, (3, 1)), np.tile(values, (3, 1))).scores
    assert np.array_equal(scores[0], scores[1])
    assert not np.array_equal(scores[0], scores[2])
    # The state a series carries to the next run is the same whatever its tuning.
    assert det.series_state(0) == det.series_state(2)


def test_the_factor_puts_the_alert_on_the_sensitivity_share():
    cfg = DetectorConfig()
    at = alert_surprisal(cfg.alert_score, cfg.score_half_surprisal)
    assert at == pytest.approx(2.5, abs=0.01)
    assert evidence_factor("medium", at) == 1.0
    assert at / evidence_factor("high", at) == pytest.approx(2.0)  # top 1 %
    assert at / evidence_factor("low", at) == pytest.approx(3.0)  # top 0.1 %


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"sensitivity": "max"}, "sensitivity"), ({"direction": "up"}, "direction")],
)
def test_an_unknown_tuning_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Tuning(**kwargs)


# ------------------------------------------------------------------ the scheduled job


@pytest.mark.django_db
def test_the_job_applies_the_most_specific_tuning_of_each_series():
    from anomalies import services
    from anomalies.models import Anomaly, DetectionTuning
    from telemetry.bulk import insert_samples
    from telemetry.selectors import to_datetime
    from tests.anomalies.test_scoring_job import _series

    latency, ts, values = _series("svc.latency", 1400, seed=3)
    values[1000] -= 40.0  # faster than ever: good news for a latency
    insert_samples([latency.pk] * ts.size, ts, values)
    DetectionTuning.objects.create(name="any series", series_name="", direction="below")
    DetectionTuning.objects.create(name="latencies", series_name="svc.*", direction="both")
    DetectionTuning.objects.create(
        name="this latency", series_name="svc.latency", direction="above"
    )
    DetectionTuning.objects.create(
        name="off", series_name="svc.latency", sensitivity="high", enabled=False
    )
    services.anomalies_score_recent(now=to_datetime(ts[-1]), series_ids=[latency.pk])
    assert not Anomaly.objects.filter(series=latency).exists()
    # Without its own tuning, the pattern's applies: either way, and the dip alerts.
    DetectionTuning.objects.filter(name="this latency").delete()
    other, ts2, values2 = _series("svc.latency2", 1400, seed=3)
    values2[1000] -= 40.0
    insert_samples([other.pk] * ts2.size, ts2, values2)
    services.anomalies_score_recent(now=to_datetime(ts2[-1]), series_ids=[other.pk])
    assert Anomaly.objects.filter(series=other, direction=-1).exists()


def test_a_tuning_with_bad_labels_is_refused_naming_the_field(client_with_role):
    from anomalies.models import DetectionTuning

    client = client_with_role("admin")
    url = "/admin/api/phase3/anomaly/tunings"
    bad = client.post(url, {"name": "t", "labels": ["env"]}, format="json")
    assert bad.status_code == 400 and "labels" in bad.json()
    bad = client.post(url, {"name": "t", "sensitivity": "max"}, format="json")
    assert bad.status_code == 400 and "sensitivity" in bad.json()
    assert not DetectionTuning.objects.exists()
    ok = client.post(
        url, {"name": "t", "series_name": "svc.*", "direction": "above"}, format="json"
    )
    assert ok.status_code == 201, ok.content
    assert client_with_role("viewer").get(url).json()["results"][0]["direction"] == "above"
    assert client_with_role("operator").post(url, {"name": "u"}, format="json").status_code == 403
