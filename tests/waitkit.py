"""Waiting in tests: the one bounded poll loop for every suite, and a wake-up counter
for helper threads (on ``sys.path`` as the directory of the root conftest).

Tests wait on events, never on elapsed time: instead of timing a call and asserting
``elapsed < N``, wait for the outcome (a thread finished, an Event was set, a counter
changed) with a generous timeout, far above what the machine needs and far below what
would mean the property failed. Call ``wait_until``:

- ``assert wait_until(lambda: not server.clients, timeout=5)`` when a falsy result
  should fail with the assertion's own message;
- ``wait_until(condition, timeout=5, what="the server dropped the client")`` to raise
  ``AssertionError`` naming ``what`` when the condition never held;
- ``value = wait_until(read_something, what=...)`` to get the first truthy value the
  condition returned (e.g. the line a process printed).

For a thread, ``thread.join(timeout)`` then ``assert not thread.is_alive()``; for an
``Event``, ``assert event.wait(timeout)``: those are waits already. The guard in
tests/test_test_hygiene.py keeps clocks out of assertions and loop conditions elsewhere.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float = 10.0, step: float = 0.02,
               what: str | None = None) -> T:
    """Call ``condition`` every ``step`` seconds until it returns a truthy value, and
    return that value. When ``timeout`` seconds pass first: raise ``AssertionError``
    naming ``what`` if it is given, otherwise return the last (falsy) value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            if what is not None:
                raise AssertionError(f"waited {timeout:g} s for {what}; last value {value!r}")
            return value
        time.sleep(step)


class WakeCounter:
    """A :class:`rpyc_ipy.core.background.WakeObserver` for tests: counts a helper
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
