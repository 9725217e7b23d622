"""The accept loop shared by every server: bind, accept, authenticate, serve, close.

A server binds ``127.0.0.1`` unless told otherwise, accepts port 0 (read the real
port from ``server.port``), runs the authenticator with a deadline off the accept
loop, and serves each client through a :class:`~rpyc_ipy.Connection`. Subclasses
only decide *where* a client's connection runs (:meth:`Server._dispatch`).

``start()`` serves in the calling thread until ``close()`` or Ctrl-C, as rpyc's
servers do; ``start_in_background()`` serves from a daemon thread::

    with ThreadedServer(MyService, port=0) as server:
        server.start_in_background()
        ...
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from rpyc_ipy.core.budget import DEFAULT_FRAME_BUDGET, FrameBudget
from rpyc_ipy.core.connection import Connection, user_of
from rpyc_ipy.core.transport import Transport
from rpyc_ipy.errors import AuthenticationError, UsageError
from rpyc_ipy.protocol.limits import DEFAULT_LIMITS
from rpyc_ipy.servers.channels import opens_channel
from rpyc_ipy.servers.loop import ServerLoop, loop_available
from rpyc_ipy.servers.pending import PendingSlots, Slot
from rpyc_ipy.servers.registration import AutoRegistration
from rpyc_ipy.transports.sockets import SocketTransport, is_loopback

__all__ = ["Authenticator", "Server"]

Authenticator = Callable[[socket.socket], tuple[Any, Any]]
_S = TypeVar("_S", bound="Server")
log = logging.getLogger("rpyc_ipy.server")
#: the default frame limit for a client that has not logged in or sent a valid message
PENDING_FRAME_LIMIT = 1 << 20


class Server:
    """Accepts clients and serves ``service`` to each; see the module docstring.

    Subclasses that set ``multiplex_clients`` read their plain-socket clients from
    one :class:`~rpyc_ipy.servers.loop.ServerLoop` instead of a thread each.

    ``protocol_config`` is the connection config (RPyC keys and ours) for every
    client. ``max_connections`` caps concurrent clients (extra ones are closed
    at once); ``auth_timeout`` bounds the authenticator; ``first_frame_timeout``
    drops a client that sends nothing after authenticating.

    Until a client is established (authenticated, or it sent a valid message) it
    is *pending*: at most ``max_pending_connections`` such clients in all and
    ``max_pending_per_address`` from one host are kept (others are closed at
    once), and its frames may not exceed ``pending_frame_limit`` bytes. All
    clients share ``frame_budget`` (bytes, or a :class:`~rpyc_ipy.FrameBudget`)
    for their large frames in flight. ``channel_handler``
    takes the clients that open a data channel (:mod:`rpyc_ipy.servers.channels`),
    once authenticated, instead of serving them.
    """

    multiplex_clients = False

    def __init__(
        self,
        service: Any,
        hostname: str | None = None,
        ipv6: bool = False,
        port: int = 0,
        backlog: int = 128,
        reuse_addr: bool = True,
        authenticator: Authenticator | None = None,
        registrar: Any = None,
        auto_register: bool | None = None,
        protocol_config: Mapping[str, Any] | None = None,
        logger: logging.Logger | None = None,
        listener_timeout: float = 0.5,
        socket_path: str | None = None,
        *,
        max_connections: int = 1024,
        auth_timeout: float = 10.0,
        first_frame_timeout: float | None = 30.0,
        allow_insecure_remote: bool = False,
        channel_handler: Callable[[Transport, Any], None] | None = None,
        max_pending_connections: int = 64,
        max_pending_per_address: int = 16,
        pending_frame_limit: int | None = PENDING_FRAME_LIMIT,
        frame_budget: int | FrameBudget = DEFAULT_FRAME_BUDGET,
    ) -> None:
        if socket_path is not None and (registrar is not None or auto_register):
            raise UsageError("a server on a unix socket cannot register with a registry: "
                             "remove registrar/auto_register, or serve on TCP")
        self.service = service
        self.authenticator = authenticator
        self.channel_handler = channel_handler
        self.protocol_config = dict(protocol_config or {})
        if first_frame_timeout is not None:
            self.protocol_config.setdefault("first_frame_timeout", first_frame_timeout)
        self.frame_budget = frame_budget if isinstance(frame_budget, FrameBudget) \
            else FrameBudget(frame_budget)
        max_frame = self.protocol_config.get("limits", DEFAULT_LIMITS).max_frame_size
        if self.frame_budget.limit <= max_frame:
            raise UsageError(
                f"frame_budget={self.frame_budget.limit} leaves no room for a frame of "
                f"max_frame_size={max_frame} bytes: raise the budget or lower the limit")
        self.protocol_config["frame_budget"] = self.frame_budget
        if pending_frame_limit is not None:
            self.protocol_config.setdefault("pending_frame_limit", pending_frame_limit)
        self.pending = PendingSlots(max_pending_connections, max_pending_per_address)
        self.logger = logger or log
        self.max_connections = max_connections
        self.auth_timeout = auth_timeout
        self.clients: set[Connection] = set()
        self._slots: dict[Connection, Slot] = {}  # the pending slot of each client
        self._clients_lock = threading.Lock()
        self._active = False
        self._closed = False
        self._thread: threading.Thread | None = None  # the accept loop, when in the background
        self._state_lock = threading.RLock()
        self._handshakes = 0
        self._loop = self._new_loop()
        if socket_path is not None:
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.listener.bind(socket_path)
            self.host, self.port = socket_path, 0
        else:
            host = "127.0.0.1" if hostname is None else hostname
            # "" binds every interface: it is not loopback whatever it resolves to
            if not allow_insecure_remote and authenticator is None and \
                    (host == "" or not is_loopback(host)):
                raise UsageError(
                    f"refusing to serve without authentication on non-loopback address {host!r}; "
                    "pass an authenticator, or allow_insecure_remote=True if you really mean it"
                )
            family = socket.AF_INET6 if ipv6 or ":" in host else socket.AF_INET
            self.listener = socket.socket(family, socket.SOCK_STREAM)
            if reuse_addr:
                self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind((host, port))
            self.host, self.port = self.listener.getsockname()[:2]
        self.listener.listen(backlog)
        self.listener.settimeout(listener_timeout)
        self.registration = AutoRegistration.for_server(registrar, auto_register, service,
                                                        self.port, self.host, self.logger)
        self.registrar = None if self.registration is None else self.registration.registrar
        self.auto_register = self.registration is not None

    def _new_loop(self) -> ServerLoop | None:
        """The event loop that reads this server's clients, if it multiplexes them."""
        if not (self.multiplex_clients and loop_available()):
            return None
        return ServerLoop(self._client_closed, max_threads=self.max_connections + 1,
                          name="rpyc_ipy-server-loop")

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.host}:{self.port} clients={len(self.clients)}>"

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Serve in this thread until :meth:`close` (from another thread or a signal
        handler) or Ctrl-C, then return, as rpyc's servers do. To serve in the
        background instead, call :meth:`start_in_background`."""
        self._begin()
        try:
            self._accept_loop()
        except KeyboardInterrupt:
            self.logger.info("interrupted: closing the server on %s:%s", self.host, self.port)
        finally:
            self.close()

    def start_in_background(self: _S) -> _S:
        """Serve in a daemon thread and return at once (the server itself, so
        ``server = ThreadedServer(...).start_in_background()`` reads well); :meth:`close`
        stops it."""
        self._start_in_thread()
        return self

    def _start_in_thread(self) -> threading.Thread:
        """rpyc's name, which rpyc-style test code calls: serve in a daemon thread,
        and return that thread."""
        self._begin()
        thread = threading.Thread(target=self._accept_loop,
                                  name=f"rpyc_ipy-server-{self.port}", daemon=True)
        self._thread = thread
        thread.start()
        return thread

    def _begin(self) -> None:
        with self._state_lock:
            if self._closed:
                raise UsageError("the server is closed: make a new one to serve again")
            if self._active:
                raise UsageError("the server is already started")
            self._active = True
        self._starting()
        if self.registration is not None:
            self.registration.start()

    def _starting(self) -> None:
        """Called once as serving starts, before registration and the accept loop."""

    def close(self) -> None:
        """Stop accepting, close every client, wait for a background accept loop.
        Safe to call more than once and from any thread or a signal handler."""
        with self._state_lock:  # reentrant: a signal handler may interrupt a close
            if self._closed:
                return
            self._closed = True
            self._active = False
        if self.registration is not None:
            self.registration.stop()
        try:
            self.listener.close()
        except OSError:
            pass
        with self._clients_lock:
            clients = list(self.clients)
        for conn in clients:
            try:
                conn.close()
            except Exception:
                pass
        if self._loop is not None:
            self._loop.close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    @property
    def closed(self) -> bool:
        return self._closed

    # -- accepting ----------------------------------------------------------------

    def _accept_loop(self) -> None:
        while self._active:
            try:
                sock, address = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._active:
                    self.logger.exception("accept failed")
                    time.sleep(0.05)
                    continue
                return
            self._admit(sock, address)

    def _admit(self, sock: socket.socket, address: Any) -> None:
        """Serve an accepted client if the connection limits allow, else close it."""
        with self._clients_lock:
            busy = len(self.clients) + self._handshakes
            if busy >= self.max_connections:
                self.logger.warning("refusing %s: %d connections already", address, busy)
                sock.close()
                return
            slot = self.pending.take(address)
            if not isinstance(slot, Slot):
                self.logger.warning("refusing %s: %s", address, slot)
                sock.close()
                return
            self._handshakes += 1
        self._dispatch(sock, address, slot)

    def _dispatch(self, sock: socket.socket, address: Any, slot: Slot) -> None:
        """Run :meth:`_handle_client` somewhere; subclasses choose where."""
        raise NotImplementedError

    def _authenticate(self, sock: socket.socket) -> tuple[Any, Any]:
        """Run the authenticator within ``auth_timeout`` seconds in all: a per-read
        timeout alone would let a peer dripping a byte at a time hold it forever,
        so a timer shuts the socket down at the deadline."""
        assert self.authenticator is not None
        expired = threading.Event()

        def cut_off() -> None:
            expired.set()
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        timer = threading.Timer(self.auth_timeout, cut_off)
        timer.daemon = True
        sock.settimeout(self.auth_timeout)
        timer.start()
        try:
            result, credentials = self.authenticator(sock)
        except Exception as exc:
            if expired.is_set():
                raise AuthenticationError(
                    f"authentication did not finish within {self.auth_timeout} s") from exc
            raise
        finally:
            timer.cancel()
        if expired.is_set():
            raise AuthenticationError(f"authentication did not finish within {self.auth_timeout} s")
        try:
            result.settimeout(None)
        except (OSError, AttributeError):
            pass
        return result, credentials

    def _handle_client(self, sock: socket.socket, address: Any, slot: Slot) -> None:
        """Authenticate, build the connection, serve it until it closes; ``slot`` is
        the client's pending slot, given back once it is established or gone."""
        counted_as_handshake = True
        try:
            try:
                sock.setblocking(True)
                channel = self.channel_handler is not None and \
                    opens_channel(sock, self.auth_timeout)
                credentials: Any = None
                if self.authenticator is not None:
                    sock, credentials = self._authenticate(sock)
            except AuthenticationError as exc:
                self.logger.info("authentication failed for %s: %s", address, exc)
                _close_quietly(sock)
                return
            except Exception as exc:
                self.logger.info("authentication error for %s: %r", address, exc)
                _close_quietly(sock)
                return
            if credentials is not None:
                slot.release()  # logged in
            transport = SocketTransport(sock)
            if channel:
                self._hand_over_channel(transport, credentials, address)
                return
            config = dict(self.protocol_config)
            config["credentials"] = credentials
            config["endpoints"] = (transport.info.local_address, transport.info.peer_address)
            config.setdefault("logger", self.logger)
            try:
                conn = Connection(self.service, transport, config)
            except Exception:
                self.logger.exception("cannot set up the connection from %s", address)
                transport.close()
                return
            peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else address
            self.logger.info("connection %s from %s user=%s service=%s", conn.config["connid"],
                             peer, user_of(credentials), _service_name(self.service))
            with self._clients_lock:
                self._handshakes -= 1
                counted_as_handshake = False
                self.clients.add(conn)
                self._slots[conn] = slot  # given back by _client_closed
            conn.when_established(slot.release)
            if self._loop is not None and transport.supports_nowait:
                self._loop.set_busy_poll(conn.config["busy_poll_window"])
                try:
                    if transport.info.kind == "tls":
                        self._loop.add(conn, transport.fileno(), held=transport.held_bytes)
                    else:  # a plain socket: edge-triggered, told what its reads left
                        self._loop.add(conn, transport.fileno(), drained=transport.drained)
                    return  # the loop serves it from now on, and calls _client_closed
                except Exception:
                    if not self._closed:
                        self.logger.exception("cannot hand %s to the server loop", address)
                    conn.close()
                    self._client_closed(conn)
                    return
            try:
                conn.serve_all()
            finally:
                self._client_closed(conn)
        finally:
            if counted_as_handshake:  # never became a client (a second release does nothing)
                slot.release()
                with self._clients_lock:
                    self._handshakes -= 1

    def _hand_over_channel(self, transport: SocketTransport, credentials: Any,
                           address: Any) -> None:
        assert self.channel_handler is not None
        try:
            self.channel_handler(transport, credentials)
        except Exception as exc:
            self.logger.warning("data channel from %s refused: %s", address, exc)
            transport.close()
            return
        self.logger.info("data channel from %s user=%s", address, user_of(credentials))

    def _client_closed(self, conn: Connection) -> None:
        with self._clients_lock:
            if conn not in self.clients:
                return
            self.clients.discard(conn)
            slot = self._slots.pop(conn, None)
        if slot is not None:
            slot.release()
        self.logger.info("connection %s closed", conn.config["connid"])


def _close_quietly(sock: Any) -> None:
    try:
        sock.close()
    except Exception:
        pass


def _service_name(service: Any) -> str:
    getter = getattr(service, "get_service_name", None)
    try:
        return str(getter()) if getter is not None else type(service).__name__
    except Exception:
        return "?"
