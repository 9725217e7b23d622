"""One epoll for all of a server's plain-socket clients, read leader/follower style.

A thread per client sleeps in ``recv`` between requests and is woken for each
one; on the virtual machines we measure on, that sleep and wake-up costs more
CPU than the request itself, and 64 such threads fight over the GIL. Here one
thread at a time, the *leader*, asks epoll for a readable client, reads what
arrived and runs the requests itself. Under load epoll has an answer every time
it is asked, so the server goes from client to client without sleeping, and
with one thread running Python there is nobody to contend with for the GIL.

A request that runs long must not stop the others: when the leader starts
serving a client it asks the :class:`~rpyc_ipy.core.background.Watchdog` to look
again after its grace, and if the leader is still busy then, the watchdog makes
another thread the leader (a parked one, or a new one up to ``max_threads``).
The busy thread parks when its request ends. One ``epoll_wait`` takes every
client ready then, into a queue the leaders serve first come, first served.

Exactly one thread reads a client at a time (its reader role), which keeps the
order of its requests. A plain socket is watched edge-triggered: epoll reports
bytes that arrive, with no re-arming after each request; what no new edge would
report is queued instead when the role is given back (a whole frame already
buffered, a read that filled its buffer, or a report that came while another
thread held the role: :meth:`ServerLoop.rearm`). A TLS socket is watched
one-shot and re-armed when the role is given back. So a plain request costs two
system calls here, its read and its reply's write.

The clients' deadlines (first frame, a frame that stalls, idleness) are kept
in a :class:`~rpyc_ipy.core.background.Timetable`, and the leader sleeps in epoll
until the earliest of them: while no client has a deadline coming, nothing
here wakes up until a client sends something.

Only :class:`~rpyc_ipy.ThreadedServer` uses this, on systems with epoll, for
plain and TLS sockets. A TLS socket may hold decrypted bytes where epoll cannot
see them: a client is read until its TLS object has no whole record left, and
when it is re-armed its held bytes are asked for too (``held``), so a client
with bytes inside is queued rather than waited on. TLS-SRP clients (tlslite's
sockets) keep a thread each.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import select
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from rpyc_ipy.core.background import WATCHDOG, Timetable, WakeObserver, Watchdog
from rpyc_ipy.errors import UsageError
from rpyc_ipy.transports.spin import DEFAULT_COORDINATOR, DEFAULT_MAX_SPIN, SOLO, SpinCoordinator

if TYPE_CHECKING:
    from rpyc_ipy.core.connection import Connection

__all__ = ["ServerLoop", "loop_available"]

log = logging.getLogger("rpyc_ipy.server")

_ONESHOT_IN = getattr(select, "EPOLLIN", 1) | getattr(select, "EPOLLONESHOT", 1 << 30)
_EDGE_IN = getattr(select, "EPOLLIN", 1) | getattr(select, "EPOLLET", 1 << 31)
#: the most ready clients taken from one epoll_wait; the rest wait for the next one
BATCH = 64
#: a deadline that passed while it could not be enforced (a request ran, or another
#: thread read the client) is looked at again this many seconds later
RECHECK = 0.5
# sleep this much past a deadline, so that the check finds it passed
_LATE = 0.001
#: a parked thread that has not been needed for this long leaves
PARKED_LINGER = 30.0


def loop_available() -> bool:
    return hasattr(select, "epoll")


class ServerLoop:
    """Reads many connections from one epoll; call :meth:`add` for each client and
    :meth:`close` at the end. ``on_closed(conn)`` runs once for each client that closes.

    ``watchdog`` hands leadership on from a long request, ``spin`` rules the
    leader's polling (transports/spin.py), and ``observer`` hears each time the
    leader sleeps in epoll and wakes up.
    """

    def __init__(self, on_closed: Callable[[Connection], None], max_threads: int = 1024,
                 name: str = "rpyc_ipy-loop", *, watchdog: Watchdog = WATCHDOG,
                 spin: SpinCoordinator = DEFAULT_COORDINATOR,
                 observer: WakeObserver | None = None) -> None:
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
        self._held: dict[Connection, Callable[[], int]] = {}  # TLS clients
        self._drained: dict[Connection, Callable[[], bool]] = {}  # edge-triggered clients
        self._ready: collections.deque[Connection] = collections.deque()
        self._turns = 0  # clients the leader takes from _ready before asking epoll again
        self._leader: int | None = None
        self._busy_since: float | None = None  # the leader is running a client's requests
        self._parked: list[threading.Lock] = []
        self._threads = 0
        self._closed = False
        self._watchdog = watchdog
        self._observer = observer
        self._deadlines: Timetable[Connection] = Timetable()
        # while the leader sleeps in epoll: until when (inf: no deadline); a client
        # whose deadline comes sooner wakes it
        self._sleeping_until = -math.inf
        # like a socket reader, the leader polls briefly before sleeping (transports/spin.py),
        # but only while a single client talks: with several, an idle moment means the
        # clients are waiting for a CPU, and polling would take it from them
        self._spin = spin.policy(DEFAULT_MAX_SPIN)
        self._clock = spin.clock
        self._last_fd = -1
        self._solo_since = 0.0

    def set_busy_poll(self, window: float) -> None:
        """The longest the leader polls epoll before sleeping in it (0: never)."""
        self._spin.set_maximum(window)

    @property
    def thread_count(self) -> int:
        return self._threads

    # -- clients ----------------------------------------------------------------------

    def add(self, conn: Connection, fd: int, held: Callable[[], int] | None = None,
            drained: Callable[[], bool] | None = None) -> None:
        """Serve ``conn`` (whose transport is the socket ``fd``) from now on.

        ``held()``: bytes its transport holds where epoll does not see them (TLS).
        ``drained()``: whether its transport's last read left the kernel's buffer
        empty (a plain socket); given, the socket is watched edge-triggered, which
        needs no re-arming after each request. Without it, one-shot.
        """
        if held is not None and drained is not None:
            raise UsageError("a loop client is watched either one-shot (held, TLS) or "
                             "edge-triggered (drained, a plain socket): give one of them")
        conn.attach_loop(self)
        with self._lock:
            if self._closed:
                raise RuntimeError("the server loop is closed")
            self._clients[fd] = conn
            self._fds[conn] = fd
            if held is not None:
                self._held[conn] = held
            if drained is not None:
                self._drained[conn] = drained
            spawn = self._threads == 0
            if spawn:
                self._threads += 1
        self._schedule(conn)
        self._epoll.register(fd, _ONESHOT_IN if drained is None else _EDGE_IN)
        if spawn:
            self._spawn()

    def rearm(self, conn: Connection, missed: bool = False) -> None:
        """``conn`` has no reader any more: watch its socket and its deadlines again,
        or, if a whole frame is already buffered, queue it for the leader (epoll
        would not report it). ``missed``: a pump was turned away while another
        thread read, so what epoll reported then may be unread."""
        fd = self._fds.get(conn)
        if fd is None:
            return
        self._schedule(conn)
        drained = self._drained.get(conn)
        if drained is not None:
            # edge-triggered: still watched, and bytes that come from now on are
            # reported; only what is here already and no edge will report is queued
            if missed or not drained() or conn.has_frame():
                self._ready.append(conn)
                self._wake()
            return
        held = self._held.get(conn)
        if conn.has_frame() or (held is not None and held()):
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
            self._held.pop(conn, None)
            self._drained.pop(conn, None)
            self._deadlines.set(conn, None)
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

    # -- the watchdog's check ---------------------------------------------------------

    def hand_on_if_stalled(self, now: float, grace: float) -> float | None:
        """If the leader has run one client's requests for ``grace`` seconds, make
        another thread the leader. Returns when to look again (see background.py)."""
        with self._lock:
            since = self._busy_since
            if self._closed or since is None:
                return None
            if now - since < grace:
                return since + grace
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
        return None

    # -- deadlines ----------------------------------------------------------------------

    def _schedule(self, conn: Connection, checked_at: float | None = None) -> None:
        """Note when ``conn`` next has a deadline. ``checked_at``: its deadlines were
        just checked then, so one already past could not be enforced yet."""
        if checked_at is None and conn.next_deadline() is None \
                and self._deadlines.get(conn) is None:
            # the common case after a request: nothing pending, nothing noted. A stale
            # deadline noted concurrently only costs one harmless early check
            return
        with self._lock:  # asked under the lock: the latest answer is the one kept
            if conn not in self._fds:
                return
            when = conn.next_deadline()
            if when is not None and checked_at is not None and when <= checked_at:
                when = checked_at + RECHECK
            self._deadlines.set(conn, when)
            wake = when is not None and when < self._sleeping_until
        if wake:
            self._wake()

    def _enforce_deadlines(self) -> None:
        first = self._deadlines.peek()
        if first is None:
            return
        now = time.monotonic()
        if first > now:  # peek may see a replaced, earlier entry: then look under the lock
            return
        with self._lock:
            due = self._deadlines.pop_due(now)
        for conn in due:
            try:
                conn.check_deadlines()
            except Exception:
                log.exception("checking a client's deadlines failed")
            self._schedule(conn, checked_at=now)

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
        since = None
        with self._lock:
            if self._leader == me:
                since = self._busy_since = time.monotonic()
        if since is not None:
            self._watchdog.watch(self, since)
        try:
            conn.pump()
        except Exception as exc:  # pump handles the peer's faults; this is a bug of ours
            log.exception("serving a client from the loop failed")
            conn.abort(exc)
        finally:
            with self._lock:
                if self._leader == me:
                    self._busy_since = None

    def _next_client(self) -> Connection | None:
        ready = self._ready
        if ready and self._turns > 0:
            self._turns -= 1
            try:
                return ready.popleft()
            except IndexError:
                return None
        try:
            # every client ready now, in the order epoll reports them (first come, first
            # served), behind those queued already; they wait in the shared queue, so if
            # this leader then runs a long request, the next leader serves them
            events = self._epoll.poll(0, BATCH) or ([] if ready else self._wait())
        except (OSError, ValueError):  # closed under us
            return None
        self._enforce_deadlines()
        # ask epoll again once everyone queued now had a turn: a client queued again
        # after each request (it keeps sending) cannot keep the others waiting
        self._turns = len(ready) + len(events) - 1
        if not events:
            try:
                return ready.popleft()
            except IndexError:
                return None
        clients = self._clients
        last = self._last_fd
        client_fd = -1
        for fd, _ in events:
            if fd == self._wake_read:
                try:
                    os.read(self._wake_read, 4096)
                except OSError:
                    pass
                continue
            conn = clients.get(fd)
            if conn is not None:
                ready.append(conn)
                client_fd = fd
            if fd != last:
                last = -1  # another client, or several: not a single conversation
        if not ready:
            return None
        if client_fd != -1:
            # the client's conversation: its own reads (a callback's reply) don't end our
            # solo (with several clients ready there is no solo anyway)
            self._spin.conversation = client_fd
        now = self._spin.received()
        if last == -1 or len(events) > 1:
            self._last_fd = client_fd
            self._solo_since = now
        try:
            return ready.popleft()
        except IndexError:  # another thread took it (after a hand-on)
            return None

    def _wait(self) -> list[tuple[int, int]]:
        """Poll epoll for a short adaptive window, then sleep in it until something
        arrives or the earliest deadline."""
        with self._lock:
            until = self._deadlines.earliest()
            self._sleeping_until = math.inf if until is None else until
        if until is None:
            sleep, timeout = -1.0, math.inf
        else:
            sleep = timeout = max(0.0, until - time.monotonic()) + _LATE
        observer = self._observer
        if observer is not None:
            observer.sleeping(until)
        alone = self._clock() - self._solo_since >= SOLO
        try:
            return self._spin.wait(self._poll_batch, sleep, timeout, may_spin=alone)
        finally:
            self._sleeping_until = -math.inf
            if observer is not None:
                observer.woke()

    def _poll_batch(self, timeout: float) -> list[tuple[int, int]]:
        return self._epoll.poll(timeout, BATCH)

    def _close_fds(self) -> None:
        for close in (self._epoll.close, lambda: os.close(self._wake_read),
                      lambda: os.close(self._wake_write)):
            try:
                close()
            except OSError:
                pass
