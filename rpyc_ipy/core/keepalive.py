"""The last few netrefs the peer sent, kept alive for a moment after their last use.

A callback passed on every call (``conn.root.call(cb, i)``) reaches the server as
the same reference each time. Without a strong reference the server's netref of
it dies at the end of each call, and the next call builds a new one (proxy object,
cache entry, its brine encoded again) while the release of the old one goes out
as a DEL or is taken back. Kept here, the next call finds the same netref alive
and only adds one to its count; when it finally dies, its one DEL carries the
count it accumulated (RPyC's DEL takes a count).

Bounded both ways, so no remote object is held for long: at most ``size`` netrefs
(the least recently used goes first), each for at most ``hold`` seconds after it
was last sent to us; the watchdog thread (core/background.py) drops the expired
ones while the connection is idle. A closing connection drops them all.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rpyc_ipy.core.background import WATCHDOG

__all__ = ["KeptNetrefs"]


class KeptNetrefs:
    """Strong references to the ``size`` netrefs most recently unboxed, each dropped
    ``hold`` seconds after its last use. :meth:`keep` is called with ``lock`` held
    (the connection's); :meth:`hand_on_if_stalled` is the watchdog's call."""

    def __init__(self, lock: threading.Lock, size: int, hold: float) -> None:
        self._lock = lock
        self._size = size
        self._hold = hold
        # id(netref) -> (netref, last use); in order of last use, oldest first
        self._kept: dict[int, tuple[Any, float]] = {}
        self._watched = False

    def __len__(self) -> int:
        return len(self._kept)

    def keep(self, netref: Any) -> None:
        """``netref`` was just unboxed: keep it until ``hold`` seconds from now."""
        if not self._size:
            return
        kept = self._kept
        now = time.monotonic()
        if kept.pop(id(netref), None) is None and len(kept) >= self._size:
            del kept[next(iter(kept))]  # the least recently used; its DEL is queued now
        kept[id(netref)] = (netref, now)
        if not self._watched:
            self._watched = True
            WATCHDOG.watch_at(self, now + self._hold)

    def take_all(self) -> list[Any]:
        """Stop keeping every netref; returns them, to be dropped after the lock is
        released (call with it held)."""
        netrefs = [netref for netref, _ in self._kept.values()]
        self._kept.clear()
        return netrefs

    def hand_on_if_stalled(self, now: float, grace: float) -> float | None:
        """The watchdog's call (:class:`~rpyc_ipy.core.background.Stallable`): drop
        the netrefs unused for ``hold`` seconds; returns when the next one expires."""
        expired = []
        with self._lock:
            kept = self._kept
            while kept:
                key = next(iter(kept))
                netref, used = kept[key]
                if used + self._hold > now:
                    return used + self._hold
                expired.append(netref)
                del kept[key]
            self._watched = False
        del expired  # here, outside the lock: their finalizers queue the releases
        return None
