"""One epoll for all of a server's plain-socket clients, read leader/follower style.

A thread per client sleeps in ``recv`` between requests and is woken for each
one; on the virtual machines we measure on, that sleep and wake-up costs more
CPU than the request itself, and 64 such threads fight over the GIL. Here one
thread at a time, the *leader*, asks epoll for a readable client, reads what
arrived and runs the requests itself. Under load epoll has an answer every time
it is asked, so the server goes from client to client without sleeping, and
with one thread running Python there is nobody to contend with for the GIL.

A request that runs long must not stop the others: the
:class:`~rpyc_ipy.core.background.Watchdog` ticks while the loop has clients, and
when the leader has been busy for longer than its grace it makes another thread
the leader (a parked one, or a new one up to ``max_threads``). The busy thread
parks when its request ends. Each client's socket is registered one-shot, so
exactly one thread handles a client at a time and the order of its requests is
kept; a connection that is read elsewhere for a while (a request waiting for a
callback's reply reads its own connection) re-arms itself when it gives the
reader role back (:meth:`Connection._release_role`).

Only :class:`~rpyc_ipy.ThreadedServer` uses this, and only for plain sockets
on systems with epoll; TLS clients keep a thread each (their decrypted data
sits where epoll cannot see it).
"""

from __future__ import annotations

import collections
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from rpyc_ipy.core.background import Watchdog
from rpyc_ipy.transports.spin import DEFAULT_MAX_SPIN, SOLO, SpinPolicy, spin_clock

if TYPE_CHECKING:
    from rpyc_ipy.core.connection import Connection

__all__ = ["ServerLoop", "loop_available"]

log = logging.getLogger("rpyc_ipy.server")

_ONESHOT_IN = getattr(select, "EPOLLIN", 1) | getattr(select, "EPOLLONESHOT", 1 << 30)
#: seconds between sweeps of the clients' deadlines (first frame, stalled frame, idle)
SWEEP_INTERVAL = 0.5
#: a parked thread that has not been needed for this long leaves
PARKED_LINGER = 30.0


def loop_available() -> bool:
    return hasattr(select, "epoll")


