"""A connection: the engine, a transport, the object tables and the threads that serve them.

Build one with :func:`rpyc_ipy.connect` (or a server builds it for you), then use
``conn.root`` — the peer's service — and the netrefs it hands out. ``close()`` it
when done, or use it as a context manager.

How threads share the connection (the "leader/followers" rule):

* exactly one thread reads the transport at a time: the *reader*;
* a thread that waits for a reply tries to become the reader, so in the common
  case it reads its own reply with no thread hand-off at all; otherwise it
  sleeps until the reader hands it its reply or the reader role;
* when the reader reads a request, it unboxes it (so arguments are unboxed in
  arrival order), hands the reader role to another thread (a waiting caller, an
  idle worker, or a new worker of a bounded pool) and runs the request itself;
  so a long request never stops the connection from reading a cancel, a
  callback or another request;
* nested callbacks work to any depth: a thread waiting for a reply runs the
  peer's callback requests that reach it, as RPyC does.

``__del__`` of a netref never does I/O: releases are queued and flushed with the
next write, or by a background flusher shortly after.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import logging
import socket
import ssl
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from rpyc_ipy.core import netref as _netref
from rpyc_ipy.core.async_result import AsyncResult
from rpyc_ipy.core.background import ReleaseFlusher, Watchdog
from rpyc_ipy.core.frame_reader import FrameReader
from rpyc_ipy.core.handlers import CloseRequested, RequestHandlers, check_id_pack
from rpyc_ipy.core.netref import BaseNetref, RemoteMethod, builtin_proxy_class, make_proxy_class
from rpyc_ipy.core.policy import CLASSIC_OVERRIDES, DEFAULT_CONFIG, SecurityPolicy
from rpyc_ipy.core.transport import Transport
from rpyc_ipy.errors import (
    AsyncResultTimeout,
    CodecError,
    ConfigError,
    ConnectionClosed,
    ConnectionLost,
    LimitExceeded,
    PingError,
    ProtocolError,
    RPyCError,
    SecurityError,
    UsageError,
)
from rpyc_ipy.protocol import brine, consts, vinegar
from rpyc_ipy.protocol.engine import Engine, Failure, Reply, Request
from rpyc_ipy.protocol.limits import DEFAULT_LIMITS, Limits
from rpyc_ipy.protocol.objects import ExportTable, IdPack, id_pack_of
from rpyc_ipy.transports.spin import DEFAULT_MAX_SPIN

__all__ = ["CONNECTION_OPTIONS", "Connection"]

log = logging.getLogger("rpyc_ipy.core.connection")
audit = logging.getLogger("rpyc_ipy.audit")


def _user_of(credentials: Any) -> str | None:
    """A printable user name from an authenticator's credentials."""
    if isinstance(credentials, str):
        return credentials
    if isinstance(credentials, dict):
        for rdn in credentials.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return str(value)
    return None

#: options of ours, accepted in a config dict beside RPyC's keys
CONNECTION_OPTIONS: dict[str, Any] = {
    "limits": DEFAULT_LIMITS,  # decoder and frame limits
    "compress_threshold": None,  # compress payloads above this many bytes; None = never
    "max_dispatch_threads": 64,  # threads that may run the peer's requests at once
    "max_exported_objects": 1_000_000,  # objects the peer may hold references to
    "max_proxy_classes": 4096,  # INSPECT results cached per connection
    "frame_deadline": 60.0,  # seconds a started frame may take to arrive
    "first_frame_timeout": None,  # servers set this: drop a client silent this long
    "idle_timeout": None,  # close after this many seconds without a frame
    "max_buffiter_chunk": 10_000,  # items one BUFFITER request may return
    # seconds a socket reader may poll for data before sleeping; adaptive, 0 = never
    # (saves two thread wake-ups per round trip on a quiet machine: transports/spin.py)
    "busy_poll_window": DEFAULT_MAX_SPIN,
}

_SIMPLE_TYPES = frozenset(
    {type(None), bool, int, float, complex, bytes, str, type(NotImplemented), type(Ellipsis)}
)
_conn_ids = itertools.count(1)
_get = object.__getattribute__


def _never() -> bool:
    return False


