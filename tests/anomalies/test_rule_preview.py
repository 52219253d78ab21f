"""Rule preview: "would this rule have fired?" over a series' history.

The engine part (no DB) on data with known answers and against the streaming detector;
the API part on PostgreSQL, checked against what the scoring job opens on the same data.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from anomalies import selectors, services
from anomalies.engine import StreamingDetector, ThresholdRule
from anomalies.engine.pattern import SILENT_STEPS
from anomalies.engine.rule_preview import learned_step, learned_steps, preview_rule
from anomalies.models import Anomaly, DetectionRule, DetectorState
from anomalies.selectors import previews
from telemetry.bulk import insert_samples
from telemetry.models import RollupState
from telemetry.selectors import to_datetime
from telemetry.services import rollups_update, samples_enforce_retention, series_ensure
from tests.conftest import set_aside_telemetry

STEP = 300.0
RULE = ThresholdRule(name="queue too long", above=90.0, min_duration_seconds=1800)


def _history() -> tuple[np.ndarray, np.ndarray]:
    """Five-minute points at 50, with breaches whose answers are known (index = ts / STEP)."""
    idx = np.arange(300)
    values = np.full(idx.size, 50.0)
    values[10:26] = 95.0  # 16 points: fires at 16 (30 minutes after 10), ends at 25
    values[20] = 99.0  # its peak
    values[40:45] = 95.0  # 20 minutes: shorter than the duration, never fires
    values[60:90] = 95.0  # 25 minutes, a silence of the exporter, 25 minutes: never fires
    values[100:109] = 95.0  # two points missing in it: one breach, fires at 106
    values[195:211] = 95.0  # spans the window start (200) used below: fires at 201
    values[290:] = 91.0  # still going on at the last point: fires at 296
    keep = ~(((idx >= 65) & (idx < 85)) | (idx == 104) | (idx == 105))
    return STEP * idx[keep], values[keep]


def test_episodes_have_the_known_starts_firing_times_ends_and_peaks():
    ts, values = _history()
    preview = preview_rule(ts, values, RULE)
    got = [
        (e.started_at / STEP, e.fired_at / STEP, e.ended_at / STEP, e.peak, e.ongoing)
        for e in preview.episodes
    ]
    assert got == [
        (10, 16, 25, 99.0, False),
        (100, 106, 108, 95.0, False),
        (195, 201, 210, 95.0, False),
        (290, 296, 299, 91.0, True),
    ]
    # Each gap moves the learned step up by 5 %, as in the detector (a streaming median).
    assert STEP <= preview.step_seconds < 1.25 * STEP
    assert preview.max_gap_seconds == SILENT_STEPS * preview.step_seconds
    assert [e.points for e in preview.episodes] == [16, 7, 16, 10]


def test_a_breach_split_by_a_silence_does_not_fire_and_a_short_gap_does_not_split_one():
    ts, values = _history()
    fired = {e.started_at / STEP for e in preview_rule(ts, values, RULE).episodes}
    assert 60 not in fired and 85 not in fired and 100 in fired
    # Without the silence rule the two halves (50 minutes in all) would have fired.
    joined = preview_rule(ts, values, RULE, step_seconds=np.inf)
    assert 60 in {e.started_at / STEP for e in joined.episodes}


def test_a_breach_spanning_the_window_start_is_measured_from_before_it():
    ts, values = _history()
    since = 200 * STEP
    preview = preview_rule(ts, values, RULE, since=since)
    # Only the episodes firing in the window; the one spanning its start fires at 201 as
    # the job fires it, its start (195) read from the history before the window.
    assert [(e.started_at / STEP, e.fired_at / STEP) for e in preview.episodes] == [
        (195, 201),
        (290, 296),
    ]
    assert all(e.start_known for e in preview.episodes)
    assert preview.firing_points == (210 - 201 + 1) + (299 - 296 + 1)
    # Read from the window start only, the breach seems to begin there and fires late:
    # which is why the service reads min_duration_seconds of history before the window.
    late = preview_rule(ts[ts >= since], values[ts >= since], RULE, since=since)
    first = late.episodes[0]
    assert first.fired_at / STEP == 206 and not first.start_known


def test_a_breach_shorter_than_the_duration_is_counted_but_never_fires():
    ts, values = _history()
    window = (ts >= 30 * STEP) & (ts < 50 * STEP)
    preview = preview_rule(ts[window], values[window], RULE)
    assert preview.episodes == [] and preview.breaching_points == 5
    assert preview_rule(ts[window], values[window], RULE.__class__("now", above=90.0)).episodes
    # No breach at all, and no data at all.
    assert preview_rule(ts[:5], values[:5], RULE).episodes == []
    empty = preview_rule(np.empty(0), np.empty(0), RULE)
    assert empty.episodes == [] and empty.step_seconds == np.inf


def test_a_flapping_rule_lists_its_newest_episodes_and_counts_them_all():
    ts, values = _history()
    every = preview_rule(ts, values, RULE)
    newest = preview_rule(ts, values, RULE, limit=2)
    assert newest.count == every.count == len(every.episodes) == 4
    assert newest.episodes == every.episodes[-2:]


def test_below_rules_and_bands_peak_at_the_value_farthest_beyond_its_threshold():
    ts = STEP * np.arange(6)
    band = ThresholdRule(name="band", above=90.0, below=10.0)
    preview = preview_rule(ts, np.array([50, 95, 2, 99, 50, 5.0]), band)
    # 95, 2, 99 are one breach (each point beyond one bound); 2 is 8 under, 99 is 9 over.
    assert [(e.started_at, e.ended_at, e.peak) for e in preview.episodes] == [
        (STEP, 3 * STEP, 99.0),
        (5 * STEP, 5 * STEP, 5.0),
    ]


def test_coarse_history_is_judged_against_its_own_width():
    # Hourly rollups before the raw data: with the five-minute step's silence rule every
    # hourly point would break the breach, and a breach of hours would never fire.
    hourly = 3600.0 * np.arange(10)
    raw = hourly[-1] + STEP * np.arange(1, 13)
    ts = np.r_[hourly, raw]
    values = np.r_[np.full(7, 50.0), np.full(3, 95.0), np.full(12, 95.0)]
    rule = ThresholdRule(name="long", above=90.0, min_duration_seconds=9000)
    coarse = preview_rule(ts, values, rule, coarse_until=raw[0], coarse_step=3600.0)
    assert coarse.step_seconds == STEP
    assert [e.started_at for e in coarse.episodes] == [hourly[7]]
    assert coarse.episodes[0].fired_at == hourly[7] + 9000  # 2.5 hours, on a raw point
    assert preview_rule(ts, values, rule, step_seconds=STEP).episodes == []


def _detector_firing(ts: np.ndarray, values: np.ndarray, rule: ThresholdRule, chunks: int):
    """Timestamps at which the streaming detector fires `rule`, fed in `chunks` calls."""
    det = StreamingDetector.from_states([None], rules=[[rule]])
    fired = []
    for part in np.array_split(np.arange(ts.size), chunks):
        result = det.update(ts[None, part], values[None, part], auto_retrain=False)
        fired.extend(
            float(ts[part][c]) for c, names in result.rules_fired[0].items() if rule.name in names
        )
    return np.array(sorted(fired)), float(det.step[0])


@pytest.mark.parametrize("chunks", [1, 7])
def test_the_preview_fires_exactly_where_the_streaming_detector_does(chunks):
    rng = np.random.default_rng(3)
    n = 1500
    ts = STEP * np.arange(n) + rng.uniform(-20, 20, n)  # a jittered scraper
    # Silences of the exporter (well beyond ten steps) and a few lost points.
    drop = np.zeros(n, dtype=bool)
    for start in rng.choice(np.arange(50, n - 60), 8, replace=False):
        drop[start : start + int(rng.choice([1, 2, 25, 40]))] = True
    ts, values = ts[~drop], np.cumsum(rng.normal(0, 3, n))[~drop] + 50
    rule = ThresholdRule(
        name="walk", above=float(np.quantile(values, 0.7)), min_duration_seconds=900
    )
    expected, step = _detector_firing(ts, values, rule, chunks)
    assert learned_step(ts) == pytest.approx(step)
    preview = preview_rule(ts, values, rule)
    assert preview.firing_points == expected.size > 0
    # Each episode fires at a point the detector fires at, and nothing fires outside them.
    fired_at = np.array([e.fired_at for e in preview.episodes])
    assert np.isin(fired_at, expected).all()
    inside = np.zeros(expected.size, dtype=bool)
    for e in preview.episodes:
        inside |= (expected >= e.fired_at) & (expected <= e.ended_at)
    assert inside.all()


def test_a_silence_is_judged_against_the_step_learned_then_not_the_last_one():
    """A series scraped every minute, later every ten minutes: while it was at one minute
    the job broke a breach on a 30-minute silence (ten steps of one minute); judged with
    the ten-minute step learned at the end, the preview joined the halves and fired."""
    minute = 60.0 * np.arange(300)
    ts = np.r_[minute, minute[-1] + 600.0 * np.arange(1, 151)]
    values = np.full(ts.size, 50.0)
    values[100:115] = values[145:160] = 95.0  # 15 minutes each, 30 minutes of silence between
    keep = (np.arange(ts.size) < 115) | (np.arange(ts.size) >= 145)
    ts, values = ts[keep], values[keep]
    rule = ThresholdRule(name="joined", above=90.0, min_duration_seconds=1200)
    expected, step = _detector_firing(ts, values, rule, chunks=60)
    assert expected.size == 0 and SILENT_STEPS * step > 1800
    preview = preview_rule(ts, values, rule)
    assert preview.firing_points == 0 and preview.episodes == []
    assert preview.step_seconds == pytest.approx(step)
    # The same halves with the silence within ten one-minute steps: one breach that fires.
    close = ts.copy()
    close[115:] -= 1800 - 540
    assert preview_rule(close, values, rule).count == 1


def test_the_learned_step_follows_the_detector_on_a_changing_interval():
    ts = np.r_[60.0 * np.arange(500), 60.0 * 499 + 300.0 * np.arange(1, 400)]
    det = StreamingDetector.from_states([None])
    det.update(ts[None, :], np.full((1, ts.size), 1.0), auto_retrain=False)
    assert learned_step(ts) == pytest.approx(float(det.step[0]))
    assert learned_step(np.array([5.0])) == np.inf


def test_the_learned_steps_follow_the_detector_on_an_irregular_series_quickly():
    """A series pushed on change moves its step at nearly every interval: the replay took
    8.7 s for a month of 5-15 s intervals (a numpy scan and call per move); it must stay
    exactly the detector's step at every point."""
    rng = np.random.default_rng(5)
    ts = np.cumsum(rng.uniform(5, 15, 1200))
    ts[500:600] = ts[499] + 60.0 * np.arange(1, 101)  # and a calmer stretch
    ts[600:] = ts[599] + np.cumsum(rng.uniform(5, 15, 600))
    det = StreamingDetector.from_states([None])
    steps = learned_steps(ts)
    for part in np.array_split(np.arange(ts.size), 6):
        det.update(ts[None, part], np.ones((1, part.size)), auto_retrain=False)
        assert steps[part[-1]] == float(det.step[0])
    month = np.cumsum(rng.uniform(5, 15, 259_200))
    started = time.perf_counter()
    learned_steps(month)
    assert time.perf_counter() - started < 3.0


