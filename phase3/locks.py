"""A non-blocking lock that keeps a job from overlapping with itself.

Redis (``SET NX PX`` through redis-py's Lock) when REDIS_URL is configured; otherwise a
row in ``JobLock`` whose unique key makes the insert the atomic test-and-set. Both
expire, so a killed worker cannot hold a job hostage; a live one renews its lock with
each heartbeat (`job_lock_renew`), so a task that outlives its time limit under a pool
that does not enforce it (solo, threads) is not overlapped by the next run.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import timedelta
from functools import cache

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from .models import JobLock


@cache
def _redis(url: str):
    import redis

    return redis.Redis.from_url(url)


@contextlib.contextmanager
def job_lock(key: str, *, timeout: float, owner: str | None = None) -> Iterator[bool]:
    """Yield True if this caller holds the lock, False if someone else does.

    `owner` names the holder (a task's id). The same owner finding the lock held takes it
    over: that is a message redelivered after its worker was killed (SIGKILL, out of
    memory), whose lock would otherwise outlive it for the task's whole time limit and
    turn the redelivery into a "skipped" run, the work lost.
    """
    owner = owner or uuid.uuid4().hex
    if settings.REDIS_URL:
        lock = _redis(settings.REDIS_URL).lock(
            f"phase3:lock:{key}", timeout=timeout, blocking=False
        )
        acquired = lock.acquire(blocking=False, token=owner)
        if not acquired and lock.redis.get(lock.name) == owner.encode():
            lock.local.token = owner.encode()
            acquired = bool(lock.reacquire())
        try:
            yield acquired
        finally:
            if acquired:
                with contextlib.suppress(Exception):  # expired meanwhile: nothing to release
                    lock.release()
        return
    acquired = _db_acquire(key, owner, timeout)
    try:
        yield acquired
    finally:
        if acquired:
            JobLock.objects.filter(key=key, owner=owner).delete()


#: Extends the key's expiry only while the caller still holds it (compare-and-expire).
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""


def job_lock_renew(key: str, *, owner: str, timeout: float) -> bool:
    """Push the expiry of `owner`'s lock on `key` to `timeout` seconds from now.

    False when the lock is no longer this owner's (it expired and someone else took it):
    renewing never steals. Called by the heartbeat thread for the runs it keeps alive.
    """
    if settings.REDIS_URL:
        client = _redis(settings.REDIS_URL)
        return bool(client.eval(_RENEW, 1, f"phase3:lock:{key}", owner, int(timeout * 1000)))
    expires = timezone.now() + timedelta(seconds=timeout)
    return JobLock.objects.filter(key=key, owner=owner).update(expires_at=expires) == 1


def _db_acquire(key: str, owner: str, timeout: float) -> bool:
    now = timezone.now()
    JobLock.objects.filter(key=key, expires_at__lt=now).delete()
    try:
        with transaction.atomic():
            JobLock.objects.create(
                key=key, owner=owner, expires_at=now + timedelta(seconds=timeout)
            )
    except IntegrityError:
        # Held: by this owner only if a redelivered message finds its dead worker's lock.
        taken = JobLock.objects.filter(key=key, owner=owner).update(
            expires_at=now + timedelta(seconds=timeout)
        )
        return taken == 1
    return True
