"""Deterministic, sticky experiment assignment: GrowthBook's hashing scheme, version 2.

The same (experiment, user) must get the same variant on every call, on every
server and after a restart, without storing anything first. We reuse GrowthBook's
published scheme so that assignments can be reproduced by any of its SDKs:

1. ``n = fnv1a32(str(fnv1a32(seed + user_id))) % 10000 / 10000`` -- a number in
   [0, 1). The seed is the experiment key. Hashing twice ("v2") removes the bias
   v1 had when similar seeds and ids were concatenated.
2. The unit interval is cut into one range per variant, each range starting at
   the variant's cumulative weight and as long as ``coverage * weight``
   (``bucket_ranges``). Users whose ``n`` falls outside every range (coverage < 1)
   are not in the experiment.

FNV-1a (32-bit): offset basis 0x811C9DC5, prime 0x01000193, xor then multiply, per
character code (GrowthBook's Python SDK iterates over characters, like the JS SDK
over UTF-16 code units, which agree for ids in the Basic Multilingual Plane).
Test vectors from GrowthBook's shared ``cases.json`` are in the tests.
"""

from __future__ import annotations

from collections.abc import Sequence

FNV_OFFSET_BASIS = 0x811C9DC5
FNV_PRIME = 0x01000193
UINT32 = 2**32


def fnv1a32(text: str) -> int:
    h = FNV_OFFSET_BASIS
    for char in text:
        h = ((h ^ ord(char)) * FNV_PRIME) % UINT32
    return h


def growthbook_hash(seed: str, value: str, version: int = 2) -> float:
    """GrowthBook's hash of ``value`` under ``seed``: a float in [0, 1)."""
    if version == 2:
        return (fnv1a32(str(fnv1a32(seed + value))) % 10_000) / 10_000
    if version == 1:
        return (fnv1a32(value + seed) % 1_000) / 1_000
    raise ValueError(f"unknown hash version {version}")


def normalise_weights(n_variants: int, weights: Sequence[float] | None) -> list[float]:
    """Weights as given when they sum to ~1, equal split otherwise (GrowthBook's rule)."""
    if n_variants <= 0:
        raise ValueError("an experiment needs at least one variant")
    if weights is None or len(weights) != n_variants or abs(sum(weights) - 1.0) > 0.01:
        return [1.0 / n_variants] * n_variants
    return [float(w) for w in weights]


def bucket_ranges(
    n_variants: int, coverage: float = 1.0, weights: Sequence[float] | None = None
) -> list[tuple[float, float]]:
    """[start, end) of each variant on the unit interval."""
    coverage = min(max(coverage, 0.0), 1.0)
    cumulative = 0.0
    ranges = []
    for w in normalise_weights(n_variants, weights):
        start = cumulative
        cumulative += w
        ranges.append((start, start + coverage * w))
    return ranges


def choose_variant(n: float, ranges: Sequence[tuple[float, float]]) -> int:
    """Index of the range containing ``n``, or -1 when the user is outside the experiment."""
    for i, (start, end) in enumerate(ranges):
        if start <= n < end:
            return i
    return -1


def assign_variant(
    *,
    experiment_key: str,
    user_id: str,
    variants: Sequence[str],
    weights: Sequence[float] | None = None,
    coverage: float = 1.0,
    seed: str | None = None,
) -> str | None:
    """The user's variant name, or None when coverage leaves them out."""
    n = growthbook_hash(seed if seed is not None else experiment_key, str(user_id), 2)
    index = choose_variant(n, bucket_ranges(len(variants), coverage, weights))
    return None if index < 0 else variants[index]
