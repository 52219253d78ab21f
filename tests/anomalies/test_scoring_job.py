"""The scheduled job as production runs it: a point or two per series per minute, many
series, concurrent runs, missing values, new series with a week of backfill."""

from __future__ import annotations

import threading
from datetime import timedelta

import numpy as np
import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from anomalies import services
from anomalies.models import (
    Anomaly,
    DetectorState,
    ResponseExecution,
    ResponsePlaybook,
    RootCauseCandidate,
)
from anomalies.services.causes import MAX_CAUSES, causes_rank_around
from anomalies.services.scoring import _groups_by_width
from telemetry.bulk import insert_samples
from telemetry.selectors import to_datetime
from telemetry.services import series_ensure
from tests.anomalies.factories import AnomalyFactory
from tests.locking import OtherConnection, until_done_or_waiting_on_us

STEP = 300.0
END = 1_795_000_200.0


def _series(name: str, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    series = series_ensure(name=name, unit="ms")
    ts = END - STEP * np.arange(n)[::-1]
    return series, ts, 100.0 + rng.normal(0, 1.0, n)


def _run(series_list, at: float) -> dict:
    return services.anomalies_score_recent(
        now=to_datetime(at), series_ids=[s.pk for s in series_list]
    )


def _episodes(series) -> list[tuple[float, float | None]]:
    return [
        (a.started_at.timestamp(), a.ended_at.timestamp() if a.ended_at else None)
        for a in Anomaly.objects.filter(series=series).order_by("started_at")
    ]


@pytest.mark.django_db
def test_one_point_per_run_opens_and_closes_anomalies_as_one_batch_does():
    # Two incidents a few hours apart: a spike, and a ramp that creeps up before it alerts.
    # The ramp comes after the spike's day-long alert pause.
    batch, ts, values = _series("job.batch", 1400, seed=3)
    values[1000:1004] += 40.0
    values[1310:1340] += np.linspace(2.0, 150.0, 30)
    stream = series_ensure(name="job.stream", unit="ms")
    insert_samples([batch.pk] * 1400, ts, values)
    _run([batch], ts[-1])

    insert_samples([stream.pk] * 990, ts[:990], values[:990])
    _run([stream], ts[989])
    for i in range(990, 1400):  # the beat job's life: one new point a run
        insert_samples([stream.pk], ts[i : i + 1], values[i : i + 1])
        _run([stream], ts[i])

    expected = _episodes(batch)
    got = _episodes(stream)
    assert len(expected) >= 2 and all(end is not None for _, end in expected[:-1])
    assert len(got) == len(expected)
    for (start_b, end_b), (start_s, end_s) in zip(expected, got, strict=True):
        assert abs(start_s - start_b) < 1.0  # the onset traced back across runs
        assert end_s == end_b


@pytest.mark.django_db
def test_a_missing_value_inside_an_open_anomaly_does_not_stop_scoring(postgres, client_with_role):
    # PostgreSQL refuses NaN in a JSON column: the run failed, and so did every one after.
    series, ts, values = _series("job.nan", 900, seed=5)
    values[880:] += 50.0
    values[890] = np.nan  # written around the API's validation, e.g. by a script
    insert_samples([series.pk] * 885, ts[:885], values[:885])
    _run([series], ts[884])
    insert_samples([series.pk] * 15, ts[885:], values[885:])
    assert _run([series], ts[-1])["points"] == 15
    anomaly = Anomaly.objects.get(series=series)
    assert any(p[1] is None for p in anomaly.points) and np.isfinite(anomaly.observed)
    response = client_with_role("viewer").get(f"/admin/api/phase3/anomaly/anomalies/{anomaly.pk}")
    assert response.status_code == 200


def test_series_are_grouped_so_none_is_padded_past_twice_its_points():
    class S:
        def __init__(self, pk):
            self.pk = pk

    widths = {1: 1, 2: 1, 3: 2016, 4: 3, 5: 1}
    points = {pk: (np.zeros(n), np.zeros(n)) for pk, n in widths.items()}
    groups = _groups_by_width([S(pk) for pk in widths], points)
    assert [[s.pk for s in g] for g in groups] == [[1, 2, 5], [4], [3]]


@pytest.mark.django_db
def test_queries_per_run_do_not_grow_with_the_number_of_series(postgres):
    # One read for every series' new points is PostgreSQL's (SQLite reads series by series).
    def fleet(prefix: str, count: int) -> int:
        made = [_series(f"{prefix}.{k}", 400, seed=k) for k in range(count)]
        for s, ts, values in made:
            insert_samples([s.pk] * 399, ts[:399], values[:399])
        _run([s for s, _, _ in made], END - STEP)
        for s, ts, values in made:
            insert_samples([s.pk], ts[399:], values[399:])
        with CaptureQueriesContext(connection) as ctx:
            counts = _run([s for s, _, _ in made], END)
        assert counts["points"] == count
        return len(ctx.captured_queries)

    assert fleet("job.few", 3) == fleet("job.many", 12)


@pytest.mark.django_db
def test_backfill_of_a_new_series_pages_for_what_is_still_going_on_only():
    ResponsePlaybook.objects.create(
        name="page", action="email", target="ops@example.com", min_severity="info"
    )
    series, ts, values = _series("job.backfill", 1500, seed=7)
    values[600:606] += 40.0  # three days ago, long over
    values[1490:] += 200.0  # now
    insert_samples([series.pk] * 1500, ts, values)
    _run([series], ts[-1])
    anomalies = list(Anomaly.objects.filter(series=series).order_by("started_at"))
    old, current = anomalies[0], anomalies[-1]
    assert old.ended_at is not None and current.ended_at is None
    paged = set(ResponseExecution.objects.values_list("anomaly_id", flat=True))
    assert paged == {current.pk}


@pytest.mark.django_db
def test_causes_are_capped_and_kept_while_nothing_new_opens():
    now = to_datetime(END)
    fleet = [
        AnomalyFactory(series=series_ensure(name=f"job.outage.{k}"), started_at=now, peak_z=k + 1)
        for k in range(MAX_CAUSES + 5)
    ]
    causes_rank_around({a.pk for a in fleet})
    per_anomaly = [RootCauseCandidate.objects.filter(anomaly=a).count() for a in fleet]
    assert max(per_anomaly) == MAX_CAUSES
    top = RootCauseCandidate.objects.get(anomaly=fleet[0], rank=1)
    assert top.series_id == fleet[-1].series_id  # simultaneous onsets: the largest first
    # A late arrival within the window re-ranks its neighbours; one far away does not.
    far = AnomalyFactory(
        series=series_ensure(name="job.elsewhere"), started_at=to_datetime(END + 86400)
    )
    before = set(RootCauseCandidate.objects.values_list("pk", flat=True))
    causes_rank_around({far.pk})
    assert before <= set(RootCauseCandidate.objects.values_list("pk", flat=True))


@pytest.mark.django_db
def test_a_neighbour_that_flapped_is_one_candidate_at_its_earlier_onset():
    now = to_datetime(END)
    db = series_ensure(name="job.db.flapping")
    first = AnomalyFactory(
        series=db,
        started_at=now - timedelta(minutes=20),
        ended_at=now - timedelta(minutes=10),
        status="resolved",
    )
    AnomalyFactory(series=db, started_at=now - timedelta(minutes=5))  # reopened
    effect = AnomalyFactory(series=series_ensure(name="job.api.slow"), started_at=now)
    causes_rank_around({effect.pk})
    candidates = list(RootCauseCandidate.objects.filter(anomaly=effect, series=db))
    assert [c.cause_anomaly_id for c in candidates] == [first.pk]


@pytest.mark.django_db
@pytest.mark.parametrize(("cpu_direction", "cause"), [(1, "cpu"), (-1, "latency")])
def test_a_saturated_resource_leads_the_symptom_that_moved_in_the_same_step(cpu_direction, cause):
    """Seed 1's demo world scored an hour at a time: the CPU and the latency it drives
    began 42 s apart on five-minute data, and the latency's larger deviation made it the
    cause of the CPU's own anomaly. A CPU that fell is waiting on something: no prior."""
    now = to_datetime(END)
    cpu = AnomalyFactory(
        series=series_ensure(name="system.cpu.utilization"),
        started_at=now,
        peak_surprisal=24.0,
        peak_z=14.0,
        direction=cpu_direction,
    )
    latency = AnomalyFactory(
        series=series_ensure(name="http.latency.p95"),
        started_at=now - timedelta(seconds=42),
        peak_surprisal=61.0,
        peak_z=38.0,
    )
    causes_rank_around({cpu.pk, latency.pk})
    expected = {"cpu": cpu, "latency": latency}[cause]
    for anomaly in (cpu, latency):
        top = RootCauseCandidate.objects.get(anomaly=anomaly, rank=1)
        assert top.cause_anomaly_id == expected.pk
    layer = RootCauseCandidate.objects.get(anomaly=latency, series=cpu.series).evidence["layer"]
    assert layer == ("resource" if cpu_direction > 0 else "outcome")


@pytest.mark.django_db
def test_admin_anomaly_page_costs_the_same_queries_for_many_causes(admin_client):
    def page_queries(causes: int) -> int:
        target = AnomalyFactory(series=series_ensure(name=f"job.page.{causes}"))
        hook = ResponsePlaybook.objects.create(
            name=f"hook{causes}", action="webhook", target="http://h.example/"
        )
        for k in range(causes):
            other = AnomalyFactory(series=series_ensure(name=f"job.page.{causes}.{k}"))
            RootCauseCandidate.objects.create(
                anomaly=target, series=other.series, rank=k + 1, score=1.0, lead_seconds=0.0
            )
            ResponseExecution.objects.create(
                playbook=ResponsePlaybook.objects.create(
                    name=f"p{causes}.{k}", action="webhook", target="http://h.example/"
                )
                if k
                else hook,
                anomaly=target,
            )
        url = f"/admin/anomalies/anomaly/{target.pk}/change/"
        admin_client.get(url)  # the first request also loads the session and content types
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client.get(url).status_code == 200
        return len(ctx.captured_queries)

    assert page_queries(3) == page_queries(12)


@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_score_a_new_series_once(postgres):
    series, ts, values = _series("job.race", 600, seed=9)
    insert_samples([series.pk] * 600, ts, values)
    errors: list[BaseException] = []
    results: list[dict] = []
    start = threading.Barrier(2)

    def one_run() -> None:
        try:
            start.wait()
            results.append(_run([series], ts[-1]))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=one_run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(r["points"] for r in results) == [0, 600]
    assert DetectorState.objects.get(series=series).points_scored == 600


@pytest.mark.django_db
def test_a_series_that_stops_sending_is_reported_while_silent_and_recovers():
    from anomalies.engine.pattern import SILENT_STEPS

    series, ts, values = _series("job.silent", 500, seed=11)
    quiet, qts, qvalues = _series("job.still-sending", 500, seed=12)
    insert_samples([series.pk] * 400, ts[:400], values[:400])
    insert_samples([quiet.pk] * 400, qts[:400], qvalues[:400])
    _run([series, quiet], ts[399])
    last = ts[399]
    for k in range(1, SILENT_STEPS + 3):  # the exporter dies; its neighbour goes on
        insert_samples([quiet.pk], qts[399 + k : 400 + k], qvalues[399 + k : 400 + k])
        _run([series, quiet], last + k * STEP)
        opened = Anomaly.objects.filter(series=series)
        assert opened.exists() == (k >= SILENT_STEPS), k
    anomaly = Anomaly.objects.get(series=series)
    assert "stalled" in anomaly.methods and anomaly.ended_at is None
    assert anomaly.started_at.timestamp() == last + STEP
    assert not Anomaly.objects.filter(series=quiet).exists()
    # Data comes back: the same anomaly closes, no second one opens.
    back = last + (SILENT_STEPS + 3) * STEP + STEP * np.arange(10)
    insert_samples([series.pk] * 10, back, values[400:410])
    _run([series], back[-1])
    anomaly.refresh_from_db()
    assert anomaly.ended_at is not None
    assert Anomaly.objects.filter(series=series).count() == 1
    # Resolved by an operator while still silent, it is not reopened the next minute.
    _run([series], back[-1] + (SILENT_STEPS + 1) * STEP)
    again = Anomaly.objects.filter(series=series, ended_at__isnull=True).get()
    services.anomaly_resolve(anomaly_id=again.pk, by="ops")
    _run([series], back[-1] + (SILENT_STEPS + 2) * STEP)
    assert not Anomaly.objects.filter(series=series, ended_at__isnull=True).exists()


@pytest.mark.django_db
def test_a_series_that_dies_after_an_operator_resolved_a_spike_is_reported_silent():
    # The restart that fixed the spike killed the exporter: the spike's anomaly ended at
    # the wall clock, after the last point, but it does not cover the silence after it.
    from anomalies.engine.pattern import SILENT_STEPS

    series, ts, values = _series("job.restarted", 400, seed=15)
    insert_samples([series.pk] * 400, ts, values)
    _run([series], ts[-1])
    spike = AnomalyFactory(series=series, started_at=to_datetime(ts[-4]))
    services.anomaly_resolve(anomaly_id=spike.pk, by="ops")
    assert Anomaly.objects.get(pk=spike.pk).ended_at > to_datetime(ts[-1])
    _run([series], ts[-1] + (SILENT_STEPS + 2) * STEP)
    stalled = Anomaly.objects.exclude(pk=spike.pk).get(series=series)
    assert "stalled" in stalled.methods and stalled.ended_at is None


@pytest.mark.django_db
def test_a_silence_marked_false_positive_is_not_reported_the_next_time():
    from anomalies.engine.pattern import SILENT_STEPS

    series, ts, values = _series("job.nightly", 700, seed=13)
    insert_samples([series.pk] * 400, ts[:400], values[:400])
    _run([series], ts[399])
    _run([series], ts[399] + SILENT_STEPS * STEP)  # the exporter is restarted nightly
    first = Anomaly.objects.get(series=series)
    services.anomaly_mark_false_positive(anomaly_id=first.pk, by="ops")
    insert_samples([series.pk] * 200, ts[500:700], values[500:700])
    _run([series], ts[699])
    counts = _run([series], ts[699] + (SILENT_STEPS + 2) * STEP)
    assert counts["suppressed"] == 1 and counts["opened"] == 0
    assert not Anomaly.objects.filter(series=series, started_at__gt=to_datetime(ts[699])).exists()


@pytest.mark.django_db
def test_queuing_responses_costs_the_same_queries_for_many_anomalies():
    from django.utils import timezone

    from anomalies.services.playbooks import queue_responses

    for name in ("mail", "page"):
        ResponsePlaybook.objects.create(
            name=name, action="email", target="ops@example.com", min_severity="info"
        )

    def queries(count: int) -> int:
        ids = {
            AnomalyFactory(series=series_ensure(name=f"job.q{count}.{k}")).pk for k in range(count)
        }
        assert queue_responses(ids, now=timezone.now()).queued == 2 * count
        with CaptureQueriesContext(connection) as ctx:
            assert queue_responses(ids, now=timezone.now()).queued == 0  # grouped, not re-sent
        repeats = ResponseExecution.objects.filter(anomaly_id__in=ids).values_list(
            "repeats", flat=True
        )
        assert sorted(set(repeats)) == [1]
        return len(ctx.captured_queries)

    assert queries(3) == queries(12)


@pytest.mark.django_db
def test_deleting_a_cause_series_keeps_the_effects_cause(client_with_role):
    now = to_datetime(END)
    cause = AnomalyFactory(series=series_ensure(name="job.db.down"), started_at=now, peak_z=20)
    effect = AnomalyFactory(
        series=series_ensure(name="job.api.errors"),
        started_at=to_datetime(END + 120),
        peak_z=5,
    )
    causes_rank_around({cause.pk, effect.pk})
    cause.series.delete()
    top = RootCauseCandidate.objects.get(anomaly=effect, rank=1)
    assert top.series_id is None and top.series_label == "job.db.down (deleted)"
    body = client_with_role("viewer").get(f"/admin/api/phase3/anomaly/anomalies/{effect.pk}").json()
    assert body["root_causes"][0]["series"] == "job.db.down (deleted)"


@pytest.mark.django_db
def test_a_silence_ended_by_backfilled_data_still_ends_after_it_was_seen():
    from anomalies.engine.pattern import SILENT_STEPS

    series, ts, values = _series("job.backfilled", 500, seed=14)
    insert_samples([series.pk] * 400, ts[:400], values[:400])
    _run([series], ts[399])
    seen_at = ts[399] + (SILENT_STEPS + 5) * STEP
    _run([series], seen_at)
    # The exporter's buffer is replayed: the missing points arrive, stamped in the past.
    insert_samples([series.pk] * 100, ts[400:500], values[400:500])
    _run([series], max(ts[499], seen_at))
    (anomaly,) = [a for a in Anomaly.objects.filter(series=series) if "stalled" in a.methods]
    assert anomaly.ended_at is not None
    assert anomaly.ended_at >= anomaly.last_seen_at >= anomaly.detected_at


@pytest.mark.django_db(transaction=True)
def test_an_operator_acknowledging_during_a_run_is_not_undone_by_it(postgres, monkeypatch):
    # The run rewrites the open anomalies it loaded; an acknowledgement made meanwhile was
    # overwritten by the run's stale copy (status back to open, who and note lost).
    from anomalies.services import scoring

    series, ts, values = _series("job.ack-race", 700, seed=15)
    values[660:] += 60.0  # an outage that is still going on
    insert_samples([series.pk] * 680, ts[:680], values[:680])
    _run([series], ts[679])
    anomaly = Anomaly.objects.get(series=series, ended_at__isnull=True)
    insert_samples([series.pk] * 20, ts[680:], values[680:])

    silence = scoring.report_silence
    thread = OtherConnection(
        lambda: services.anomaly_acknowledge(anomaly_id=anomaly.pk, by="ops", note="on it")
    )

    def acknowledged_mid_run(*args, **kwargs):
        # The run has loaded and extended the anomaly but not written it yet.
        thread.start()
        until_done_or_waiting_on_us(thread)  # the old code let the operator finish here
        return silence(*args, **kwargs)

    monkeypatch.setattr(scoring, "report_silence", acknowledged_mid_run)
    assert _run([series], ts[-1])["points"] == 20
    thread.join()
    assert isinstance(thread.outcome[0], Anomaly), thread.outcome
    anomaly.refresh_from_db()
    assert anomaly.status == Anomaly.Status.ACKNOWLEDGED
    assert (anomaly.acknowledged_by, anomaly.note) == ("ops", "on it")
    assert anomaly.last_seen_at.timestamp() == ts[-1]  # and the run's extension is kept


@pytest.mark.django_db(transaction=True)
def test_a_false_positive_marked_as_a_run_starts_does_not_open_a_fresh_anomaly(
    postgres, monkeypatch
):
    # The operator dismisses the open anomaly just after the run read the feedback. Before
    # the run locked the open anomalies first, the dismissal committed at once: the run no
    # longer held the anomaly, did not know the pattern was dismissed, and opened a fresh
    # one (and paged) on the outage's next alert point.
    from anomalies.engine import DetectorConfig
    from anomalies.services import scoring

    # A pause of one point, so that the outage's step up at 690 is an alert of its own.
    cfg = DetectorConfig(ml_retrain_every=0, cooldown_seconds=STEP)

    def run(at: float) -> dict:
        return services.anomalies_score_recent(
            now=to_datetime(at), series_ids=[series.pk], config=cfg
        )

    series, ts, values = _series("job.fp-race", 700, seed=16)
    values[660:] += 60.0
    values[690:] += 600.0
    insert_samples([series.pk] * 680, ts[:680], values[:680])
    run(ts[679])
    anomaly = Anomaly.objects.get(series=series, ended_at__isnull=True)
    insert_samples([series.pk] * 20, ts[680:], values[680:])

    read_feedback = scoring._feedback_for
    thread = OtherConnection(
        lambda: services.anomaly_mark_false_positive(anomaly_id=anomaly.pk, by="ops")
    )

    def dismissed_right_after(*args, **kwargs):
        feedback = read_feedback(*args, **kwargs)
        thread.start()
        until_done_or_waiting_on_us(thread)
        return feedback

    monkeypatch.setattr(scoring, "_feedback_for", dismissed_right_after)
    run(ts[-1])
    thread.join()
    assert isinstance(thread.outcome[0], Anomaly), thread.outcome
    assert list(Anomaly.objects.filter(series=series).values_list("pk", "status")) == [
        (anomaly.pk, Anomaly.Status.FALSE_POSITIVE)
    ]


def _peers_by_sorting_each_window(onsets, deviation, layers, target, window, step):
    """The preselection as first written: sort every target's window (quadratic)."""
    near = np.flatnonzero(np.abs(onsets - onsets[target]) <= window)
    if near.size <= 40:
        return near
    buckets = np.floor(onsets[near] / (0.25 * max(step, 1.0)))
    order = np.lexsort((-deviation[near], layers[near], buckets))
    chosen = near[order[:40]]
    return chosen if target in chosen else np.append(chosen, target)


@pytest.mark.parametrize("spread", [0.0, 600.0, 7200.0, 86400.0])
def test_peers_preselected_in_one_sort_are_those_of_sorting_each_window(spread):
    from anomalies.services.causes import PEERS_RANKED, _Preselection

    assert PEERS_RANKED == 40
    rng = np.random.default_rng(int(spread))
    # Whole-step onsets (ties in a quarter step), a block of simultaneous ones (a fleet
    # incident), deviations with repeats, and the three signal layers.
    onsets = END + np.round(rng.uniform(0, spread, 700) / 60) * 60
    onsets[:200] = END + 120.0
    deviation = rng.integers(0, 30, onsets.size).astype(float)
    layers = rng.integers(0, 3, onsets.size).astype(float)
    window = 1800.0
    preselect = _Preselection(onsets, deviation, window, layers=layers)
    for target in range(0, onsets.size, 7):
        for step in (60.0, 300.0):
            expected = _peers_by_sorting_each_window(
                onsets, deviation, layers, target, window, step
            )
            np.testing.assert_array_equal(preselect.peers(target, step), expected)


def test_an_aggregate_is_told_from_its_parts_by_name_and_labels():
    """The same metric over a strict subset of the labels is an aggregate; another metric,
    or the same labels, is not."""
    from anomalies.services.causes import _parts

    metrics = [
        ("http.errors.ratio", frozenset()),
        ("http.errors.ratio", frozenset({"endpoint=/api/checkout"})),
        ("http.errors.ratio", frozenset({"endpoint=/api/checkout", "region=eu"})),
        ("http.latency.p95", frozenset({"endpoint=/api/checkout"})),
        ("http.errors.ratio", frozenset({"endpoint=/api/checkout"})),  # a twin, not a part
        ("queue.depth", frozenset()),
    ]
    assert _parts(np.arange(len(metrics)), metrics) == {
        0: frozenset({1, 2, 4}),
        1: frozenset({2}),
        4: frozenset({2}),
    }
    # Only the peers asked about: the aggregate without its parts has none.
    assert _parts(np.array([0, 3, 5]), metrics) == {}
