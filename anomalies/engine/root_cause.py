"""Rank the series that may have caused an anomaly.

An incident shows up on several series: the cause moves first and by a lot, the effects
follow. For an anomaly with onset t0, every series that became abnormal within
[t0 - before, t0 + after] is a candidate (the anomaly's own series included: if nothing
moved earlier, the series itself is the most likely origin). Candidates are ranked by onset
precedence first (onsets are interpolated threshold crossings; onsets closer than a
quarter of a sampling step to the previous one count as simultaneous) and by the size of
their own deviation second.

Precedence only counts for a candidate that moved materially: one whose deviation is at
least `MATERIAL_SHARE` of the largest among the candidates. In a fleet, some series is
always barely abnormal somewhere: at one false alarm a series a week, 40 series put one
in a 30-minute window before an incident about one time in eight, and 500 series nearly
always. Ranked on precedence alone, such a blip (a surprisal of 10, just over the alert
level, beside a cause at 57 and effects at 80) ranked first whenever it happened to begin
a few minutes before the cause, as it did in demo worlds of seeds 2 and 6 at some hours of
the day. Minor candidates are still listed, after the material ones.

An aggregate does not cause its parts: the fleet-wide error ratio ranks after the
endpoint's error ratio that moved with it (`_after_parts`), whatever their estimated
onsets say within a step.

Among simultaneous onsets, a rise in demand ranks before a rise in a resource and both
before latency, errors and the rest (`signal_layers`), whatever their sizes: a CPU and the
latency it drives often move in the same five-minute step, and the latency moves more.
Before both comes a dependency an operator declared (`CauseCandidate.declared`: an
inhibition rule naming the candidate's series as a source of the anomaly's): names say
where a metric sits in general, a declared dependency says what waits on what here (the
checkout endpoint on the orders database, not on a cache that spiked in the same step).
Like a layer, it orders simultaneous onsets only: a series that moved a step earlier is
still ranked first (it may be what slowed the database), and one that barely moved is not
lifted above one that moved materially.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .signal_layers import Layer

# Relative difference in deviation below which two simultaneous candidates are tied.
TIE_TOLERANCE = 0.02
# Onsets closer than this fraction of a sampling step are simultaneous. Rounding onsets to
# whole steps relative to the anomaly instead put a cause 1.7 minutes ahead of a much
# larger effect (5-minute data) in the same slot, where the effect's size won.
SIMULTANEOUS_STEPS = 0.25
# A candidate whose deviation is under this share of the largest candidate's did not move
# materially: its moving first is not taken as evidence that it is the cause.
MATERIAL_SHARE = 0.2
# How far beyond its expected value (in scale units) a series must be for the walk back to
# an anomaly's onset to go on. At 2, one point in twenty of a calm series is beyond it, so
# among an incident's ten effects one often had a noise point right before its move, and
# its onset came a step or two early: in the demo world of seed 1 ending at 16:00, scored
# an hour at a time, the checkout endpoint's p50 latency (z between 2 and 3 at 10:40 and
# 10:45, moving at 10:50) began 127 s before the CPU that drove it (moving at 10:45) and
# was ranked the cause of the whole incident. At 3, about one point in 370.
ONSET_Z = 3.0


@dataclass(frozen=True)
class CauseCandidate:
    key: int  # the candidate series' id (opaque to the engine)
    onset: float  # epoch seconds when it became abnormal
    deviation: float  # its peak surprisal (-log10 tail probability), comparable across series
    peak_z: float = 0.0  # its largest |observed - expected| in its own scale units
    # Keys of the candidates this series aggregates: the same metric over fewer labels
    # (`http.errors.ratio` over every endpoint's `http.errors.ratio{endpoint=...}`).
    parts: frozenset[int] = frozenset()
    # Its place in load → saturation → symptoms (`signal_layers.signal_layer`).
    layer: int = Layer.OUTCOME
    # An operator declared the anomaly's series dependent on this one (an inhibition rule).
    declared: bool = False


@dataclass(frozen=True)
class RankedCause:
    key: int
    rank: int
    lead_seconds: float  # how long before the anomaly's onset it moved (negative: after)
    score: float  # in [0, 1], higher = more likely the cause


def estimate_onset(
    ts: np.ndarray, z: np.ndarray, detected_at: int, threshold: float = ONSET_Z
) -> float:
    """Walk back from the detection point while the residual stays beyond `threshold`.

    A detector fires when evidence is strong enough, which is often a step or two after the
    series started to move; causal ranking needs when it *started*.
    """
    i = detected_at
    while i > 0 and np.isfinite(z[i - 1]) and abs(z[i - 1]) >= threshold:
        i -= 1
    if i == 0 or not np.isfinite(z[i - 1]):
        return float(ts[i])
    # Interpolate the threshold crossing between the last calm point and the first abnormal
    # one: a series that jumped straight to 16 sigma started moving earlier within the step
    # than one that crept to 2.5 sigma, and that is what orders a cause before its effect.
    before, at = abs(z[i - 1]), abs(z[i])
    fraction = np.clip((at - threshold) / max(at - before, 1e-9), 0.0, 1.0)
    return float(ts[i] - fraction * (ts[i] - ts[i - 1]))


def _after_parts(
    candidates: list[CauseCandidate], material: np.ndarray, step: float
) -> tuple[np.ndarray, np.ndarray]:
    """Onsets for ranking, and which candidates echo a part of themselves.

    A fleet-wide error ratio does not cause the error ratio of the endpoint that drives
    it, but its onset can be estimated first: smoother, it crosses its own threshold
    earlier in the step. On one demo world in 152 (seed 8 ending at 06:30) the fleet's
    onset came 134 s before the checkout endpoint's, and the aggregate was ranked the
    cause of the burst it was made of. An aggregate whose material part moved no later
    than a step after it therefore ranks at that part's onset, after it. A part a step or
    more later is not what moved the aggregate, and one that barely moved (not material)
    cannot have moved it."""
    onsets = np.array([c.onset for c in candidates], dtype=float)
    echo = np.zeros(len(candidates), dtype=bool)
    index = {c.key: i for i, c in enumerate(candidates)}
    for i, c in enumerate(candidates):
        for key in c.parts:
            j = index.get(key)
            if j is None or j == i or not material[j] or c.onset + step < candidates[j].onset:
                continue
            onsets[i] = max(onsets[i], candidates[j].onset)
            echo[i] = True
    return onsets, echo


def _simultaneous_groups(onsets: np.ndarray, step: float) -> np.ndarray:
    """Group number per onset, in time order: a gap over a quarter step starts a new group."""
    order = np.argsort(onsets, kind="stable")
    gaps = np.diff(onsets[order]) > SIMULTANEOUS_STEPS * step
    groups = np.empty(onsets.size)
    groups[order] = np.concatenate([[0.0], np.cumsum(gaps)])
    return groups


def rank_causes(
    onset: float, candidates: list[CauseCandidate], step_seconds: float
) -> list[RankedCause]:
    """Material candidates first (MATERIAL_SHARE); then the earliest onset; among
    simultaneous onsets, a declared dependency, then the earliest layer (demand, resource,
    the rest), then the largest
    deviation, and at equal surprisal the largest standardised peak (each family's
    surprisal is capped, so the large deviations of an incident often tie; they were left
    in the order the database returned them).

    An aggregate ranks after a material part of it that moved no later than a step after
    it (`_after_parts`)."""
    if not candidates:
        return []
    step = max(step_seconds, 1.0)
    deviation = np.array([max(c.deviation, 0.0) for c in candidates])
    material = deviation >= MATERIAL_SHARE * deviation.max()
    onsets, echo = _after_parts(candidates, material, step)
    # A declared dependency, then a layer, order candidates inside a group of simultaneous
    # onsets (a fraction under 1 added to the group's number), never across groups.
    layers = np.array([c.layer for c in candidates], dtype=float)
    undeclared = np.array([not c.declared for c in candidates], dtype=float)
    slots = _simultaneous_groups(onsets, step) + (undeclared * len(Layer) + layers) / (
        2 * len(Layer)
    )
    peak_z = np.array([abs(c.peak_z) for c in candidates])
    order = np.lexsort((-peak_z, -deviation, echo, slots, ~material))
    # Candidates with the same onset and (within TIE_TOLERANCE) the same standardised peak
    # are the same signal seen twice, e.g. a pool's connection count and its utilisation
    # ratio: the data cannot tell them apart, so they share a rank instead of being ordered
    # by calibration noise.
    ranks = np.empty(len(order), dtype=int)
    rank = 0
    for pos, i in enumerate(order):
        prev = order[pos - 1] if pos else None
        same = (
            prev is not None
            and slots[i] == slots[prev]
            and material[i] == material[prev]
            and peak_z[i] > 0
            and abs(peak_z[i] - peak_z[prev]) <= TIE_TOLERANCE * max(peak_z[i], peak_z[prev])
        )
        rank = rank if same else pos + 1
        ranks[i] = rank
    # A score for display: precedence (in groups of simultaneous onsets) dominates,
    # deviation breaks ties; a minor candidate earns nothing for precedence, so every
    # material candidate scores above it (0.3 * MATERIAL_SHARE at least).
    # Precedence counts the ranking's own steps (onset groups, and inside one a declared
    # dependency, then a layer), so each weighs the same in the score.
    steps = np.unique(slots[material])
    precedence = np.where(
        material, 1.0 - np.searchsorted(steps, slots) / max(steps.size - 1, 1), 0.0
    )
    size = deviation / max(deviation.max(), 1e-9)
    score = 0.7 * precedence + 0.3 * size
    return [
        RankedCause(
            key=candidates[i].key,
            rank=int(ranks[i]),
            lead_seconds=float(onset - candidates[i].onset),
            score=float(score[i]),
        )
        for i in order
    ]


def group_incidents(keys: list[int], blamed: list[tuple[int, int]]) -> list[list[int]]:
    """Incidents: the anomalies joined by "my likeliest cause is that one", each group
    listed in the order of `keys` (pass them by onset: the first is where it began).

    `blamed` pairs (effect, cause) from each anomaly's rank-1 candidates; a pair naming a
    key not in `keys` is ignored (a cause outside the window read), and ties (two rank-1
    causes) join both. Groups come in the order of their first member, singletons too:
    an anomaly nothing else is put down to is an incident of its own.
    """
    position = {k: i for i, k in enumerate(keys)}
    parent = list(range(len(keys)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for effect, cause in blamed:
        if effect in position and cause in position:
            a, b = root(position[effect]), root(position[cause])
            if a != b:
                parent[max(a, b)] = min(a, b)  # the earlier-listed member leads
    groups: dict[int, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(root(i), []).append(k)
    return list(groups.values())
