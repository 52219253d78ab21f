"""Helpers for tests that race two database connections (PostgreSQL only)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import connection, connections


def until_done_or_waiting_on_us(thread: threading.Thread, timeout: float = 60.0) -> None:
    """Return once `thread` finished or blocks on a lock this connection holds.

    A race test lets the other side run "now", in the middle of this side's transaction:
    if the code under test takes the right lock, the other side waits for it, and a fixed
    sleep would either slow every run or be too short on a busy machine.
    """
    deadline = time.monotonic() + timeout
    while thread.is_alive() and time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_locks WHERE NOT granted"
                " AND pg_backend_pid() = ANY(pg_blocking_pids(pid))"
            )
            if cursor.fetchone()[0]:
                return
        time.sleep(0.05)


class OtherConnection(threading.Thread):
    """`work()` run on a database connection of its own: the other side of a race.

    Its return value, or the exception it raised, is kept in `outcome`; the thread's
    connection is closed when it ends, so the test database can be dropped.
    """

    def __init__(self, work: Callable[[], Any]) -> None:
        super().__init__()
        self.work = work
        self.outcome: list[Any] = []

    def run(self) -> None:
        try:
            self.outcome.append(self.work())
        except BaseException as exc:
            self.outcome.append(exc)
        finally:
            connections.close_all()

    def start_at(self, monkeypatch, owner: Any, name: str) -> None:
        """Start this side at the test's first call of `owner.name`, before the call runs.

        That call is the moment of the race (the test's side has read and not yet
        written): this side runs until it finishes, which the old code allowed, or waits
        on a lock the test's side holds. Its own calls of `owner.name` pass straight on.
        """
        original = getattr(owner, name)

        def racing(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is not self and self.ident is None:
                self.start()
                until_done_or_waiting_on_us(self)
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, racing)
