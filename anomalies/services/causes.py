"""Root-cause candidates: the anomalies that began around an anomaly's onset, ranked.

Ranking happens when an anomaly opens, for it and for every anomaly whose window it
falls in (it may be their cause, or they its). An anomaly that merely goes on keeps its
ranking: re-ranking every nearby anomaly on every run made a fleet-wide incident
quadratic (500 series in one outage: 250,000 rows rewritten a minute, 23 s a run).
"""

from __future__ import annotations

from datetime import timedelta
from itertools import islice

import numpy as np

from phase3.bulk import insert_columns

from ..engine.root_cause import CauseCandidate, RankedCause, rank_causes
from ..engine.signal_layers import signal_layer
from ..models import Anomaly, InhibitionRule, RootCauseCandidate
from ..selectors import declared_layers, usable_inhibition_rules

# Other series' anomalies this close to an onset are root-cause candidates.
CAUSE_WINDOW = timedelta(minutes=30)
# Candidates stored per anomaly: an operator reads the first few.
MAX_CAUSES = 10
# Candidates ranked per anomaly, a margin over MAX_CAUSES for same-signal ties.
PEERS_RANKED = 4 * MAX_CAUSES
# Declared sources (inhibition rules) ranked per anomaly beyond the preselected peers.
DECLARED_RANKED = MAX_CAUSES


def causes_rank_around(opened_ids: set[int]) -> int:
    """(Re)rank the candidates of the opened anomalies and of those near them; returns rows."""
    opened = list(Anomaly.objects.filter(pk__in=opened_ids).only("started_at"))
    if not opened:
        return 0
    lo = min(a.started_at for a in opened) - 2 * CAUSE_WINDOW
    hi = max(a.started_at for a in opened) + 2 * CAUSE_WINDOW
    pool = list(
        Anomaly.objects.filter(started_at__gte=lo, started_at__lte=hi)
        .exclude(status=Anomaly.Status.FALSE_POSITIVE)
        .select_related("series")
    )
    onsets = np.array([a.started_at.timestamp() for a in pool])
    deviation = np.array([max(a.peak_surprisal, 0.0) for a in pool])
    window = CAUSE_WINDOW.total_seconds()
    near_opened = _distance_to_nearest(onsets, [a.started_at.timestamp() for a in opened]) <= window
    targets = [a for a, near in zip(pool, near_opened, strict=True) if near]
    columns: dict[str, list] = {
        name: []
        for name in (
            "anomaly",
            "series",
            "cause_anomaly",
            "rank",
            "score",
            "lead_seconds",
            "evidence",
        )
    }
    peak_z = np.array([abs(a.peak_z) for a in pool])
    declared_layer = declared_layers(a.series for a in pool)
    # A layer an operator declared (`SignalLayerRule`) wins over the one a name gives, for
    # a rise: the rule's name goes into the evidence.
    layer_rules = {
        i: rule
        for i, a in enumerate(pool)
        if a.direction >= 0 and (rule := declared_layer.get(a.series_id))
    }
    layers = [
        signal_layer(a.series.name, a.direction, layer_rules[i][0] if i in layer_rules else None)
        for i, a in enumerate(pool)
    ]
    preselect = _Preselection(onsets, deviation, window, peak_z, np.array(layers, dtype=float))
    declared = _DeclaredSources(pool, onsets, window, usable_inhibition_rules())
    # Labels as "key=value" texts: hashable whatever a series created in code was given.
    metrics = [
        (a.series.name, frozenset(f"{k}={v}" for k, v in a.series.labels.items())) for a in pool
    ]
    for t_index in map(int, np.flatnonzero(near_opened)):
        target = pool[t_index]
        step = _grid_step(target)
        peers = preselect.peers(t_index, step)
        declared_by = declared.of(t_index, peers)
        if declared_by:
            ranked_already = set(map(int, peers))
            peers = np.append(peers, [i for i in declared_by if i not in ranked_already])
            peers = peers.astype(int)
        parts = _parts(peers, metrics)
        ranked = rank_causes(
            onsets[t_index],
            [
                CauseCandidate(
                    int(i),
                    onsets[i],
                    pool[i].peak_surprisal,
                    pool[i].peak_z,
                    parts.get(int(i), frozenset()),
                    layers[i],
                    int(i) in declared_by,
                )
                for i in peers
            ],
            step,
        )
        kept = _best_per_series(ranked, pool, target.series_id, t_index)[:MAX_CAUSES]
        for r in kept:
            cause = pool[r.key]
            columns["anomaly"].append(target.pk)
            columns["series"].append(cause.series_id)
            columns["cause_anomaly"].append(cause.pk)
            columns["rank"].append(r.rank)
            columns["score"].append(float(r.score))
            columns["lead_seconds"].append(float(r.lead_seconds))
            columns["evidence"].append(
                {
                    "series": str(cause.series),
                    "onset": cause.started_at.isoformat(),
                    "peak_surprisal": cause.peak_surprisal,
                    "peak_z": cause.peak_z,
                    "methods": cause.methods,
                    "layer": layers[r.key].name.lower(),
                    "is_self": r.key == t_index,
                }
                | ({"declared_by": declared_by[r.key]} if r.key in declared_by else {})
                | ({"layer_rule": layer_rules[r.key][1]} if r.key in layer_rules else {})
            )
    RootCauseCandidate.objects.filter(anomaly__in=targets).delete()
    # Column-wise: a fleet-wide incident stores 20,000 candidates in one run.
    return insert_columns(RootCauseCandidate, columns)


