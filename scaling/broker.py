"""The Celery queue backlog, read from the broker itself.

On Redis, kombu keeps a queue as a list named after it plus one list per
priority level (``<queue>\\x06\\x16<priority>``); the backlog is the sum of
their lengths. Other brokers return ``None`` and the rule falls back to the
``celery.queue.backlog`` telemetry series.
"""

from __future__ import annotations

PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)  # kombu's default Redis priority steps


def queue_list_names(queue: str, priority_steps=PRIORITY_STEPS) -> list[str]:
    return [queue] + [f"{queue}{PRIORITY_SEPARATOR}{p}" for p in priority_steps if p]


def redis_backlog(redis_client, queue: str) -> int:
    """Sum of LLEN over the queue's list and its priority sub-lists (one round trip)."""
    pipe = redis_client.pipeline()
    for name in queue_list_names(queue):
        pipe.llen(name)
    return int(sum(pipe.execute()))


def broker_backlog(broker_url: str, queue: str) -> int | None:
    """Backlog of ``queue`` on a Redis broker, ``None`` when the broker is not Redis."""
    if not broker_url.startswith(("redis://", "rediss://")):
        return None
    import redis

    client = redis.Redis.from_url(broker_url, socket_timeout=2)
    try:
        return redis_backlog(client, queue)
    finally:
        client.close()