class ServerLoop:
    """Reads many connections from one epoll; call :meth:`add` for each client and
    :meth:`close` at the end. ``on_closed(conn)`` runs once for each client that closes.
    """

    def __init__(self, on_closed: Callable[[Connection], None], max_threads: int = 1024,
                 name: str = "rpyc_ipy-loop") -> None:
        self._on_closed = on_closed
        self._max_threads = max(1, max_threads)
        self._name = name
        self._epoll = select.epoll()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._epoll.register(self._wake_read, select.EPOLLIN)
        self._lock = threading.Lock()
        self._clients: dict[int, Connection] = {}
        self._fds: dict[Connection, int] = {}
        self._ready: collections.deque[Connection] = collections.deque()
        self._leader: int | None = None
        self._busy_since: float | None = None  # the leader is running a client's requests
        self._parked: list[threading.Lock] = []
        self._threads = 0
        self._closed = False
        self._next_sweep = time.monotonic() + SWEEP_INTERVAL
        # like a socket reader, the leader polls briefly before sleeping (transports/spin.py),
        # but only while a single client talks: with several, an idle moment means the
        # clients are waiting for a CPU, and polling would take it from them
        self._spin = SpinPolicy(DEFAULT_MAX_SPIN)
        self._last_fd = -1
        self._solo_since = 0.0

    def set_busy_poll(self, window: float) -> None:
        """The longest the leader polls epoll before sleeping in it (0: never)."""
        self._spin.set_maximum(window)

    @property
    def thread_count(self) -> int:
        return self._threads

    # -- clients ----------------------------------------------------------------------

    def add(self, conn: Connection, fd: int) -> None:
        """Serve ``conn`` (whose transport is the non-blocking socket ``fd``) from now on."""
        conn.attach_loop(self)
        with self._lock:
            if self._closed:
                raise RuntimeError("the server loop is closed")
            self._clients[fd] = conn
            self._fds[conn] = fd
            spawn = self._threads == 0
            if spawn:
                self._threads += 1
        Watchdog.watch(self)
        self._epoll.register(fd, _ONESHOT_IN)
        if spawn:
            self._spawn()

    def rearm(self, conn: Connection) -> None:
        """``conn`` has no reader any more: watch its socket again, or, if a whole frame
        is already buffered, queue it for the leader (epoll would not report it)."""
        fd = self._fds.get(conn)
        if fd is None:
            return
        if conn.has_frame():
            self._ready.append(conn)
            self._wake()
            return
        try:
            self._epoll.modify(fd, _ONESHOT_IN)
        except (OSError, ValueError):
            pass  # closed meanwhile: forget() does the rest

    def forget(self, conn: Connection) -> None:
        """Stop serving ``conn`` (it is closing; its socket is still open)."""
        with self._lock:
            fd = self._fds.pop(conn, None)
            if fd is not None and self._clients.get(fd) is conn:
                del self._clients[fd]
            else:
                fd = None
        if fd is None:
            return
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):
            pass
        try:
            self._on_closed(conn)
        except Exception:
            log.exception("the close callback of the server loop failed")

    def close(self) -> None:
        """Stop every loop thread (close the clients first)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            parked = list(self._parked)
            self._parked.clear()
            last = self._threads == 0
        for lock in parked:
            lock.release()
        self._wake()
        if last:
            self._close_fds()

    # -- the watchdog's tick ----------------------------------------------------------

    def _hand_on_if_stalled(self, now: float, grace: float, watched: set[object]) -> None:
        """If the leader has run one client's requests for ``grace`` seconds, make
        another thread the leader; stop being watched once there are no clients."""
        with self._lock:
            if self._closed or not self._clients:
                watched.discard(self)
                return
            since = self._busy_since
            if since is None or now - since < grace:
                return
            self._leader = None
            self._busy_since = None
            spawn = False
            if self._parked:
                self._parked.pop().release()
            elif self._threads < self._max_threads:
                self._threads += 1
                spawn = True
        if spawn:
            self._spawn()

    # -- the threads ------------------------------------------------------------------

    def _spawn(self) -> None:
        threading.Thread(target=self._run, name=self._name, daemon=True).start()

    def _wake(self) -> None:
        try:
            os.write(self._wake_write, b"\0")
        except OSError:
            pass  # the pipe is full (a wake-up is pending anyway) or closed

    def _run(self) -> None:
        me = threading.get_ident()
        parked = threading.Lock()
        parked.acquire()
        try:
            while True:
                with self._lock:
                    if self._closed:
                        return
                    if self._leader is None:
                        self._leader = me
                    leading = self._leader == me
                    if not leading:
                        self._parked.append(parked)
                if leading:
                    try:
                        self._lead(me)
                    except Exception:  # a bug of ours: keep leading, or nobody would
                        log.exception("the server loop failed to serve a client")
                elif not parked.acquire(timeout=PARKED_LINGER):
                    with self._lock:
                        if parked in self._parked:  # nobody needs us: leave
                            self._parked.remove(parked)
                            return
                    parked.acquire()  # a hand-on released us as we timed out
        finally:
            with self._lock:
                self._threads -= 1
                if self._leader == me:
                    self._leader = None
                last = self._closed and self._threads == 0
            if last:
                self._close_fds()

    def _lead(self, me: int) -> None:
        """One turn of the leader: serve one client that has something to read."""
        conn = self._next_client()
        if conn is None:
            return
        with self._lock:
            if self._leader == me:
                self._busy_since = time.monotonic()
        try:
            conn.pump()
        except Exception as exc:  # pump handles the peer's faults; this is a bug of ours
            log.exception("serving a client from the loop failed")
            conn._teardown(exc)
        finally:
            with self._lock:
                if self._leader == me:
                    self._busy_since = None

    def _next_client(self) -> Connection | None:
        if self._ready:
            try:
                return self._ready.popleft()
            except IndexError:
                return None
        try:
            # one client at a time: if this leader then runs a long request, the next
            # leader finds the other ready clients still reported by epoll
            events = self._epoll.poll(0, 1) or self._wait()
        except (OSError, ValueError):  # closed under us
            return None
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_INTERVAL
            self._sweep()
        if not events:
            return None
        fd = events[0][0]
        if fd == self._wake_read:
            try:
                os.read(self._wake_read, 4096)
            except OSError:
                pass
            return None
        now = spin_clock()
        self._spin.received(now)
        if fd != self._last_fd:
            self._last_fd = fd
            self._solo_since = now
        return self._clients.get(fd)

    def _wait(self) -> list[tuple[int, int]]:
        """Poll epoll for a short adaptive window, then sleep in it."""
        alone = spin_clock() - self._solo_since >= SOLO
        return self._spin.wait(self._poll_one, SWEEP_INTERVAL, SWEEP_INTERVAL, may_spin=alone)

    def _poll_one(self, timeout: float) -> list[tuple[int, int]]:
        return self._epoll.poll(timeout, 1)

    def _sweep(self) -> None:
        for conn in list(self._clients.values()):
            try:
                conn.check_deadlines()
            except Exception:
                log.exception("checking a client's deadlines failed")

    def _close_fds(self) -> None:
        for close in (self._epoll.close, lambda: os.close(self._wake_read),
                      lambda: os.close(self._wake_write)):
            try:
                close()
            except OSError:
                pass