def _best_per_series(
    ranked: list[RankedCause], pool: list[Anomaly], own_series: int, own_key: int
) -> list[RankedCause]:
    """Each series once, at its best-ranked anomaly; the target's own series only as itself.

    A neighbour that flapped (recovered and reopened inside the window) has two anomalies
    near the onset, but a candidate names a series, unique per target: storing both broke
    that constraint and rolled back the whole scoring run, on every run after it.
    """
    seen = {own_series}
    kept = []
    for r in ranked:
        series_id = pool[r.key].series_id
        if r.key == own_key:
            kept.append(r)
        elif series_id not in seen:
            seen.add(series_id)
            kept.append(r)
    return kept


def _parts(peers: np.ndarray, metrics: list[tuple[str, frozenset]]) -> dict[int, frozenset[int]]:
    """For each peer that aggregates others, their keys: the same metric name over a strict
    subset of its labels (`http.errors.ratio` over `http.errors.ratio{endpoint=...}`), as
    Prometheus' `sum by` / `avg by` leave them. Grouped by name first, so only the series
    of one metric are compared: at most PEERS_RANKED² label sets per anomaly ranked."""
    by_name: dict[str, list[int]] = {}
    for i in map(int, peers):
        by_name.setdefault(metrics[i][0], []).append(i)
    parts: dict[int, frozenset[int]] = {}
    for group in by_name.values():
        if len(group) < 2:
            continue
        for i in group:
            found = frozenset(j for j in group if metrics[i][1] < metrics[j][1])
            if found:
                parts[i] = found
    return parts


def _distance_to_nearest(points: np.ndarray, others: list[float]) -> np.ndarray:
    ref = np.sort(np.asarray(others, dtype=float))
    pos = np.searchsorted(ref, points)
    left = ref[np.clip(pos - 1, 0, ref.size - 1)]
    right = ref[np.clip(pos, 0, ref.size - 1)]
    return np.minimum(np.abs(points - left), np.abs(points - right))


