"""Process-wide helper threads of the connections: the release flusher and the watchdog.

Neither does protocol work of its own: the flusher writes the DEL requests that
netref finalizers queued (finalizers never do I/O), and the watchdog hands a
connection's reader role to a pool worker when a request runs long with nobody
reading (and a server loop's leadership to another thread, see servers/loop.py),
and drops the netrefs a connection kept alive once their moment is over
(core/keepalive.py). Both sleep until there is work: nothing here wakes up periodically.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import queue
import threading
import time
import weakref
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from rpyc_ipy.core.connection import Connection

__all__ = ["WATCHDOG", "ReleaseFlusher", "Stallable", "Timetable", "WakeObserver", "Watchdog"]

log = logging.getLogger("rpyc_ipy.core.background")


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
    def forget_thread(cls) -> None:
        """In a forked child: the flusher thread stayed in the parent, start a new one."""
        cls._thread = None
        cls._lock = threading.Lock()
        cls._queue = queue.SimpleQueue()

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
                conn.flush_releases()
            del conn


class WakeObserver(Protocol):
    """Told when a helper thread goes to sleep and when it wakes up (tests count
    wake-ups with one; pass it to :class:`Watchdog` or a server loop)."""

    def sleeping(self, until: float | None) -> None:
        """About to sleep until ``until`` (``time.monotonic``), or until woken (None)."""

    def woke(self) -> None:
        """Back from that sleep, for whatever reason."""


_Item = TypeVar("_Item")


class Timetable(Generic[_Item]):
    """When each item is next due, earliest first: :meth:`set`, :meth:`earliest`,
    :meth:`pop_due`. Not thread safe: its owner locks around it."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Item]] = []
        self._entries: dict[_Item, tuple[float, int]] = {}  # the heap entry in force
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, item: _Item) -> float | None:
        entry = self._entries.get(item)
        return None if entry is None else entry[0]

    def set(self, item: _Item, when: float | None) -> None:
        """``item`` is due at ``when`` from now on (None: not at all)."""
        if when is None:
            self._entries.pop(item, None)
            return
        order = next(self._order)
        self._entries[item] = (when, order)
        heapq.heappush(self._heap, (when, order, item))
        if len(self._heap) > 2 * len(self._entries) + 64:
            # replaced entries stay in the heap until they surface: drop them now and then
            self._heap = [(due, key, it) for it, (due, key) in self._entries.items()]
            heapq.heapify(self._heap)

    def peek(self) -> float | None:
        """A lock-free lower bound of :meth:`earliest` (None: nothing is due): the
        first heap entry, which may be one already replaced by a later time."""
        heap = self._heap
        try:
            return heap[0][0]
        except IndexError:
            return None

    def earliest(self) -> float | None:
        """The time the first item is due, None if none is."""
        heap = self._heap
        while heap and self._entries.get(heap[0][2]) != heap[0][:2]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> list[_Item]:
        """Take out every item due at ``now`` or before, earliest first."""
        due: list[_Item] = []
        while (first := self.earliest()) is not None and first <= now:
            item = heapq.heappop(self._heap)[2]
            del self._entries[item]
            due.append(item)
        return due


class Stallable(Protocol):
    """What the watchdog watches: a connection, or a server loop (servers/loop.py)."""

    def hand_on_if_stalled(self, now: float, grace: float) -> float | None:
        """If a request has run ``grace`` seconds with nobody to take over, hand the
        work on. Returns when to look again (a request runs but is still within its
        grace), or None."""


class Watchdog:
    """One thread that hands work on when a request runs for longer than ``grace``.

    Call :meth:`watch` as a request starts with nobody else to read: the thread
    sleeps until the earliest time it was given, asks each item that is due
    (:meth:`Stallable.hand_on_if_stalled`), and with nothing to watch sleeps
    until the next :meth:`watch`. ``observer`` hears of its sleeps and wake-ups.
    """

    GRACE = 0.01  # a request running longer than this gets a reader beside it

    def __init__(self, grace: float = GRACE, observer: WakeObserver | None = None) -> None:
        self.grace = grace
        self._observer = observer
        self._cond = threading.Condition(threading.Lock())
        self._due: Timetable[Stallable] = Timetable()
        self._thread: threading.Thread | None = None

    def watch(self, item: Stallable, since: float) -> None:
        """Ask ``item`` at ``since`` + grace (``time.monotonic``) whether it stalled."""
        when = since + self.grace
        due = self._due.get(item)  # no lock: the usual answer (every request asks), fast
        if due is None or due > when:
            self.watch_at(item, when)

    def watch_at(self, item: Stallable, when: float) -> None:
        """Ask ``item`` at ``when`` (``time.monotonic``), or earlier if already due then."""
        due = self._due.get(item)  # no lock: an earlier look also sees the newer request
        if due is not None and due <= when:
            return
        with self._cond:
            due = self._due.get(item)
            if due is not None and due <= when:
                return
            self._due.set(item, when)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="rpyc_ipy-watchdog",
                                                daemon=True)
                self._thread.start()
            elif self._due.earliest() == when:
                self._cond.notify()  # it sleeps until later than this, or without a timeout

    def forget_thread(self) -> None:
        """In a forked child: the thread and what it watched stayed in the parent."""
        self._cond = threading.Condition(threading.Lock())
        self._due = Timetable()
        self._thread = None

    def _run(self) -> None:
        observer = self._observer
        with self._cond:
            while True:
                now = time.monotonic()
                due = self._due.pop_due(now)
                if due:
                    # taken out before asking: a watch() meanwhile puts the item back
                    self._cond.release()
                    try:
                        again = [(item, self._ask(item, now)) for item in due]
                    finally:
                        self._cond.acquire()
                    for item, when in again:
                        current = self._due.get(item)
                        if when is not None and (current is None or when < current):
                            self._due.set(item, when)
                    continue
                until = self._due.earliest()
                if observer is not None:
                    observer.sleeping(until)
                self._cond.wait(None if until is None else until - now)
                if observer is not None:
                    observer.woke()

    def _ask(self, item: Stallable, now: float) -> float | None:
        try:
            return item.hand_on_if_stalled(now, self.grace)
        except Exception:  # a bug of ours: the watchdog must go on for everyone else
            log.exception("the watchdog failed to check %r", item)
            return None


#: the watchdog of this process's connections and server loops
WATCHDOG = Watchdog()


def _after_fork_in_child() -> None:
    # a forked child (a ForkingServer's client, a ThreadedServer's worker process) has
    # only the thread that forked: the helper threads start again when first needed
    ReleaseFlusher.forget_thread()
    WATCHDOG.forget_thread()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
