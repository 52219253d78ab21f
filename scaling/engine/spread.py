"""Spreading a resource's units over the members that run them (Celery workers, say).

A resource's units are a total, the way Kubernetes counts a Deployment's replicas: the
decision, its cost and its outcome are all computed on that total. A Celery worker's pool
is sized per worker, though, so the total has to be split: as evenly as possible (the
broker hands tasks out round-robin, so an uneven split leaves some processes idle while
others queue), moving as few processes as possible.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: A worker with no pool process still consumes (prefetches) tasks it can never run, so
#: every member keeps at least one; the floor also keeps a worker answering remote control.
MIN_PER_MEMBER = 1


@dataclass(frozen=True)
class Spread:
    """Each member's share of ``requested`` units and what that adds up to.

    ``total`` differs from ``requested`` only when there are more members than requested
    units: each member still keeps ``MIN_PER_MEMBER``, so ``total`` is the member count.
    """

    requested: int
    shares: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.shares.values())

    @property
    def floored(self) -> bool:
        """True when the members' minimum raised the total above the request."""
        return self.total > self.requested


def spread_units(requested: int, current: Mapping[str, int]) -> Spread:
    """Split ``requested`` units over the members of ``current`` (member -> its size now).

    Every member gets ``requested // n`` or one more (at least ``MIN_PER_MEMBER``); the one
    more goes to the members that are largest now (ties by name, so the split is the same
    on every call), since a member already above the base keeps a process instead of losing
    one that another member then has to start: of all even splits this one moves the fewest
    processes.
    """
    if requested < 0:
        raise ValueError("requested units must be >= 0")
    if not current:
        raise ValueError("no member to spread units over")
    members = sorted(current, key=lambda m: (-current[m], m))
    base, extra = divmod(requested, len(members))
    shares = {m: max(MIN_PER_MEMBER, base + (1 if i < extra else 0)) for i, m in enumerate(members)}
    return Spread(requested=requested, shares=dict(sorted(shares.items())))