# ---------------------------------------------------------------- service and API (DB)

BASE = "/admin/api/phase3/anomaly/rules/"


def _queue_history(name: str, n: int = 1440):
    """Five days of a calm five-minute series ending now, with mild breaches of `limit`:
    two long ones (fire), a short one and one split by a silence of the exporter (never)."""
    rng = np.random.default_rng(7)
    series = series_ensure(name=name, labels={"queue": "celery"})
    end = np.floor(timezone.now().timestamp() / STEP) * STEP
    ts = end - STEP * np.arange(n)[::-1]
    values = 100 + rng.normal(0, 1.0, n)
    limit = float(values.max()) + 1.0
    for a, b in ((300, 320), (600, 605), (900, 906), (926, 932), (1200, 1230)):
        values[a:b] = limit + 0.5
    keep = np.ones(n, dtype=bool)
    keep[906:926] = False  # 100 minutes without data in the middle of a breach
    insert_samples([series.pk] * int(keep.sum()), ts[keep], values[keep])
    return series, ts, limit


@pytest.mark.django_db
def test_the_preview_agrees_with_the_anomalies_the_scoring_job_opens(client_with_role):
    series, ts, limit = _queue_history("svc.queue.preview")
    fields = {
        "series_name": "svc.queue.*",
        "labels": {"queue": "celery"},
        "above": limit,
        "min_duration_seconds": 1800,
    }
    response = client_with_role("operator").post(BASE + "preview", fields, format="json")
    assert response.status_code == 200, response.json()
    answer = response.json()
    assert answer["series_matched"] == answer["series_previewed"] == 1
    assert not answer["capped"] and answer["source"] == "raw" and answer["days"] == 7
    (row,) = answer["series"]
    assert row["series_id"] == series.pk
    fired = [parse_datetime(e["fired_at"]) for e in row["episodes"]]
    # 30 minutes into the two long breaches; the short and the split ones never fire.
    assert fired == [to_datetime(ts[306]), to_datetime(ts[1206])]
    assert answer["count"] == row["count"] == 2 and answer["series_firing"] == 1
    assert [e["peak"] for e in row["episodes"]] == [limit + 0.5] * 2
    assert not DetectionRule.objects.exists()  # nothing saved

    # The operator saves it; the job, run as beat runs it (in several passes), opens one
    # anomaly naming the rule per previewed episode, open when the preview says it fired.
    rule = DetectionRule.objects.create(name="queue too long", **fields)
    for k in (700, 1000, 1300, ts.size - 1):
        services.anomalies_score_recent(now=to_datetime(ts[k]), series_ids=[series.pk])
    named = list(
        Anomaly.objects.filter(series=series, rules_fired__contains=["queue too long"]).order_by(
            "started_at"
        )
    )
    assert len(named) == len(fired)
    # The silence rule used the step the job learned (raised 5 % by the gap).
    assert row["step_seconds"] == DetectorState.objects.get(series=series).step_seconds > STEP
    for anomaly, at in zip(named, fired, strict=True):
        assert anomaly.detected_at <= at <= anomaly.last_seen_at
    # The saved rule's preview is the same answer.
    saved = client_with_role("operator").get(f"{BASE}{rule.pk}/preview")
    assert saved.status_code == 200 and saved.json()["series"] == answer["series"]