class _Preselection:
    """The anomalies worth ranking for each target (itself included).

    Only the first PEERS_RANKED in the ranking's own order (onset in quarter steps, then
    signal layer, deviation and standardised peak) can reach the stored ranks; ranking all
    of them made an incident on 2,000 series 4 million comparisons. The pool is sorted in that order once per sampling step,
    and each target scans it from the start of its window: sorting each target's window
    instead was quadratic again (10,000 anomalies opening at once: 10,000 sorts of 10,000).
    """

    def __init__(
        self,
        onsets: np.ndarray,
        deviation: np.ndarray,
        window: float,
        peak_z: np.ndarray | None = None,
        layers: np.ndarray | None = None,
    ) -> None:
        self.onsets, self.deviation, self.window = onsets, deviation, window
        self.peak_z = np.zeros_like(deviation) if peak_z is None else peak_z
        self.layers = np.zeros_like(deviation) if layers is None else layers
        self._by_onset = np.argsort(onsets, kind="stable")
        self._sorted_onsets = onsets[self._by_onset]
        self._orders: dict[float, tuple[np.ndarray, np.ndarray]] = {}

    def peers(self, target: int, step: float) -> np.ndarray:
        quarter = 0.25 * max(step, 1.0)
        if quarter not in self._orders:
            buckets = np.floor(self.onsets / quarter)
            order = np.lexsort((-self.peak_z, -self.deviation, self.layers, buckets))
            self._orders[quarter] = (order, buckets[order])
        order, buckets = self._orders[quarter]
        t = self.onsets[target]
        first = np.searchsorted(self._sorted_onsets, t - self.window, "left")
        last = np.searchsorted(self._sorted_onsets, t + self.window, "right")
        if last - first <= PEERS_RANKED:  # all of them, in pool order
            return np.sort(self._by_onset[first:last])
        start = int(np.searchsorted(buckets, np.floor((t - self.window) / quarter), "left"))
        stop = int(np.searchsorted(buckets, np.floor((t + self.window) / quarter), "right"))
        chosen: list[np.ndarray] = []
        found, chunk = 0, 2 * PEERS_RANKED
        while start < stop and found < PEERS_RANKED:
            block = order[start : min(start + chunk, stop)]
            inside = block[np.abs(self.onsets[block] - t) <= self.window]
            chosen.append(inside[: PEERS_RANKED - found])
            found += min(inside.size, PEERS_RANKED - found)
            start += block.size
            chunk *= 2
        picked = np.concatenate(chosen) if chosen else np.empty(0, dtype=int)
        return picked if target in picked else np.append(picked, target)


class _DeclaredSources:
    """For each target, the anomalies an operator declared it dependent on: an enabled
    inhibition rule names their series as a source of its series, with the same `equal`
    labels (`InhibitionRule.holds_back`). The ranking puts them first among simultaneous
    onsets (`CauseCandidate.declared`).

    A declared source reaches further back than the window: one that began up to twice
    the window before the target (the pool's reach) and was still abnormal at its onset
    is a candidate too. The database whose outage began 40 minutes before an endpoint
    slowed down is what the operator said it waits on, not a coincidence of the hour, and
    the rule already pages them as one incident (`services.inhibition`); ranked, it leads
    the endpoint's candidates by precedence, if it moved materially.

    A rule's sources are grouped once per ranking (`group_sources`), sorted by onset, so a
    target looks its group up instead of scanning the pool; `*` over `*` in a fleet-wide
    incident stays linear. A declared source outside the preselected peers (an incident
    wider than PEERS_RANKED, or an earlier onset) joins them, the DECLARED_RANKED earliest
    for each rule."""

    def __init__(
        self, pool: list[Anomaly], onsets: np.ndarray, window: float, rules: list[InhibitionRule]
    ) -> None:
        self.pool, self.onsets, self.window = pool, onsets, window
        by_onset = [int(i) for i in np.argsort(onsets, kind="stable")]
        self.rules = []
        for rule in rules:
            groups = rule.group_sources(by_onset, lambda i: pool[i].series)
            if groups:
                self.rules.append(
                    (rule, {k: (ix, onsets[ix], frozenset(ix)) for k, ix in groups.items()})
                )

    def of(self, target: int, peers: np.ndarray) -> dict[int, str]:
        """Declared source -> the rule's name, among `peers` and the window's first others."""
        found: dict[int, str] = {}
        series = self.pool[target].series
        for rule, groups in self.rules:
            group = groups.get(rule.equal_key(series)) if rule.targets(series) else None
            if group is None:
                continue
            ix, times, members = group
            for i in map(int, peers):
                if i in members and self.pool[i].series_id != series.pk:
                    found.setdefault(i, rule.name)
            t = self.onsets[target]
            lo = int(np.searchsorted(times, t - 2 * self.window, "left"))
            hi = int(np.searchsorted(times, t + self.window, "right"))
            extra = 0
            for i in islice(ix, lo, hi):
                if extra >= DECLARED_RANKED:
                    break
                if i in found or self.pool[i].series_id == series.pk:
                    continue
                ended = self.pool[i].ended_at
                if self.onsets[i] < t - self.window and ended and ended.timestamp() < t:
                    continue  # over before the target began
                found[i] = rule.name
                extra += 1
        return found


def _grid_step(a: Anomaly) -> float:
    pts = a.points
    if len(pts) >= 2:
        return float(np.median(np.diff([p[0] for p in pts])))
    return 300.0
