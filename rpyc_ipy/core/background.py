"""Process-wide helper threads of the connections: the release flusher and the watchdog.

Neither does protocol work of its own: the flusher writes the DEL requests that
netref finalizers queued (finalizers never do I/O), and the watchdog hands a
connection's reader role to a pool worker when a request runs long with nobody
reading (and a server loop's leadership to another thread, see servers/loop.py).
"""

from __future__ import annotations

import queue
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rpyc_ipy.core.connection import Connection

__all__ = ["ReleaseFlusher", "Watchdog"]


class ReleaseFlusher:
    """A background flusher for releases queued by netref finalizers."""

    _queue: queue.SimpleQueue[weakref.ref[Connection]] = queue.SimpleQueue()
    _thread: threading.Thread | None = None
    _lock = threading.Lock()

    @classmethod
    def ensure_started(cls) -> None:
        """Start the flusher thread; called when a connection is built, never from
        a finalizer (starting a thread there can deadlock at interpreter exit)."""
        if cls._thread is None:
            with cls._lock:
                if cls._thread is None:
                    cls._thread = threading.Thread(target=cls._run, name="rpyc_ipy-releases",
                                                   daemon=True)
                    cls._thread.start()

    @classmethod
    def schedule(cls, conn: Connection) -> None:
        # SimpleQueue.put is reentrant: safe to call from __del__
        cls._queue.put(weakref.ref(conn))

    @classmethod
    def _run(cls) -> None:
        while True:
            ref = cls._queue.get()
            time.sleep(0.002)  # let a burst of finalizers queue up: one write for all
            conn = ref()
            if conn is not None:
                conn._flush_releases()
            del conn


class Stallable(Protocol):
    """What the watchdog watches: a connection, or a server loop (servers/loop.py)."""

    def _hand_on_if_stalled(self, now: float, grace: float, watched: set[Any]) -> None: ...


class Watchdog:
    """One thread for the process: hands the reader role on for requests that run long.

    It ticks only while some connection runs a request with nobody reading, and
    lingers a little after that so a stream of quick requests costs no wake-ups.
    """

    GRACE = 0.01  # a request running longer than this gets a reader beside it
    TICK = 0.01
    LINGER = 0.25
    _watched: set[Stallable] = set()
    _lock = threading.Lock()
    _wakeup = threading.Event()
    _thread: threading.Thread | None = None
    _ticking = False

    @classmethod
    def watch(cls, conn: Stallable) -> None:
        cls._watched.add(conn)  # set.add is atomic under the GIL
        if not cls._ticking:
            with cls._lock:
                if cls._thread is None:
                    cls._thread = threading.Thread(target=cls._run, name="rpyc_ipy-watchdog",
                                                   daemon=True)
                    cls._thread.start()
            cls._wakeup.set()

    @classmethod
    def _run(cls) -> None:
        idle_since = time.monotonic()
        while True:
            if not cls._watched and time.monotonic() - idle_since > cls.LINGER:
                cls._ticking = False
                if not cls._watched:  # re-check: watch() may have added one meanwhile
                    cls._wakeup.wait()
                cls._wakeup.clear()
                idle_since = time.monotonic()
            cls._ticking = True
            time.sleep(cls.TICK)
            now = time.monotonic()
            for conn in list(cls._watched):
                conn._hand_on_if_stalled(now, cls.GRACE, cls._watched)
            if cls._watched:
                idle_since = now