@pytest.mark.django_db
def test_a_breach_going_on_at_the_window_start_fires_when_the_job_fires_it(client_with_role):
    series, ts, limit = _queue_history("svc.queue.window")
    # The first long breach (points 300-319) spans the start of a window opened 15 minutes
    # into it: it fires at 306 all the same, read from the history before the window.
    now = to_datetime(ts[300] + 15 * 60 + 4 * 86400)
    answer = selectors.rule_preview(
        series_name=series.name,
        labels={},
        above=limit,
        below=None,
        min_duration_seconds=1800,
        days=4,
        now=now,
    )
    first = answer["series"][0]["episodes"][0]
    assert first["started_at"] == to_datetime(ts[300]) and first["start_known"]
    assert first["fired_at"] == to_datetime(ts[306]) and answer["since"] > first["started_at"]


@pytest.mark.django_db
def test_the_preview_matches_series_as_live_scoring_does_and_caps_them(
    client_with_role, monkeypatch
):
    for name, labels in (
        ("disk.used.sda", {"host": "a"}),
        ("disk.used.sdb", {"host": "b"}),
        ("disk.used.sdc", {}),
        ("disk.free.sda", {"host": "a"}),
    ):
        series_ensure(name=name, labels=labels)
    client = client_with_role("operator")

    def names(**fields) -> list[str]:
        body = {"above": 90.0, **fields}
        response = client.post(BASE + "preview", body, format="json")
        assert response.status_code == 200, response.json()
        return sorted(row["series"] for row in response.json()["series"])

    assert names(series_name="disk.used.*") == [
        "disk.used.sda{host=a}",
        "disk.used.sdb{host=b}",
        "disk.used.sdc",
    ]
    assert names(series_name="disk.used.*", labels={"host": "a"}) == ["disk.used.sda{host=a}"]
    assert names(series_name="disk.used.*", labels={"host": ""}) == ["disk.used.sdc"]
    assert names(series_name="DISK.*") == []  # case-sensitive, as live scoring
    monkeypatch.setattr(previews, "RULE_PREVIEW_MAX_SERIES", 2)
    capped = client.post(BASE + "preview", {"series_name": "disk.*", "above": 1}, format="json")
    answer = capped.json()
    assert answer["capped"] and answer["series_matched"] == 4
    assert answer["series_previewed"] == len(answer["series"]) == 2
    assert "first 2" in answer["note"]
    # The points read are capped too: past the budget, no further series is read.
    _queue_history("disk.used.sdz", n=300)
    monkeypatch.setattr(previews, "RULE_PREVIEW_MAX_SERIES", 50)
    monkeypatch.setattr(previews, "RULE_PREVIEW_MAX_POINTS", 100)
    answer = client.post(BASE + "preview", {"series_name": "disk.used.*", "above": 1}).json()
    # By name, the three empty series come first and cost nothing; the fourth has 300
    # points, after which the budget is spent (there is no fifth series here to skip).
    assert answer["series_previewed"] == 4 and not answer["capped"]
    series_ensure(name="disk.used.sdzz")
    answer = client.post(BASE + "preview", {"series_name": "disk.used.*", "above": 1}).json()
    assert answer["series_previewed"] == 4 and answer["capped"]
    assert answer["series_matched"] == 5


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"series_name": "x"}, "above"),
        ({"series_name": "x", "above": 1.0, "below": 2.0}, "below"),
        ({"series_name": "x", "above": 1.0, "labels": {"env": 1}}, "labels"),
        ({"series_name": "x", "above": 1.0, "severity": "loud"}, "severity"),
        ({"series_name": "x" * 201, "above": 1.0}, "series_name"),
        ({"series_name": "x", "above": 1.0, "min_duration_seconds": -1}, "min_duration_seconds"),
        ({"above": 1.0}, "series_name"),
    ],
)
def test_a_bad_preview_is_refused_naming_the_field(client_with_role, body, field):
    response = client_with_role("operator").post(BASE + "preview", body, format="json")
    assert response.status_code == 400 and field in response.json(), response.json()


