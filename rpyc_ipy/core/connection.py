"""A connection: the engine, a transport, the object tables and the threads that serve them.

Build one with :func:`rpyc_ipy.connect` (or a server builds it for you), then use
``conn.root`` — the peer's service — and the netrefs it hands out. ``close()`` it
when done, or use it as a context manager.

How threads share the connection (the "leader/followers" rule):

* exactly one thread reads the transport at a time: the *reader*; who that is,
  and how the role passes on, is :class:`~rpyc_ipy.core.reader_role.ReaderRole`'s job;
* when the reader reads a request, it unboxes it (so arguments are unboxed in
  arrival order), hands the reader role on and runs the request itself; so a
  long request never stops the connection from reading a cancel, a callback or
  another request;
* nested callbacks work to any depth: a thread waiting for a reply runs the
  peer's callback requests that reach it, as RPyC does.

Values are boxed and unboxed by :class:`~rpyc_ipy.core.boxing.Boxing`. ``__del__``
of a netref never does I/O: releases are queued and flushed with the next write,
or by a background flusher shortly after.

Why this module is over 600 lines: it is rpyc's ``Connection`` API (the names rpyc
code calls on a connection, plus the few that netrefs, services and servers call),
each method short and each delegating to the module that does the work (engine,
reader role, boxing, writer, handlers); moving the API itself elsewhere would only
add a layer on every request.
"""

from __future__ import annotations

import functools
import itertools
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from rpyc_ipy.core.async_result import AsyncResult
from rpyc_ipy.core.background import ReleaseFlusher
from rpyc_ipy.core.boxing import Boxing
from rpyc_ipy.core.frame_reader import FrameReader
from rpyc_ipy.core.handlers import CloseRequested, RequestHandlers
from rpyc_ipy.core.netref import BaseNetref, resolve_local_class
from rpyc_ipy.core.options import validated_config
from rpyc_ipy.core.policy import CLASSIC_OVERRIDES, DEFAULT_CONFIG, SecurityPolicy
from rpyc_ipy.core.reader_role import ReaderRole
from rpyc_ipy.core.transport import Transport, TransportInfo
from rpyc_ipy.core.writer import FrameWriter
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
from rpyc_ipy.protocol import consts, vinegar
from rpyc_ipy.protocol.engine import Engine, Failure, Reply, Request
from rpyc_ipy.protocol.limits import Limits
from rpyc_ipy.protocol.objects import ExportTable, IdPack

if TYPE_CHECKING:
    from rpyc_ipy.core.service import ClassicSurface

__all__ = ["Connection", "user_of"]

log = logging.getLogger("rpyc_ipy.core.connection")
audit = logging.getLogger("rpyc_ipy.audit")


def user_of(credentials: Any) -> str | None:
    """A printable user name from an authenticator's credentials (an SRP user name,
    or a client certificate's common name), for log and audit lines."""
    if isinstance(credentials, str):
        return credentials
    if isinstance(credentials, dict):
        for rdn in credentials.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return str(value)
    return None


_conn_ids = itertools.count(1)
_get = object.__getattribute__


def _earlier(when: float | None, other: float) -> float:
    return other if when is None or other < when else when