def _validated_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    merged = dict(DEFAULT_CONFIG)
    merged.update(CONNECTION_OPTIONS)
    if config:
        unknown = set(config) - set(merged)
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(sorted(unknown))}")
        merged.update(config)
    if not isinstance(merged["limits"], Limits):
        raise ConfigError("config['limits'] must be a rpyc_ipy.protocol.limits.Limits")
    if merged["bind_threads"]:
        raise ConfigError("bind_threads (RPYC_BIND_THREADS) framing is not supported")
    timeout = merged["sync_request_timeout"]
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ConfigError("sync_request_timeout must be a positive number or None")
    window = merged["busy_poll_window"]
    if not isinstance(window, (int, float)) or isinstance(window, bool) or not 0 <= window <= 0.1:
        raise ConfigError("busy_poll_window must be a number of seconds from 0 to 0.1")
    return merged


class Connection(RequestHandlers):
    """One end of an RPyC-protocol connection.

    ``service`` is the root object this side exposes (a :class:`~rpyc_ipy.Service`
    class, instantiated for this connection, or an instance). ``config`` takes
    RPyC's keys (see :data:`rpyc_ipy.DEFAULT_CONFIG`) and ours
    (:data:`CONNECTION_OPTIONS`).
    """

    def __init__(self, service: Any, transport: Transport, config: Mapping[str, Any] | None = None
                 ) -> None:
        self._config = _validated_config(config)
        if self._config["connid"] is None:
            self._config["connid"] = f"conn{next(_conn_ids)}"
        self._policy = SecurityPolicy.from_config(self._config)
        self._transport = transport
        limits: Limits = self._config["limits"]
        self._engine = Engine(limits, self._config["compress_threshold"])
        self._reader = FrameReader(transport, self._engine, self._config["frame_deadline"])
        set_busy_poll = getattr(transport, "set_busy_poll", None)
        if set_busy_poll is not None:
            set_busy_poll(self._config["busy_poll_window"])
        self._exports = ExportTable(self._config["max_exported_objects"])
        self._proxies: weakref.WeakValueDictionary[IdPack, BaseNetref] = \
            weakref.WeakValueDictionary()
        self._proxy_classes: dict[tuple[int, bool], type[BaseNetref]] = {}
        self._pending: dict[int, AsyncResult] = {}
        self._lock = threading.Lock()  # pending, tables, reader role, counters
        self._send_lock = threading.Lock()
        self._releases: collections.deque[tuple[IdPack, int]] = collections.deque()
        # reader role and the threads around it
        self._reading = False
        self._reader_ident: int | None = None
        self._callers: dict[int, AsyncResult] = {}  # waiting for a reply (or the role)
        self._idle_workers: list[threading.Lock] = []
        self._workers = 0
        self._serving = 0
        self._executing = 0
        self._waiting = 0
        self._unread_since: float | None = None  # a request runs and nobody reads
        self._loop: Any = None  # the server loop that reads us, if any (servers/loop.py)
        self._closed = False
        self._close_reason: BaseException | None = None
        self._created = time.monotonic()
        self._last_frame = self._created
        if self._config["first_frame_timeout"] is not None:
            self._reader.first_frame_by = self._created + self._config["first_frame_timeout"]
        self._remote_root: Any = None
        self._handlers: dict[int, Callable[..., Any]] = self._handler_table()
        ReleaseFlusher.ensure_started()
        if isinstance(service, type):
            service = service()
        self._local_root = service
        on_connect = getattr(service, "on_connect", None)
        if on_connect is not None:
            on_connect(self)

    # -- public surface -----------------------------------------------------------

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<rpyc_ipy.Connection {self._config['connid']} {state}>"

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def root(self) -> Any:
        """The peer's root object (its service), fetched once with GETROOT."""
        if self._remote_root is None:
            self._remote_root = self.sync_request(consts.HANDLE_GETROOT)
        return self._remote_root

    @property
    def policy(self) -> SecurityPolicy:
        """What this side grants the peer."""
        return self._policy

    @property
    def config(self) -> dict[str, Any]:
        """This side's configuration (a copy)."""
        return dict(self._config)

    @property
    def credentials(self) -> Any:
        """What the server's authenticator returned for this peer, if anything."""
        return self._config.get("credentials")

    # RPyC's classic attributes, present once a MasterService/classic client installed them
    _classic: Any = None

    def _classic_member(self, name: str) -> Any:
        if self._classic is None:
            raise AttributeError(
                f"{name!r}: not a classic connection (use rpyc_ipy.classic.connect)")
        return self._classic.get(name)

    modules = property(lambda self: self._classic_member("modules"),
                       doc="The peer's modules, imported on demand (classic mode).")
    builtins = property(lambda self: self._classic_member("builtins"),
                        doc="The peer's builtins module (classic mode).")
    builtin = builtins
    eval = property(lambda self: self._classic_member("eval"),
                    doc="Evaluate an expression on the peer (classic mode).")
    execute = property(lambda self: self._classic_member("execute"),
                       doc="Run statements on the peer (classic mode).")
    namespace = property(lambda self: self._classic_member("namespace"),
                         doc="The peer's classic namespace dict (classic mode).")
    teleport = property(lambda self: self._classic_member("teleport"),
                        doc="Send a function's code to the peer (classic mode).")

    def update_policy(self, **overrides: Any) -> None:
        """Change policy keys for this connection (services call this in ``on_connect``)."""
        for key in overrides:
            if key not in DEFAULT_CONFIG:
                raise ConfigError(f"unknown config key {key!r}")
        self._config.update(overrides)
        self._policy = self._policy.with_overrides(**overrides)

    def enable_classic(self) -> None:
        """Grant the peer full access to this side (classic mode). Never a default."""
        self.update_policy(**CLASSIC_OVERRIDES)

    def transport_info(self) -> dict[str, Any]:
        """What carries this connection: kind, TLS version and cipher, SRP user, peer
        certificate fingerprint, endpoints. For status displays."""
        sock = getattr(self._transport, "sock", None)
        endpoints = self._config.get("endpoints")
        if endpoints is None and hasattr(self._transport, "endpoints"):
            endpoints = self._transport.endpoints()
        info: dict[str, Any] = {"kind": type(self._transport).__name__, "endpoints": endpoints,
                                "tls_version": None, "cipher": None, "srp_user": None,
                                "peer_cert_sha256": None}
        if sock is None:
            return info
        try:
            if isinstance(sock, ssl.SSLSocket):
                info["kind"] = "tls"
                info["tls_version"] = sock.version()
                cipher = sock.cipher()
                info["cipher"] = cipher[0] if cipher else None
                der = sock.getpeercert(binary_form=True)
                if der:
                    info["peer_cert_sha256"] = hashlib.sha256(der).hexdigest()
            elif hasattr(sock, "username") and hasattr(sock, "cipher"):
                info["kind"] = "tls-srp"
                info["tls_version"] = sock.version()
                info["cipher"] = sock.cipher()
                info["srp_user"] = sock.username
            else:
                unix = getattr(socket, "AF_UNIX", None)
                info["kind"] = "unix" if getattr(sock, "family", None) == unix else "tcp"
        except Exception:  # a display helper must not fail the caller
            pass
        return info

    def fileno(self) -> int:
        return int(self._transport.sock.fileno())  # type: ignore[attr-defined]

    def ping(self, data: Any = None, timeout: float = 3) -> None:
        """Check the peer echoes ``data``; raises :class:`PingError` if not."""
        if data is None:
            data = consts.PING_DEFAULT_DATA
        result = self.async_request(consts.HANDLE_PING, data)
        result.set_expiry(timeout)
        if result.value != data:
            raise PingError("the echo does not match what was sent")

    def close(self) -> None:
        """Send CLOSE (best effort) and tear down; safe to call twice."""
        if self._closed:
            return
        before = self._config.get("before_closed")
        try:
            if before is not None and self._remote_root is not None:
                before(self._remote_root)
            self._flush_releases()
            _, parts = self._engine.request(consts.HANDLE_CLOSE, (consts.LABEL_VALUE, ()))
            self._send_raw(parts)
        except Exception:
            if not self._config["close_catchall"] and not isinstance(
                    sys.exc_info()[1], (RPyCError, OSError)):
                raise
        finally:
            self._teardown(ConnectionClosed("the connection was closed locally"))

    # -- requests -----------------------------------------------------------------

    def sync_request(self, handler: int, *args: Any) -> Any:
        """Send a request and wait for its reply (``sync_request_timeout`` applies)."""
        result = self.async_request(handler, *args)
        timeout = self._config["sync_request_timeout"]
        deadline = None if timeout is None else time.monotonic() + timeout
        if not result._ready:
            self._wait_for(result, deadline)
        if result._error:
            raise result._value
        return result._value

    def async_request(self, handler: int, *args: Any) -> AsyncResult:
        """Send a request; returns an :class:`AsyncResult` at once."""
        boxed = self._box(args)
        result = AsyncResult(self)
        with self._send_lock:
            if self._closed:
                raise ConnectionClosed(self._closed_message())
            seq, parts = self._engine.request(handler, boxed)
            result.seq = seq
            self._pending[seq] = result
            try:
                self._write(parts)
            except ConnectionClosed as exc:
                self._pending.pop(seq, None)
                self._teardown(exc)
                raise ConnectionLost(f"cannot send the request: {exc}") from None
        return result

    def serve(self, timeout: float = 1.0) -> bool:
        """Read and handle at most one incoming message within ``timeout`` seconds.

        Returns True if one was handled. Only needed when nothing else reads
        (no pending request, no :meth:`serve_all`, no BgServingThread).
        """
        deadline = time.monotonic() + timeout
        served = [False]

        def one_frame() -> bool:
            return served[0] or time.monotonic() > deadline

        with self._lock:
            if self._reading:
                raise UsageError("another thread is reading this connection")
            self._reading = True
            self._reader_ident = threading.get_ident()
        try:
            self._read_until(one_frame, deadline, nested=False, on_frame=served)
        finally:
            self._release_role()
        if self._closed and not served[0]:
            raise ConnectionClosed(self._closed_message())
        return served[0]

    def serve_all(self) -> None:
        """Serve the peer until the connection closes (what servers run per client)."""
        with self._lock:
            self._serving += 1
            self._workers += 1  # this thread runs requests too: it counts against the cap
        try:
            self._worker_loop(stop_when_idle=False)
        finally:
            with self._lock:
                self._serving -= 1
                self._workers -= 1
            self.close()

    def start_serving(self) -> None:
        """Keep a reader on this connection from now on, even while no call waits
        (what :class:`~rpyc_ipy.BgServingThread` uses). Undo with :meth:`stop_serving`."""
        with self._lock:
            if self._closed:
                raise ConnectionClosed(self._closed_message())
            self._serving += 1
            spawn = not self._reading and not self._idle_workers and \
                self._workers < self._config["max_dispatch_threads"]
            if spawn:
                self._workers += 1
            elif not self._reading and self._idle_workers:
                self._idle_workers.pop().release()
        if spawn:
            self._spawn_worker()

    def stop_serving(self) -> None:
        """Undo one :meth:`start_serving`; the background reader leaves when idle."""
        with self._lock:
            if self._serving > 0:
                self._serving -= 1

    def serve_threaded(self, thread_count: int = 10) -> None:
        """Same as :meth:`serve_all`; requests already run on a bounded pool."""
        self.serve_all()

    # -- served by an event loop ------------------------------------------------------

    def attach_loop(self, loop: Any) -> None:
        """Let ``loop`` read this connection instead of a thread of its own: from now
        on, giving up the reader role calls ``loop.rearm(self)`` (see servers/loop.py)."""
        if not self._reader.can_read_available:
            raise UsageError("this transport cannot be read without waiting")
        self._loop = loop

    def pump(self) -> None:
        """Handle every frame that has arrived, without waiting for more; requests run
        on this thread. The server loop calls this when the socket is readable."""
        me = threading.get_ident()
        while True:
            with self._lock:
                if self._closed or self._reading:
                    return  # whoever reads now re-arms the loop when done
                if self._executing >= self._config["max_dispatch_threads"]:
                    return  # at the cap: the threads running requests read on when done
                self._reading = True
                self._reader_ident = me
                self._unread_since = None
            try:
                ran_request = self._read_until(_never, None, nested=False, nowait=True)
            finally:
                self._release_role()
            if not ran_request:
                return

    def has_frame(self) -> bool:
        """True if a whole frame is buffered, so :meth:`pump` has work without a read."""
        return self._reader.has_frame()

    def check_deadlines(self) -> None:
        """Enforce the first-frame, frame and idle deadlines while nobody reads
        (a loop calls this now and then; a reading thread checks them itself)."""
        if self._closed or self._reading:
            return
        try:
            self._reader.check_stall()
        except LimitExceeded as exc:
            self._teardown(exc)
            return
        self._check_idle(self._config)

    # -- waiting and reading --------------------------------------------------------

    def _closed_message(self) -> str:
        reason = self._close_reason
        return f"connection {self._config['connid']} is closed" + (f": {reason}" if reason else "")

    def _wait_for(self, result: AsyncResult, deadline: float | None) -> None:
        """Block until ``result`` is ready, reading the transport when it is our turn."""
        me = threading.get_ident()
        with self._lock:
            self._waiting += 1
        try:
            while True:
                with self._lock:
                    if result._ready:
                        return
                    if self._closed:
                        raise ConnectionLost(self._closed_message())
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
                        self._read_until(lambda: result._ready, deadline, nested=False)
                    finally:
                        # we leave with the result (or at the deadline): don't count us as
                        # a waiter that needs a reader; no-op if the role was handed off
                        self._release_role(departing=True)
                elif role == "nested":
                    self._read_until(lambda: result._ready, deadline, nested=True)
                else:
                    wake = result.wake
                    assert wake is not None
                    remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                    woken = wake.acquire(timeout=-1 if remaining is None else remaining)
                    if not woken:
                        with self._lock:
                            if self._callers.pop(id(result), None) is None:
                                wake.acquire()  # a wake raced the timeout: re-arm the lock
                if not result._ready and deadline is not None and time.monotonic() >= deadline:
                    with self._lock:
                        self._pending.pop(result.seq, None)
                        self._callers.pop(id(result), None)
                    raise AsyncResultTimeout(
                        f"no reply to request {result.seq} within the timeout"
                    )
        finally:
            with self._lock:
                self._waiting -= 1

    def _needs_reader(self, departing: int = 0) -> bool:
        return self._serving > 0 or self._executing > 0 or self._waiting - departing > 0

    def _release_role(self, for_request: bool = False, departing: bool = False) -> None:
        """Give up the reader role and pass it on to whoever needs it.

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
            if self._closed:
                return
            loop = self._loop
            if loop is None:
                if for_request:
                    self._unread_since = time.monotonic()
                    Watchdog.watch(self)
                    return
                if not self._needs_reader(1 if departing else 0):
                    return
                spawn = self._wake_reader_locked()
        if loop is not None:
            # a server loop reads from here on: it waits for the socket or, if a whole
            # frame is already buffered, takes this connection up again at once
            loop.rearm(self)
        elif spawn:
            self._spawn_worker()

    def _wake_reader_locked(self) -> bool:
        """Wake an idle worker to read; returns True if a new one must be spawned."""
        if self._idle_workers:
            self._idle_workers.pop().release()
            return False
        if self._workers < self._config["max_dispatch_threads"]:
            self._workers += 1
            return True
        return False

    def _spawn_worker(self) -> None:
        threading.Thread(target=self._worker_main, name=f"rpyc_ipy-{self._config['connid']}",
                         daemon=True).start()

    def _hand_on_if_stalled(self, now: float, grace: float, watched: set[Connection]) -> None:
        """Watchdog tick: give the role to a worker if a request has run without a
        reader for ``grace`` seconds; stop being watched otherwise.

        Leaving ``watched`` happens under our lock, so a worker that re-registers
        for its own long request (also under our lock) is never dropped by mistake.
        """
        with self._lock:
            since = self._unread_since
            if since is not None and not self._reading and not self._closed and \
                    self._needs_reader() and now - since < grace:
                return  # still within grace: keep watching
            stalled = since is not None and not self._reading and not self._closed and \
                self._needs_reader()
            self._unread_since = None
            watched.discard(self)
            spawn = self._wake_reader_locked() if stalled else False
        if spawn:
            self._spawn_worker()

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
                if self._closed:
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
                self._read_until(
                    lambda: stop_when_idle and not self._needs_reader(), None, nested=False)
            finally:
                self._release_role()  # no-op if the role was handed off already

    def _read_until(self, done: Callable[[], bool], deadline: float | None, nested: bool,
                    on_frame: list[bool] | None = None, nowait: bool = False) -> bool:
        """Read frames as the reader until ``done()``; returns True if the role was handed
        off (a request was read and run, the caller no longer reads). ``nowait``: also
        return (False) as soon as no whole frame has arrived.
        """
        reader = self._reader
        config = self._config
        read = reader.read_available if nowait else reader.read_event
        while not done():
            if self._closed:
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return False
            try:
                event = read()
            except TimeoutError:
                if nowait:
                    return False
                self._check_idle(config)
                continue
            except (ConnectionClosed, ProtocolError, OSError) as exc:
                if isinstance(exc, ProtocolError):
                    log.warning("%s: closing after a protocol error: %s", config["connid"], exc)
                # the traceback's frames may hold a partly decoded payload of up to
                # max_frame_size: drop them now, not when this thread unwinds
                self._teardown(exc.with_traceback(None))
                return False
            self._last_frame = time.monotonic()
            if on_frame is not None:
                on_frame[0] = True
            if type(event) is Request:
                args, error = self._unbox_request(event)
                if nested:
                    self._execute(event, args, error)
                    continue
                self._execute(event, args, error, release_role=True)
                return True
            self._complete(event)  # type: ignore[arg-type]
        return False

    def _check_idle(self, config: dict[str, Any]) -> None:
        now = time.monotonic()
        first = config["first_frame_timeout"]
        if first is not None and self._reader.frames_read == 0 and now - self._created > first:
            self._teardown(ConnectionClosed(f"no frame within {first} s of connecting"))
            return
        idle = config["idle_timeout"]
        if idle is not None and not self._executing and now - self._last_frame > idle:
            self._teardown(ConnectionClosed(f"idle for more than {idle} s"))

    def _complete(self, event: Reply | Failure) -> None:
        with self._lock:
            result = self._pending.pop(event.seq, None)
        if result is None:
            return  # a late reply to an expired or async-ignored request
        if isinstance(event, Reply):
            try:
                is_error, value = False, self._unbox(event.value)
            except Exception as exc:
                is_error, value = True, exc
        else:
            is_error, value = True, self._load_exception(event.payload)
        result._resolve(is_error, value)
        with self._lock:
            waiter = self._callers.pop(id(result), None)
        if waiter is not None and waiter.wake is not None:
            waiter.wake.release()

    def _load_exception(self, payload: Any) -> BaseException:
        policy = self._policy
        importer = None
        if policy.import_custom_exceptions:
            import importlib

            importer = importlib.import_module
        try:
            return vinegar.load(payload, instantiate_custom=policy.instantiate_custom_exceptions,
                                import_module=importer)
        except CodecError as exc:
            return exc

    # -- running the peer's requests ------------------------------------------------

    def _unbox_request(self, event: Request) -> tuple[tuple[Any, ...], BaseException | None]:
        try:
            args = self._unbox(event.args)
        except Exception as exc:
            return (), exc
        if type(args) is not tuple:
            return (), CodecError("request arguments must be a tuple")
        return args, None

    def _execute(self, event: Request, args: tuple[Any, ...], error: BaseException | None,
                 release_role: bool = False) -> None:
        """Run one request and send its reply; ``release_role``: give up the reader
        role first (counted as executing already, so a loop respects the thread cap)."""
        with self._lock:
            self._executing += 1
        if release_role:
            self._release_role(for_request=True)
        try:
            try:
                if error is not None:
                    raise error
                handler = self._handlers.get(event.handler)
                if handler is None:
                    raise KeyError(event.handler)
                result = handler(*args)
                parts = self._engine.reply(event.seq, self._box(result))
            except CloseRequested:
                self._teardown(ConnectionClosed("the peer closed the connection"))
                return
            except KeyboardInterrupt:
                if self._policy.propagate_KeyboardInterrupt_locally:
                    self._teardown(ConnectionClosed("KeyboardInterrupt while serving"))
                    raise
                parts = self._exception_parts(event.seq, event.handler)
            except SystemExit:
                if self._policy.propagate_SystemExit_locally:
                    self._teardown(ConnectionClosed("SystemExit while serving"))
                    raise
                parts = self._exception_parts(event.seq, event.handler)
            except BaseException:
                parts = self._exception_parts(event.seq, event.handler)
            try:
                self._send_raw(parts)
            except ConnectionClosed:
                pass
        finally:
            with self._lock:
                self._executing -= 1

    def _exception_parts(self, seq: int, handler: int) -> list[bytes]:
        exc = sys.exc_info()[1]
        assert exc is not None
        if isinstance(exc, SecurityError):
            endpoints = self._config.get("endpoints") or (None, None)
            audit.warning("denied %s peer=%s user=%s op=%s: %s", self._config["connid"],
                          endpoints[1], _user_of(self._config.get("credentials")),
                          self._engine.handler_name(handler), exc)
        logger = self._config["logger"] or log
        logger.debug("%s: request %d raised %r", self._config["connid"], seq, exc)
        payload = vinegar.dump(exc, include_traceback=self._policy.include_local_traceback,
                               include_version=self._policy.include_local_version)
        return self._engine.exception(seq, payload)

    # -- boxing -------------------------------------------------------------------

    def _box(self, obj: Any) -> Any:
        t = type(obj)
        if t in _SIMPLE_TYPES:
            return (consts.LABEL_VALUE, obj)
        if t is tuple:
            if brine.dumpable(obj):
                return (consts.LABEL_VALUE, obj)
            return (consts.LABEL_TUPLE, tuple([self._box(item) for item in obj]))
        if (t is frozenset or t is slice) and brine.dumpable(obj):
            return (consts.LABEL_VALUE, obj)
        if t is RemoteMethod:
            obj = obj._resolve()
        if isinstance(obj, BaseNetref):
            if _get(obj, "____conn__") is self:
                boxed = _get(obj, "____boxed__")
                if boxed is None:  # encode once: every call on a netref sends it
                    boxed = brine.Encoded(
                        brine.dump((consts.LABEL_LOCAL_REF, _get(obj, "____id_pack__"))))
                    object.__setattr__(obj, "____boxed__", boxed)
                return boxed
            id_pack = _get(obj, "____id_pack__")
        else:
            id_pack = id_pack_of(obj)
        with self._lock:
            self._exports.export(obj, id_pack)
        return (consts.LABEL_REMOTE_REF, id_pack)

    def _unbox(self, package: Any) -> Any:
        if type(package) is not tuple or len(package) != 2:
            raise CodecError("a boxed value must be a (label, payload) tuple")
        label, value = package
        if label == consts.LABEL_VALUE:
            return value
        if label == consts.LABEL_TUPLE:
            if type(value) is not tuple:
                raise CodecError("a boxed tuple must hold a tuple")
            items = []
            for item in value:  # values inline: most request arguments are plain values
                if type(item) is tuple and len(item) == 2 and item[0] == consts.LABEL_VALUE:
                    items.append(item[1])
                else:
                    items.append(self._unbox(item))
            return tuple(items)
        if label == consts.LABEL_LOCAL_REF:
            with self._lock:
                return self._exports.lookup(value)
        if label == consts.LABEL_REMOTE_REF:
            return self._proxy_for(check_id_pack(value))
        raise CodecError(f"unknown boxing label {label!r}")

    def _proxy_for(self, id_pack: IdPack) -> BaseNetref:
        with self._lock:
            proxy = self._proxies.get(id_pack)
            if proxy is not None:
                object.__setattr__(proxy, "____refcount__", _get(proxy, "____refcount__") + 1)
                return proxy
        cls = self._proxy_class(id_pack)
        with self._lock:
            proxy = self._proxies.get(id_pack)
            if proxy is not None:  # another thread built it meanwhile
                object.__setattr__(proxy, "____refcount__", _get(proxy, "____refcount__") + 1)
                return proxy
            proxy = cls(self, id_pack)
            self._proxies[id_pack] = proxy
            return proxy

    def _proxy_class(self, id_pack: IdPack) -> type[BaseNetref]:
        name_pack, class_id, instance_id = id_pack
        is_class = instance_id == 0
        if not is_class:
            builtin = builtin_proxy_class(name_pack)
            if builtin is not None:
                return builtin
        # one class per remote class: class_id is the id of the remote type, so all
        # instances (and all modules, whose type is the same) share one INSPECT
        key = (class_id, is_class)
        cls = self._proxy_classes.get(key)
        if cls is not None:
            return cls
        reply = self.sync_request(consts.HANDLE_INSPECT, id_pack)
        if type(reply) is not tuple:
            raise CodecError("INSPECT reply must be a tuple")
        names = [item[0] for item in reply
                 if type(item) is tuple and len(item) == 2 and type(item[0]) is str]
        cls = make_proxy_class(name_pack, names, is_class)
        with self._lock:
            if len(self._proxy_classes) >= self._config["max_proxy_classes"]:
                self._proxy_classes.pop(next(iter(self._proxy_classes)))
            self._proxy_classes[key] = cls
        return cls

    # -- netref support -------------------------------------------------------------

    def _netref_getattr(self, proxy: BaseNetref, name: str) -> Any:
        return self.sync_request(consts.HANDLE_GETATTR, proxy, name)

    def _netref_instancecheck(self, cls_proxy: BaseNetref, other: Any) -> bool:
        cls_pack = _get(cls_proxy, "____id_pack__")
        if isinstance(other, BaseNetref):
            other_pack = _get(other, "____id_pack__")
            if cls_pack[2] != 0:
                raise TypeError("isinstance() arg 2 must be a type or tuple of types")
            if other_pack[1] == cls_pack[1]:
                return other_pack[2] != 0
            return bool(self.sync_request(consts.HANDLE_INSTANCECHECK, cls_proxy, other_pack))
        local = _netref._resolve_local_class(cls_pack[0], False)
        return isinstance(local, type) and isinstance(other, local)

    def _queue_release(self, id_pack: IdPack, count: int) -> None:
        """Called from netref finalizers: no lock, no I/O, reentrant."""
        if self._closed or sys.is_finalizing():
            return
        was_empty = not self._releases
        self._releases.append((id_pack, count))
        if was_empty:
            ReleaseFlusher.schedule(self)

    def _release_frames(self) -> list[list[bytes]]:
        """DEL frames for queued releases; call with the send lock held."""
        frames: list[list[bytes]] = []
        releases = self._releases
        while releases:
            try:
                id_pack, count = releases.popleft()
            except IndexError:
                break
            # DEL is async: its reply (None) is dropped as an unknown seq
            _, frame = self._engine.request(
                consts.HANDLE_DEL,
                (consts.LABEL_TUPLE,
                 ((consts.LABEL_LOCAL_REF, id_pack), (consts.LABEL_VALUE, count))),
            )
            frames.append(frame)
        return frames

    def _write(self, parts: list[bytes]) -> None:
        """Write one frame, preceded by any queued releases; send lock held.

        Over TLS each frame is its own write: RPyC reads one frame per readiness
        event on the raw socket, and a second frame already decrypted inside its
        TLS object would never wake it.
        """
        frames = self._release_frames() if self._releases else []
        frames.append(parts)
        if len(frames) == 1 or getattr(self._transport, "one_frame_per_write", False):
            for frame in frames:
                self._transport.send_parts(frame)
        else:
            self._transport.send_parts([part for frame in frames for part in frame])

    def _flush_releases(self) -> None:
        if not self._releases or self._closed:
            return
        with self._send_lock:
            if self._closed or not self._releases:
                return
            frames = self._release_frames()
            try:
                if getattr(self._transport, "one_frame_per_write", False):
                    for frame in frames:
                        self._transport.send_parts(frame)
                else:
                    self._transport.send_parts([part for frame in frames for part in frame])
            except ConnectionClosed as exc:
                self._teardown(exc)

    # -- sending and teardown -------------------------------------------------------

    def _send_raw(self, parts: list[bytes]) -> None:
        with self._send_lock:
            if self._closed:
                raise ConnectionClosed(self._closed_message())
            try:
                self._write(parts)
            except ConnectionClosed as exc:
                self._teardown(exc)
                raise

    def _teardown(self, reason: BaseException | None) -> None:
        """Close the transport, fail every pending request, run ``on_disconnect``."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop = self._loop
            # keep the text only: the exception's traceback would pin the frames (and a
            # decoded payload of up to max_frame_size) of whatever failed
            self._close_reason = None if reason is None else ConnectionClosed(str(reason))
            pending = list(self._pending.values())
            self._pending.clear()
            callers = list(self._callers.values())
            self._callers.clear()
            idle = list(self._idle_workers)
            self._idle_workers.clear()
        if loop is not None:
            loop.forget(self)  # before the close: the socket's number may be reused after
        self._transport.close()
        lost = ConnectionLost(f"connection {self._config['connid']} lost"
                              + (f": {reason}" if reason else ""))
        for result in pending:
            result._resolve(True, lost)
        for waiter in callers:
            if waiter.wake is not None:
                waiter.wake.release()
        for parked in idle:
            parked.release()
        self._releases.clear()
        try:
            on_disconnect = getattr(self._local_root, "on_disconnect", None)
            if on_disconnect is not None:
                on_disconnect(self)
        except Exception:
            log.exception("%s: on_disconnect failed", self._config["connid"])
        finally:
            with self._lock:
                self._exports.clear()
                self._proxy_classes.clear()
