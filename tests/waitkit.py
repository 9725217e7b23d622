"""Waiting in tests: one bounded poll loop for every suite, and a wake-up counter for
helper threads (on ``sys.path`` as the directory of the root conftest)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, step: float = 0.02) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


class WakeCounter:
    """A :class:`rpyc_ipy.background.WakeObserver` for tests: counts a helper
    thread's wake-ups and lets a test wait until it sleeps or wakes."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.wakeups = 0
        self.asleep = False
        self.until: float | None = None  # what the current or last sleep waits for

    def sleeping(self, until: float | None) -> None:
        with self._cond:
            self.asleep, self.until = True, until
            self._cond.notify_all()

    def woke(self) -> None:
        with self._cond:
            self.asleep = False
            self.wakeups += 1
            self._cond.notify_all()

    def wait_parked(self, timeout: float = 10.0) -> bool:
        """Wait until the thread sleeps with no deadline (only new work wakes it)."""
        with self._cond:
            return self._cond.wait_for(lambda: self.asleep and self.until is None, timeout)

    def wait_sleeping_until_a_deadline(self, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.asleep and self.until is not None, timeout)

    def wait_woken(self, past: int, timeout: float) -> bool:
        """Wait until the thread has woken more than ``past`` times in all."""
        with self._cond:
            return self._cond.wait_for(lambda: self.wakeups > past, timeout)
