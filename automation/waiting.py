"""Polling with backoff and an explicit deadline: the one way fleet waits for AWS."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

from automation.errors import ReleaseFailed

T = TypeVar("T")


class WaitTimeout(ReleaseFailed):
    """A wait ran past its deadline."""


def wait_for(
    check: Callable[[], T],
    *,
    what: str,
    timeout_s: float,
    first_delay_s: float = 1.0,
    max_delay_s: float = 15.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call check() until it returns something truthy and return that.

    The delay between calls doubles from first_delay_s up to max_delay_s and never
    runs past the deadline. check() may raise to abort the wait.
    """
    deadline = clock() + timeout_s
    delay = first_delay_s
    while True:
        result = check()
        if result:
            return result
        remaining = deadline - clock()
        if remaining <= 0:
            raise WaitTimeout(f"timed out after {timeout_s:.0f}s waiting for {what}")
        sleep(min(delay, remaining))
        delay = min(delay * 2, max_delay_s)