@pytest.mark.django_db
def test_previews_need_the_operator_role_and_check_the_window(client_with_role):
    rule = DetectionRule.objects.create(name="r", series_name="x", above=1.0)
    viewer = client_with_role("viewer")
    assert viewer.post(BASE + "preview", {"series_name": "x", "above": 1}).status_code == 403
    assert viewer.get(f"{BASE}{rule.pk}/preview").status_code == 403
    operator = client_with_role("operator")
    assert operator.get(f"{BASE}{rule.pk}/preview?days=2").json()["days"] == 2
    # The body is the rule as it would be saved, its own name included (an edit).
    body = {"name": "r", "series_name": "x", "above": 1.0, "enabled": True}
    assert operator.post(BASE + "preview?days=3", body, format="json").json()["days"] == 3
    for days in (0, 31, "week"):
        refused = operator.post(f"{BASE}preview?days={days}", body, format="json")
        assert refused.status_code == 400 and "days" in refused.json()
    refused = operator.get(f"{BASE}{rule.pk}/preview?days=99")
    assert refused.status_code == 400 and "days" in refused.json()
    assert operator.get(f"{BASE}999999/preview").status_code == 404
    # A rule written from a shell that the job would skip is refused, not a 500.
    broken = DetectionRule.objects.create(name="shell", series_name="x", labels=[1])
    refused = operator.get(f"{BASE}{broken.pk}/preview")
    assert refused.status_code == 400 and {"labels", "above"} <= set(refused.json())


