"""Rank a point's combined evidence against the same series' own recent evidence.

The families' surprisals are each calibrated, but their weighted sum is not: statistics
that measure nearly the same thing (a spike is both a point z-score and a profile
deviation) add up, and an exponential tail fitted to a heavy-tailed series keeps calling
routine bursts "one in a million". Both errors differ from series to series, so one global
alert threshold meant "a few alerts a month" on a smooth gauge and "several a day" on a
bursty counter; on the NAB development files the best threshold for the hourly ad-exchange
series was 0.50 against 0.81 for the others.

This stage asks the question an operator actually has: how does this evidence compare with
what this series usually produces? It keeps, per series, an exponentially decayed histogram
of past evidence over fixed log-spaced bins and reports -log10 of the share of past points
with at least as much evidence (with one pseudo-count, so the answer is bounded by the
history's length). A value above everything still held in the histogram earns an extra
`record_bonus` per doubling over the highest occupied bin, so that a first, huge incident
on a young series is not capped by the little history there is. The state is a fixed
(series, bins) array, cheap to store for 10,000 series and identical whether history is fed
in one call or one point at a time.
"""

from __future__ import annotations

import numpy as np

# Bin 0 holds "no evidence at all"; the others are log-spaced up to far beyond anything a
# sum of a few calibrated surprisals reaches.
EDGES = np.concatenate([[0.0], np.geomspace(0.25, 1e5, 64)])
N_BINS = EDGES.size
# Counts below this are treated as empty when finding the highest occupied bin.
_OCCUPIED = 0.5
_BIN = np.arange(N_BINS)
# Upper edge and width of each bin; the last, open-ended bin counts as one doubling wide.
_UPPER = np.append(EDGES[1:], EDGES[-1] * 2.0)
_WIDTH = _UPPER - EDGES


class EvidenceRanker:
    """Decayed histogram of evidence for S series, updated one time step at a time."""

    def __init__(self, n_series: int, span: float, record_bonus: float) -> None:
        self.decay = 1.0 - 2.0 / (span + 1.0)
        self.record_bonus = record_bonus
        self.counts = np.zeros((n_series, N_BINS))
        self.held = np.zeros(n_series)

    def surprisal_and_update(self, evidence: np.ndarray, learn: np.ndarray) -> np.ndarray:
        """-log10 share of the held history with at least `evidence` (S,), then learn it.

        Only series where `learn` is true are scored (0 elsewhere) and updated.
        """
        x = np.maximum(np.nan_to_num(evidence), 0.0)
        k = np.clip(np.searchsorted(EDGES, x, side="right") - 1, 0, N_BINS - 1)
        rows = np.arange(x.shape[0])
        # Within the bin, assume evidence spread evenly: the part above x counts as "at least".
        above_in_bin = np.clip((_UPPER[k] - x) / _WIDTH[k], 0.0, 1.0)
        # One masked dot product per series: a third of the time of a cumulative sum over
        # the bins, and this runs twice per time step (point and sustained rank).
        strictly_above = np.einsum("sb,sb->s", self.counts, k[:, None] < _BIN)
        at_least = strictly_above + self.counts[rows, k] * above_in_bin
        surprisal = -np.log10((at_least + 1.0) / (self.held + 1.0))

        occupied = self.counts >= _OCCUPIED
        top = N_BINS - 1 - np.argmax(occupied[:, ::-1], axis=1)
        has_top = occupied[rows, top]
        top_edge = _UPPER[top]
        record = has_top & (x > top_edge)
        bonus = np.where(record, np.log2(np.maximum(x, 1e-12) / top_edge), 0.0)
        out = np.where(learn, np.maximum(surprisal, 0.0) + self.record_bonus * bonus, 0.0)

        decay = np.where(learn, self.decay, 1.0)
        self.counts *= decay[:, None]
        self.held = self.held * decay + learn
        self.counts[rows[learn], k[learn]] += 1.0
        return out

    def state(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts, "held": self.held}
