"""Who reads a connection's transport at any moment: the reader role.

Exactly one thread reads at a time: the *reader*. A thread waiting for a reply
tries to become the reader, so in the common case it reads its own reply with no
thread hand-off at all; otherwise it sleeps until the reader hands it its reply
or the role. A reader that reads a request gives the role up before running it
(:meth:`ReaderRole.begin_request`): to a waiting caller at once, or, if the
request runs longer than a few milliseconds, the :class:`~rpyc_ipy.core.background.Watchdog`
hands it to an idle or new worker of a bounded pool. A connection read by a
server loop (servers/loop.py) goes back to the loop instead.

The connection owns the reading itself: :class:`ReaderRole` calls its
:class:`ReadLoop` whenever a thread holds the role, and shares its lock (the
connection's pending table and this state change together).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal, Protocol

from rpyc_ipy.core.async_result import AsyncResult
from rpyc_ipy.core.background import WATCHDOG
from rpyc_ipy.errors import UsageError

__all__ = ["ReadLoop", "ReaderRole", "WaitOutcome"]

WaitOutcome = Literal["ready", "timeout", "closed"]


class ReadLoop(Protocol):
    """The connection's read loop, run by whoever holds the role.

    Reads frames until ``done()`` (or ``deadline``), running what arrives;
    returns True if it gave the role up to run a request. ``nested``: the caller
    already holds the role further up its stack. ``nowait``: return as soon as no
    whole frame has arrived.
    """

    def __call__(self, done: Callable[[], bool], deadline: float | None, nested: bool,
                 on_frame: list[bool] | None = None, nowait: bool = False) -> bool: ...


def _never() -> bool:
    return False


class ReaderRole:
    """The reader-role scheduler of one connection; see the module docstring.

    Callers: :meth:`wait` (a caller waiting for a reply), :meth:`serve_once`,
    :meth:`serve_forever`, :meth:`start_serving`/:meth:`stop_serving`,
    :meth:`pump` (a server loop), :meth:`begin_request`/:meth:`end_request`
    around each request the connection runs, :meth:`wake_waiter` when a reply
    came, :meth:`shut_locked` when the connection closes.
    """

    def __init__(self, lock: threading.Lock, read: ReadLoop, max_threads: int,
                 thread_name: str) -> None:
        self._lock = lock
        self._read = read
        self._max_threads = max_threads
        self._thread_name = thread_name
        self._reading = False
        self._reader_ident: int | None = None
        self._callers: dict[int, AsyncResult] = {}  # waiting for a reply (or the role)
        self._idle_workers: list[threading.Lock] = []
        self._workers = 0
        self._serving = 0
        self._executing = 0
        self._waiting = 0
        self._unread_since: float | None = None  # a request runs and nobody reads
        # a server loop reads us (attach_loop): rearm(missed) when the role is given up
        self._rearm: Callable[[bool], None] | None = None
        # the loop pumped while another thread held the role: what woke it may be unread
        self._missed = False
        self._shut = False
        # a pump was turned away at the thread cap: a request's thread must read on
        self._turned_away = False

    @property
    def reading(self) -> bool:
        """Some thread holds the role now."""
        return self._reading

    @property
    def executing(self) -> int:
        """How many of the peer's requests are running now."""
        return self._executing

    # -- waiting callers ---------------------------------------------------------

    def wait(self, result: AsyncResult, deadline: float | None) -> WaitOutcome:
        """Block until ``result`` is ready, reading the transport when it is our turn;
        "timeout" once ``deadline`` passed (``result`` is no longer waited for),
        "closed" if the connection closed first."""
        me = threading.get_ident()
        with self._lock:
            self._waiting += 1
        try:
            while True:
                with self._lock:
                    if result.ready:
                        return "ready"
                    if self._shut:
                        return "closed"
                    if not self._reading:
                        self._reading = True
                        self._reader_ident = me
                        self._unread_since = None
                        role = "reader"
                    elif self._reader_ident == me:
                        role = "nested"
                    else:
                        role = "follower"
                        if result.wake is None:
                            result.wake = threading.Lock()
                            result.wake.acquire()
                        self._callers[id(result)] = result
                if role == "reader":
                    try:
                        self._read(lambda: result.ready, deadline, nested=False)
                    finally:
                        # we leave with the result (or at the deadline): don't count us as
                        # a waiter that needs a reader; no-op if the role was handed off
                        self.release(departing=True)
                elif role == "nested":
                    self._read(lambda: result.ready, deadline, nested=True)
                else:
                    wake = result.wake
                    assert wake is not None
                    remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                    woken = wake.acquire(timeout=-1 if remaining is None else remaining)
                    if not woken:
                        with self._lock:
                            if self._callers.pop(id(result), None) is None:
                                wake.acquire()  # a wake raced the timeout: re-arm the lock
                if not result.ready and deadline is not None and time.monotonic() >= deadline:
                    with self._lock:
                        self._callers.pop(id(result), None)
                    return "timeout"
        finally:
            with self._lock:
                self._waiting -= 1

    def wake_waiter(self, result: AsyncResult) -> None:
        """``result`` was resolved: wake its caller if it sleeps as a follower."""
        with self._lock:
            waiter = self._callers.pop(id(result), None)
        if waiter is not None and waiter.wake is not None:
            waiter.wake.release()

    # -- serving ---------------------------------------------------------------------

    def serve_once(self, done: Callable[[], bool], deadline: float,
                   on_frame: list[bool]) -> None:
        """Read as the reader until ``done()``; ``UsageError`` if another thread reads."""
        with self._lock:
            if self._reading:
                raise UsageError("another thread is reading this connection")
            self._reading = True
            self._reader_ident = threading.get_ident()
        try:
            self._read(done, deadline, nested=False, on_frame=on_frame)
        finally:
            self.release()

    def serve_forever(self) -> None:
        """Take the role whenever it is free, until the connection closes; this
        thread runs requests too, so it counts against the thread cap."""
        with self._lock:
            self._serving += 1
            self._workers += 1
        try:
            self._worker_loop(stop_when_idle=False)
        finally:
            with self._lock:
                self._serving -= 1
                self._workers -= 1

    def start_serving(self) -> bool:
        """Keep a reader from now on, even while no call waits; False if the
        connection is closed. Undo with :meth:`stop_serving`."""
        with self._lock:
            if self._shut:
                return False
            self._serving += 1
            spawn = not self._reading and not self._idle_workers and \
                self._workers < self._max_threads
            if spawn:
                self._workers += 1
            elif not self._reading and self._idle_workers:
                self._idle_workers.pop().release()
        if spawn:
            self._spawn_worker()
        return True

    def stop_serving(self) -> None:
        """Undo one :meth:`start_serving`; the background reader leaves when idle."""
        with self._lock:
            if self._serving > 0:
                self._serving -= 1

    # -- served by an event loop ----------------------------------------------------

    def attach_loop(self, rearm: Callable[[bool], None]) -> None:
        """A server loop reads from now on: giving up the role calls ``rearm(missed)``;
        ``missed``: the loop pumped meanwhile and was turned away, so the readiness
        it was told of may not have been read (an edge-triggered wait is not told
        again)."""
        self._rearm = rearm

    def pump(self) -> None:
        """Read every frame that has arrived, without waiting; requests run on this
        thread (see :meth:`rpyc_ipy.core.connection.Connection.pump`)."""
        me = threading.get_ident()
        while True:
            with self._lock:
                if self._shut:
                    return
                if self._reading:
                    self._missed = True
                    return  # whoever reads now re-arms the loop when done
                if self._executing >= self._max_threads:
                    self._turned_away = True
                    return  # at the cap: the threads running requests read on when done
                self._turned_away = False
                self._reading = True
                self._reader_ident = me
                self._unread_since = None
            try:
                ran_request = self._read(_never, None, nested=False, nowait=True)
            finally:
                self.release()
            if not ran_request:
                return
            with self._lock:
                # the role was handed on before the request ran (to a caller, or back
                # to the loop, which re-armed): another read here would mostly fail
                # and re-arm again, two syscalls per request. Read on only for a pump
                # the cap turned away meanwhile
                if not self._turned_away:
                    return

    # -- running requests ---------------------------------------------------------

    def begin_request(self, release_role: bool) -> None:
        """A request starts running; ``release_role``: the reader runs it, so give
        the role up first (counted as executing already, so a loop respects the
        thread cap)."""
        with self._lock:
            self._executing += 1
        if release_role:
            self.release(for_request=True)

    def end_request(self) -> None:
        with self._lock:
            self._executing -= 1

    # -- handing the role on --------------------------------------------------------

    def _needs_reader(self, departing: int = 0) -> bool:
        return self._serving > 0 or self._executing > 0 or self._waiting - departing > 0

    def release(self, for_request: bool = False, departing: bool = False) -> None:
        """Give up the reader role and pass it on to whoever needs it; a no-op if
        this thread does not hold it (already handed off).

        ``for_request``: we are about to run a request. A waiting caller takes the
        role at once; otherwise nobody is woken now, and the background Watchdog
        hands the role on only if the request runs longer than a few
        milliseconds. Quick requests thus cost no thread wake-up, and a long one
        still cannot stop the connection from reading a cancel or a callback.
        A connection read by a server loop goes back to the loop instead.
        ``departing``: the caller stops waiting, don't count it as needing a reader.
        """
        with self._lock:
            if self._reader_ident != threading.get_ident():
                return  # not ours (already handed off)
            self._reading = False
            self._reader_ident = None
            if self._callers:
                waiter = self._callers.pop(next(iter(self._callers)))
                assert waiter.wake is not None
                waiter.wake.release()
                return
            if self._shut:
                return
            rearm = self._rearm
            missed = self._missed
            self._missed = False  # told to the loop below (rearm is set whenever it is true)
            if rearm is None:
                if for_request:
                    self._unread_since = since = time.monotonic()
                    WATCHDOG.watch(self, since)
                    return
                if not self._needs_reader(1 if departing else 0):
                    return
                spawn = self._wake_reader_locked()
        if rearm is not None:
            # a server loop reads from here on: it waits for the socket or, if a whole
            # frame is already buffered, takes this connection up again at once
            rearm(missed)
        elif spawn:
            self._spawn_worker()

    def _wake_reader_locked(self) -> bool:
        """Wake an idle worker to read; returns True if a new one must be spawned."""
        if self._idle_workers:
            self._idle_workers.pop().release()
            return False
        if self._workers < self._max_threads:
            self._workers += 1
            return True
        return False

    def _spawn_worker(self) -> None:
        threading.Thread(target=self._worker_main, name=self._thread_name, daemon=True).start()

    def hand_on_if_stalled(self, now: float, grace: float) -> float | None:
        """Watchdog check: give the role to a worker if a request has run without a
        reader for ``grace`` seconds. Returns when to look again, if still within it."""
        with self._lock:
            since = self._unread_since
            spawn = False
            if since is not None and not self._reading and not self._shut and \
                    self._needs_reader():
                if now - since < grace:
                    return since + grace
                spawn = self._wake_reader_locked()
            self._unread_since = None
        if spawn:
            self._spawn_worker()
        return None

    def _worker_main(self) -> None:
        try:
            self._worker_loop(stop_when_idle=True)
        finally:
            with self._lock:
                self._workers -= 1

    def _worker_loop(self, stop_when_idle: bool) -> None:
        """Take the reader role whenever it is free and needed; run what arrives."""
        me = threading.get_ident()
        parked = threading.Lock()
        parked.acquire()
        while True:
            with self._lock:
                if self._shut:
                    return
                if stop_when_idle and not self._needs_reader():
                    return
                if not self._reading:
                    self._reading = True
                    self._reader_ident = me
                    self._unread_since = None
                    reader = True
                else:
                    self._idle_workers.append(parked)
                    reader = False
            if not reader:
                if not parked.acquire(timeout=5.0):
                    with self._lock:
                        if parked in self._idle_workers:
                            self._idle_workers.remove(parked)
                        else:
                            parked.acquire()
                continue
            try:
                self._read(lambda: stop_when_idle and not self._needs_reader(), None,
                           nested=False)
            finally:
                self.release()  # no-op if the role was handed off already

    # -- closing ---------------------------------------------------------------------

    def shut_locked(self) -> list[threading.Lock]:
        """The connection closes (call with the lock held): nobody takes the role
        from now on. Returns the locks to release, once the pending results have
        failed, to wake every sleeping caller and idle worker."""
        self._shut = True
        wakes = [waiter.wake for waiter in self._callers.values() if waiter.wake is not None]
        self._callers.clear()
        wakes.extend(self._idle_workers)
        self._idle_workers.clear()
        return wakes