class Connection(RequestHandlers):
    """One end of an RPyC-protocol connection.

    ``service`` is the root object this side exposes (a :class:`~rpyc_ipy.Service`
    class, instantiated for this connection, or an instance). ``config`` takes
    RPyC's keys (see :data:`rpyc_ipy.DEFAULT_CONFIG`) and ours
    (:data:`rpyc_ipy.core.options.CONNECTION_OPTIONS`).
    """

    def __init__(self, service: Any, transport: Transport, config: Mapping[str, Any] | None = None
                 ) -> None:
        self._config = validated_config(config)
        if self._config["connid"] is None:
            self._config["connid"] = f"conn{next(_conn_ids)}"
        self._policy = SecurityPolicy.from_config(self._config)
        self._transport = transport
        info = transport.info
        # tracebacks (paths, source lines) go only to peers we know (SECURITY.md)
        self._traceback_allowed = (info.peer_is_local or info.authenticated
                                   or self._config["credentials"] is not None
                                   or self._config["traceback_to_unauthenticated"])
        limits: Limits = self._config["limits"]
        # an authenticated peer gets the full frame limit from the start
        pending_limit = None if self._config.get("credentials") is not None \
            else self._config["pending_frame_limit"]
        self._engine = Engine(limits, self._config["compress_threshold"],
                              budget=self._config["frame_budget"].share(),
                              first_frame_limit=pending_limit,
                              keep_buffer=self._config["keep_frame_buffer"])
        self._on_established: Callable[[], None] | None = None
        self._reader = FrameReader(transport, self._engine, self._config["frame_deadline"])
        if transport.supports_busy_poll:
            transport.set_busy_poll(self._config["busy_poll_window"])
        self._exports = ExportTable(self._config["max_exported_objects"])
        self._pending: dict[int, AsyncResult] = {}
        self._lock = threading.Lock()  # pending, tables, reader role
        self._send_lock = threading.Lock()
        self._writer = FrameWriter(transport, self._engine)
        self._write = self._writer.write  # send lock held
        self._boxing = Boxing(self, self._exports, self._lock, self._inspect,
                              self._config["max_proxy_classes"], self._writer.reclaim_release,
                              (self._config["netref_keep"], self._config["netref_keep_time"]))
        # bound once: boxing runs for every argument and result
        self._box = self._boxing.box
        self._unbox = self._boxing.unbox
        self._role = ReaderRole(self._lock, self._read_until, self._config["max_dispatch_threads"],
                                f"rpyc_ipy-{self._config['connid']}")
        self._loop: Any = None  # the server loop that reads us, if any (servers/loop.py)
        self._closed = False
        self._close_reason: BaseException | None = None
        self._created = time.monotonic()
        self._last_frame = self._created
        if self._config["first_frame_timeout"] is not None:
            self._reader.first_frame_by = self._created + self._config["first_frame_timeout"]
        self._remote_root: Any = None
        self._flush_pending = False
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

    def fetch_root(self, timeout: float) -> Any:
        """:attr:`root`, waiting at most ``timeout`` seconds for it (``TimeoutError``):
        a connect makes it its first request, to find out what the peer speaks."""
        if self._remote_root is None:
            result = self.async_request(consts.HANDLE_GETROOT)
            result.set_expiry(timeout)
            self._remote_root = result.value
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
    _classic: ClassicSurface | None = None

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

    def set_classic_surface(self, surface: ClassicSurface) -> None:
        """Give this connection RPyC's classic attributes (``modules``, ``eval``, ...),
        answered by ``surface.get(name)``; ``MasterService`` calls this."""
        self._classic = surface

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

    @property
    def transport_info(self) -> TransportInfo:
        """What carries this connection: kind, addresses, TLS version and cipher, peer
        certificate, SRP user (for status displays)."""
        return self._transport.info

    def fileno(self) -> int:
        """The transport's descriptor, for ``select``; ``UsageError`` if it has none."""
        fd = self._transport.fileno()
        if fd is None:
            raise UsageError(f"{self._transport.info.kind} transports have no file descriptor")
        return fd

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
            self.flush_releases()
            _, parts = self._engine.request(consts.HANDLE_CLOSE, (consts.LABEL_VALUE, ()))
            self._send_raw(parts)
        except Exception:
            if not self._config["close_catchall"] and not isinstance(
                    sys.exc_info()[1], (RPyCError, OSError)):
                raise
        finally:
            self.abort(ConnectionClosed("the connection was closed locally"))

    # -- requests -----------------------------------------------------------------

    def sync_request(self, handler: int, *args: Any) -> Any:
        """Send a request and wait for its reply (``sync_request_timeout`` applies)."""
        result = self.async_request(handler, *args)
        if not result.ready:
            timeout = self._config["sync_request_timeout"]
            self.wait_for(result, None if timeout is None else time.monotonic() + timeout)
        return result.unwrap()

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
                self.abort(exc)
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

        self._role.serve_once(one_frame, deadline, served)
        if self._closed and not served[0]:
            raise ConnectionClosed(self._closed_message())
        return served[0]

    def serve_all(self) -> None:
        """Serve the peer until the connection closes (what servers run per client)."""
        try:
            self._role.serve_forever()
        finally:
            self.close()

    def start_serving(self) -> None:
        """Keep a reader on this connection from now on, even while no call waits
        (what :class:`~rpyc_ipy.BgServingThread` uses). Undo with :meth:`stop_serving`."""
        if not self._role.start_serving():
            raise ConnectionClosed(self._closed_message())

    def stop_serving(self) -> None:
        """Undo one :meth:`start_serving`; the background reader leaves when idle."""
        self._role.stop_serving()

    def serve_threaded(self, thread_count: int = 10) -> None:
        """Same as :meth:`serve_all`; requests already run on a bounded pool."""
        self.serve_all()

    # -- served by an event loop ------------------------------------------------------

    @property
    def established(self) -> bool:
        """True once the peer has logged in (it has credentials) or sent a valid message."""
        return self._engine.established

    def when_established(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once, when :attr:`established` becomes true (at once if it
        is); the reading thread calls it, so it must be quick. Set before serving."""
        if self._engine.established:
            callback()
        else:
            self._on_established = callback

    def attach_loop(self, loop: Any) -> None:
        """Let ``loop`` read this connection instead of a thread of its own: from now
        on, giving up the reader role calls ``loop.rearm(self)`` (see servers/loop.py)."""
        if not self._reader.can_read_available:
            raise UsageError("this transport cannot be read without waiting")
        self._loop = loop
        self._role.attach_loop(functools.partial(loop.rearm, self))

    def pump(self) -> None:
        """Handle every frame that has arrived, without waiting for more; requests run
        on this thread. The server loop calls this when the socket is readable."""
        self._role.pump()

    @property
    def receive_buffer_capacity(self) -> int:
        """Bytes of receive buffer held now: none while idle (allocated as bytes come)."""
        return self._reader.buffer_capacity

    def has_frame(self) -> bool:
        """True if a whole frame is buffered, so :meth:`pump` has work without a read."""
        return self._engine.has_frame()  # asked after every request a loop serves: no layer between

    def next_deadline(self) -> float | None:
        """When :meth:`check_deadlines` may next find one passed (``time.monotonic``),
        or None if no deadline is pending: what a server loop sleeps until."""
        if self._closed:
            return None
        # asked after every request a server loop serves: the usual answer is None, fast
        when = self._reader.stall_deadline()
        config = self._config
        first, idle = config["first_frame_timeout"], config["idle_timeout"]
        if first is not None and self._reader.frames_read == 0:
            when = _earlier(when, self._created + first)
        if idle is not None:
            when = _earlier(when, self._last_frame + idle)
        return when

    def check_deadlines(self) -> None:
        """Enforce the first-frame, frame and idle deadlines while nobody reads
        (a loop calls this at :meth:`next_deadline`; a reading thread checks them itself)."""
        if self._closed or self._role.reading:
            return
        try:
            self._reader.check_stall()
        except LimitExceeded as exc:
            self.abort(exc)
            return
        self._check_idle(self._config)

    # -- waiting and reading --------------------------------------------------------

    def _closed_message(self) -> str:
        reason = self._close_reason
        return f"connection {self._config['connid']} is closed" + (f": {reason}" if reason else "")

    def wait_for(self, result: AsyncResult, deadline: float | None) -> None:
        """Block until ``result`` is ready, reading the transport when it is our turn."""
        outcome = self._role.wait(result, deadline)
        if outcome == "closed":
            raise ConnectionLost(self._closed_message())
        if outcome == "timeout":
            with self._lock:
                self._pending.pop(result.seq, None)
            raise AsyncResultTimeout(f"no reply to request {result.seq} within the timeout")

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
                self.abort(exc.with_traceback(None))
                return False
            self._last_frame = time.monotonic()
            if self._on_established is not None:
                self._established_now()
            if on_frame is not None:
                on_frame[0] = True
            if type(event) is Request:
                args, error = self._unbox_request(event)
                if event.handler == consts.HANDLE_DEL:
                    self._answer_release(event, args, error)
                    continue
                if nested:
                    self._execute(event, args, error)
                    continue
                self._execute(event, args, error, release_role=True)
                return True
            self._complete(event)  # type: ignore[arg-type]
        return False

    def _established_now(self) -> None:
        callback, self._on_established = self._on_established, None
        if callback is not None:
            try:
                callback()
            except Exception:
                log.exception("%s: the established callback failed", self._config["connid"])

    def _check_idle(self, config: dict[str, Any]) -> None:
        now = time.monotonic()
        first = config["first_frame_timeout"]
        if first is not None and self._reader.frames_read == 0 and now - self._created > first:
            self.abort(ConnectionClosed(f"no frame within {first} s of connecting"))
            return
        idle = config["idle_timeout"]
        if idle is not None and not self._role.executing and now - self._last_frame > idle:
            self.abort(ConnectionClosed(f"idle for more than {idle} s"))

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
        result.resolve(is_error, value)
        self._role.wake_waiter(result)

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
        self._role.begin_request(release_role)
        try:
            try:
                if error is not None:
                    raise error
                handler = self._handlers.get(event.handler)
                if handler is None:
                    raise KeyError(event.handler)
                result = handler(self, *args)
                parts = self._engine.reply(event.seq, self._box(result))
            except CloseRequested:
                self.abort(ConnectionClosed("the peer closed the connection"))
                return
            except KeyboardInterrupt:
                if self._policy.propagate_KeyboardInterrupt_locally:
                    self.abort(ConnectionClosed("KeyboardInterrupt while serving"))
                    raise
                parts = self._exception_parts(event.seq, event.handler)
            except SystemExit:
                if self._policy.propagate_SystemExit_locally:
                    self.abort(ConnectionClosed("SystemExit while serving"))
                    raise
                parts = self._exception_parts(event.seq, event.handler)
            except BaseException:
                parts = self._exception_parts(event.seq, event.handler)
            try:
                self._send_raw(parts)
            except ConnectionClosed:
                pass
        finally:
            self._role.end_request()

    def _answer_release(self, event: Request, args: tuple[Any, ...],
                        error: BaseException | None) -> None:
        """Run a DEL request here, on the reading thread, and queue its reply for the
        next write: a release is quick, and the peer waits for no answer (rpyc sends it
        asynchronously), so it costs no hand-off of the reader role and no write."""
        try:
            if error is not None:
                raise error
            result = self._handlers[event.handler](self, *args)
            parts = self._engine.reply(event.seq, self._box(result))
        except Exception:
            parts = self._exception_parts(event.seq, event.handler)
        self._writer.queue_frame(parts)
        self._schedule_flush()

    def _exception_parts(self, seq: int, handler: int) -> list[bytes]:
        exc = sys.exc_info()[1]
        assert exc is not None
        if isinstance(exc, SecurityError):
            endpoints = self._config.get("endpoints") or (None, None)
            audit.warning("denied %s peer=%s user=%s op=%s: %s", self._config["connid"],
                          endpoints[1], user_of(self._config.get("credentials")),
                          self._engine.handler_name(handler), exc)
        if self._config["log_exceptions"]:  # as rpyc: at debug level, with the traceback
            logger = self._config["logger"] or log
            logger.debug("%s: request %d raised %r", self._config["connid"], seq, exc,
                         exc_info=exc)
        payload = vinegar.dump(exc, include_traceback=self._policy.include_local_traceback
                               and self._traceback_allowed,
                               include_version=self._policy.include_local_version)
        return self._engine.exception(seq, payload)

    def _inspect(self, id_pack: IdPack) -> Any:
        return self.sync_request(consts.HANDLE_INSPECT, id_pack)

    # -- netref support (the NetrefOwner protocol of core/netref.py) ---------------

    def netref_getattr(self, proxy: BaseNetref, name: str) -> Any:
        """``proxy.name``, asked of the peer (one GETATTR request)."""
        return self.sync_request(consts.HANDLE_GETATTR, proxy, name)

    def netref_instancecheck(self, cls_proxy: BaseNetref, other: Any) -> bool:
        """``isinstance(other, cls_proxy)`` for a netref to a remote class."""
        cls_pack = _get(cls_proxy, "____id_pack__")
        if isinstance(other, BaseNetref):
            other_pack = _get(other, "____id_pack__")
            if cls_pack[2] != 0:
                raise TypeError("isinstance() arg 2 must be a type or tuple of types")
            if other_pack[1] == cls_pack[1]:
                return other_pack[2] != 0
            return bool(self.sync_request(consts.HANDLE_INSTANCECHECK, cls_proxy, other_pack))
        local = resolve_local_class(cls_pack[0], False)
        return isinstance(local, type) and isinstance(other, local)

    def queue_release(self, id_pack: IdPack, count: int) -> None:
        """Called from netref finalizers: no lock, no I/O, reentrant."""
        if self._closed or sys.is_finalizing():
            return
        self._writer.queue_release(id_pack, count)
        self._schedule_flush()

    @property
    def kept_netrefs(self) -> int:
        """How many netrefs this side keeps alive past their last use now (at most
        ``netref_keep``, each for ``netref_keep_time`` seconds: core/keepalive.py)."""
        return self._boxing.kept_netrefs

    def release_kept(self) -> None:
        """Stop keeping netrefs alive past their last use, now: those nothing else
        holds are released at once (their DEL requests are sent before this returns)."""
        with self._lock:
            kept = self._boxing.take_kept()
        del kept  # outside the lock: their finalizers queue the releases
        self.flush_releases()

    def _schedule_flush(self) -> None:
        # one flush pending per connection: the next write usually takes what is queued
        # first, and a flusher woken for every callback would fight us for the GIL
        if not self._flush_pending:
            self._flush_pending = True
            ReleaseFlusher.schedule(self)

    def flush_releases(self) -> None:
        """Send the releases :meth:`queue_release` collected (the release flusher
        thread calls this, off the finalizers)."""
        self._flush_pending = False  # first: what is queued from now on schedules anew
        if not self._writer.has_queued or self._closed:
            return
        with self._send_lock:
            if self._closed:
                return
            try:
                self._writer.flush()
            except ConnectionClosed as exc:
                self.abort(exc)

    # -- sending and teardown -------------------------------------------------------

    def _send_raw(self, parts: list[bytes]) -> None:
        with self._send_lock:
            if self._closed:
                raise ConnectionClosed(self._closed_message())
            try:
                self._write(parts)
            except ConnectionClosed as exc:
                self.abort(exc)
                raise

    def abort(self, reason: BaseException | None) -> None:
        """End the connection now, without the CLOSE request :meth:`close` sends: close
        the transport, fail every pending request, run ``on_disconnect``."""
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
            wakes = self._role.shut_locked()
        if loop is not None:
            loop.forget(self)  # before the close: the socket's number may be reused after
        self._transport.close()
        self._engine.close()  # gives the frame budget back
        lost = ConnectionLost(f"connection {self._config['connid']} lost"
                              + (f": {reason}" if reason else ""))
        for result in pending:
            result.resolve(True, lost)
        for wake in wakes:
            wake.release()
        self._writer.forget_releases()
        try:
            on_disconnect = getattr(self._local_root, "on_disconnect", None)
            if on_disconnect is not None:
                on_disconnect(self)
        except Exception:
            log.exception("%s: on_disconnect failed", self._config["connid"])
        finally:
            with self._lock:
                self._exports.clear()
                self._boxing.forget_classes()
                kept = self._boxing.take_kept()
            del kept  # closed: their finalizers queue nothing