@pytest.mark.django_db
def test_history_past_the_raw_retention_is_previewed_from_the_hourly_rollups(settings):
    # Raw samples kept 3 days: a 10-hour breach 5 days ago is only in the hourly rollups,
    # and is found there (with the silence rule at the rollups' width, not the raw step).
    set_aside_telemetry()
    RollupState.objects.all().delete()
    settings.PHASE3_RAW_RETENTION_DAYS = 3
    series = series_ensure(name="svc.queue.old")
    now = timezone.now()
    end = np.floor(now.timestamp() / 3600) * 3600
    ts = end - STEP * np.arange(7 * 288)[::-1]
    values = np.full(ts.size, 10.0)
    old = end - 5 * 86400
    values[(ts >= old) & (ts < old + 10 * 3600)] = 50.0
    recent = end - 86400
    values[(ts >= recent) & (ts < recent + 3 * 3600)] = 50.0
    insert_samples([series.pk] * ts.size, ts, values)
    rollups_update(now=now)
    samples_enforce_retention(now=now)
    answer = selectors.rule_preview(
        series_name=series.name, labels={}, above=40.0, below=None, min_duration_seconds=7200
    )
    assert answer["source"] == "rollup+raw" and answer["rollup_step_seconds"] == 3600
    assert answer["raw_from"] is not None and answer["raw_from"] < to_datetime(recent)
    fired = [e["fired_at"] for e in answer["series"][0]["episodes"]]
    assert fired == [to_datetime(old + 7200), to_datetime(recent + 7200)]


