"""Where a metric sits in the chain load → saturation → symptoms, read from its name.

At five-minute resolution a runaway job's CPU and the latency it causes can move in the
same sampling step (the demo world's latency answers the CPU's level at once). Onsets
less than a quarter step apart count as simultaneous, and the latency, which moves more,
would be ranked the cause of the CPU's own anomaly. The data cannot order them; what
operators know can. Brendan Gregg's USE method reads a resource's utilisation and
saturation, Tom Wilkie's RED method a service's rate, errors and duration; a saturated
resource is what a service's latency and errors answer to, as more work arriving is what
saturates a resource. Among candidates whose onsets are simultaneous, root-cause ranking
therefore puts a rise in demand before a rise in a resource, and both before everything
else; across sampling steps precedence still rules.

Only rises carry a layer: a falling request rate during an outage is users leaving, and a
CPU that drops while latency climbs is waiting on something else; both are effects.
Anything not recognised shares the last layer with latency and errors, so the prior only
lifts what it knows. What the name does not say, an operator declares (`SignalLayerRule`:
`orders.created` is demand, `queue.latency` saturation), and a declaration wins over the
name; the direction still rules, since a declared resource that falls is an effect too.
"""

from __future__ import annotations

import re
from enum import IntEnum
from functools import lru_cache


class Layer(IntEnum):
    DEMAND = 0  # work arriving: request rates, active users and sessions
    RESOURCE = 1  # USE: utilisation, saturation and errors of CPU, memory, pools, queues
    OUTCOME = 2  # RED's errors and duration, and anything not recognised


# Host- and runtime-level namespaces (OpenTelemetry's `system.*`, `process.*`,
# `container.*`, `k8s.*`, `jvm.*`; Prometheus' node exporter): every metric there is a
# resource's, its errors included (USE's E).
RESOURCE_NAMESPACES = frozenset(
    {"system", "process", "container", "k8s", "node", "host", "jvm", "runtime", "kube"}
)
# A service's errors and duration (RED), whatever it spends them on.
OUTCOME_WORDS = frozenset(
    {
        "latency",
        "duration",
        "error",
        "errors",
        "failure",
        "failures",
        "failed",
        "timeout",
        "timeouts",
        "5xx",
        "4xx",
        "apdex",
        "p50",
        "p75",
        "p90",
        "p95",
        "p99",
        "p999",
    }
)
# Units of time, and ratios per unit of work (`db.queries.per_request`): an outcome unless
# the name also names a resource (`disk.io.time` is a disk's busy time,
# `db.connections.wait_time` a pool's saturation).
WEAK_OUTCOME_WORDS = frozenset({"time", "seconds", "ms", "per"})
RESOURCE_WORDS = frozenset(
    {
        "cpu",
        "memory",
        "mem",
        "heap",
        "swap",
        "disk",
        "filesystem",
        "inodes",
        "io",
        "network",
        "connections",
        "pool",
        "utilization",
        "utilisation",
        "saturation",
        "queue",
        "backlog",
        "lag",
        "threads",
        "workers",
        "quota",
        "ratelimit",
        "gc",
        "fds",
    }
)
DEMAND_WORDS = frozenset(
    {"requests", "rps", "qps", "throughput", "traffic", "users", "sessions", "arrivals"}
)


def signal_layer(name: str, direction: int = 1, declared: Layer | None = None) -> Layer:
    """The layer of metric `name` for a deviation in `direction` (+1 above expected):
    the `declared` one if an operator declared it, else the one its name says."""
    if direction < 0:
        return Layer.OUTCOME
    if declared is not None:
        return Layer(declared)
    named = named_layer(name)
    return Layer.OUTCOME if named is None else named


@lru_cache(maxsize=8192)  # a fleet-wide incident ranks thousands of anomalies of few names
def named_layer(name: str) -> Layer | None:
    """The layer a rise of metric `name` has by its name alone; None if the name says
    nothing this module knows (what an operator may want to declare).

    Words are the name's parts split at anything not a letter or digit, lower-cased.
    """
    words = [w for w in re.split(r"[^0-9a-z]+", name.lower()) if w]
    if not words:
        return None
    if words[0] in RESOURCE_NAMESPACES:
        return Layer.RESOURCE
    found = set(words)
    if found & OUTCOME_WORDS:
        return Layer.OUTCOME
    if found & RESOURCE_WORDS:
        return Layer.RESOURCE
    if found & DEMAND_WORDS:
        return Layer.OUTCOME if found & WEAK_OUTCOME_WORDS else Layer.DEMAND
    return Layer.OUTCOME if found & WEAK_OUTCOME_WORDS else None
