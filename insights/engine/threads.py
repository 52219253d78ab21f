"""Keep native thread pools to one thread while the engine fits models.

Celery already runs one worker process per core. Letting OpenMP/BLAS in every process
start a thread per core as well oversubscribes the machine: on the 2-core CI box a
KMeans k-sweep measured 12.4 s with default threads and 0.56 s with one thread.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from threadpoolctl import threadpool_limits

P = ParamSpec("P")
R = TypeVar("R")


def single_threaded(func: Callable[P, R]) -> Callable[P, R]:
    """Run ``func`` with native thread pools limited to one thread."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with threadpool_limits(limits=1):
            return func(*args, **kwargs)

    return wrapper