@pytest.mark.django_db
def test_the_admin_previews_a_rule_over_the_last_week(admin_client, client):
    series, ts, limit = _queue_history("svc.queue.admin")
    rule = DetectionRule.objects.create(
        name="queue too long", series_name=series.name, above=limit, min_duration_seconds=1800
    )
    change = admin_client.get(f"/admin/anomalies/detectionrule/{rule.pk}/change/")
    assert b"Preview over the last 7 days" in change.content
    assert admin_client.get("/admin/anomalies/detectionrule/add/").status_code == 200
    page = admin_client.get(f"/admin/anomalies/detectionrule/{rule.pk}/preview/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "2 times on 1 series" in text and str(series) in text
    assert f"fired {to_datetime(ts[306]):%m-%d %H:%M}" in text
    # Staff who may not view rules do not see it.
    User.objects.create_user("nobody", password="pw", is_staff=True)
    client.login(username="nobody", password="pw")
    assert client.get(f"/admin/anomalies/detectionrule/{rule.pk}/preview/").status_code == 403


@pytest.mark.parametrize(
    "fields",
    [
        {"above": 10.0, "below": 90.0},  # every value "breaches": a typo the job refuses
        {"above": None, "below": None},
        {"above": 95.0, "labels": ["queue"]},
    ],
)
def test_the_admin_does_not_preview_a_rule_the_job_skips(admin_client, fields):
    """A row written from a shell that the job skips (scoring._usable_rules) fires nowhere:
    the admin's preview must say so, naming the fields, as the API's 400 does, not draw
    breaches the job will never raise (or fail on labels that are not a mapping)."""
    series, _, _ = _queue_history("svc.queue.skipped", n=300)
    rule = DetectionRule.objects.create(
        name="skipped", series_name=series.name, **{"labels": {}, **fields}
    )
    page = admin_client.get(f"/admin/anomalies/detectionrule/{rule.pk}/preview/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "the scoring job skips this rule" in text
    assert "would have fired" not in text
