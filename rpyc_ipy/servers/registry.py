"""The service registry, speaking RPyC 6.0.2's registry protocol over UDP or TCP.

A registry maps service names to the ``(host, port)`` of servers that serve them.
Servers register themselves (``auto_register=True``, see
:mod:`rpyc_ipy.servers.registration`) and clients ask it
(:func:`rpyc_ipy.factory.discover`, :func:`~rpyc_ipy.factory.connect_by_service`)::

    registry = TCPRegistryServer()              # 127.0.0.1:18811; start() serves
    TCPRegistryClient("127.0.0.1").discover("CALCULATOR")

The wire format is RPyC's: a request is the brine encoding of
``("RPYC", COMMAND, args)``, one datagram over UDP or one exchange per TCP
connection, and the reply is the brine encoding of the result. Commands:
``QUERY (name,)`` -> ``((host, port), ...)``; ``LIST ((host or None,),)`` -> the names
(or ``None`` when listing is off); ``REGISTER (aliases, port)`` -> ``"OK"``;
``UNREGISTER (port,)`` (no reply is waited for). The host registered is the
address the request came from.

Unlike RPyC, a registry server binds 127.0.0.1 unless given a host, and keeps at
most ``max_entries`` registrations (a full registry replies ``"FULL"``, which a
registrar takes as "not registered"). Anyone who can reach a registry can
register any name: it is a directory for a network you trust, not a security
boundary.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

from rpyc_ipy.errors import CodecError
from rpyc_ipy.protocol import brine

__all__ = [
    "DEFAULT_PRUNING_TIMEOUT",
    "MAX_DGRAM_SIZE",
    "REGISTRY_PORT",
    "RegistryClient",
    "RegistryServer",
    "TCPRegistryClient",
    "TCPRegistryServer",
    "UDPRegistryClient",
    "UDPRegistryServer",
]

REGISTRY_PORT = 18811
#: a registration not renewed for this long (seconds) is dropped
DEFAULT_PRUNING_TIMEOUT = 4 * 60
#: the largest request read; replies to LIST may be up to ten times this
MAX_DGRAM_SIZE = 1500
MAX_REPLY_SIZE = MAX_DGRAM_SIZE * 10
MAGIC = "RPYC"
REFUSED = "FULL"

Address = tuple[str, int]


def _request(command: str, args: tuple[Any, ...]) -> bytes:
    return brine.dump((MAGIC, command, args))


class _Nothing:
    """No (valid) message: distinct from a message whose value is ``None``."""


NOTHING = _Nothing()


def _decode(data: bytes) -> Any:
    """The brine value in ``data``, or :data:`NOTHING` when it is not one."""
    try:
        return brine.load(data)
    except CodecError:
        return NOTHING


def _addresses(value: Any) -> tuple[Address, ...]:
    """A QUERY reply, checked: ``((host, port), ...)``; anything else counts as none."""
    if not isinstance(value, tuple):
        return ()
    return tuple((host, port) for host, port in
                 (item for item in value if isinstance(item, tuple) and len(item) == 2)
                 if isinstance(host, str) and isinstance(port, int))


# -- servers -----------------------------------------------------------------------


class RegistryServer:
    """The registrations and the four commands; subclasses add the transport.

    ``start()`` serves in the calling thread until ``close()`` (from another thread).
    Override :meth:`on_service_added` / :meth:`on_service_removed` to watch changes.
    """

    #: how often (seconds) the serving loop looks whether it was closed
    POLL_INTERVAL = 0.5

    def __init__(self, listenersock: socket.socket, pruning_timeout: float | None = None,
                 logger: logging.Logger | None = None, allow_listing: bool = False, *,
                 max_entries: int = 4096) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries!r}")
        self.sock = listenersock
        self.host, self.port = listenersock.getsockname()[:2]
        self.pruning_timeout = DEFAULT_PRUNING_TIMEOUT if pruning_timeout is None \
            else pruning_timeout
        self.allow_listing = allow_listing
        self.max_entries = max_entries
        self.logger = logger or logging.getLogger(
            f"rpyc_ipy.registry.{type(self).__name__}.{self.port}")
        #: NAME -> {(host, port): monotonic time of the last registration}
        self.services: dict[str, dict[Address, float]] = {}
        self.active = False
        self._lock = threading.RLock()
        self._closed = threading.Event()
        self._stopped = threading.Event()
        self._serving: threading.Thread | None = None

    def __enter__(self) -> RegistryServer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def on_service_added(self, name: str, addrinfo: Address) -> None:
        """Called when a server first registers ``name`` (not on renewals)."""

    def on_service_removed(self, name: str, addrinfo: Address) -> None:
        """Called when a server unregisters or its registration is dropped as stale."""

    # -- the commands ----------------------------------------------------------------

    def cmd_query(self, host: str, name: str) -> tuple[Address, ...]:
        """The servers of ``name``, oldest registration first; stale ones are dropped."""
        name = name.upper()
        with self._lock:
            self._prune(name)
            entries = self.services.get(name, {})
            return tuple(sorted(entries, key=entries.__getitem__))

    def cmd_list(self, host: str, filter_host: tuple[str | None]) -> tuple[str, ...] | None:
        """Every registered name (on ``filter_host[0]`` only, if given), or ``None``
        when listing is not allowed."""
        if not self.allow_listing:
            return None
        wanted = filter_host[0]
        with self._lock:
            return tuple(name for name, entries in self.services.items()
                         if not wanted or any(h == wanted for h, _ in entries))

    def cmd_register(self, host: str, names: tuple[str, ...], port: int) -> str:
        """Register (or renew) ``host:port`` under each of ``names``."""
        now = time.monotonic()
        added = []
        with self._lock:
            new = {n.upper() for n in names if (host, port) not in self.services.get(n.upper(), {})}
            if new and self._count() + len(new) > self.max_entries:
                for name in list(self.services):
                    self._prune(name)
                if self._count() + len(new) > self.max_entries:
                    self.logger.warning("registry full (%d entries): refused %s:%d as %s",
                                        self.max_entries, host, port, ", ".join(names))
                    return REFUSED
            for name in names:
                entries = self.services.setdefault(name.upper(), {})
                if (host, port) not in entries:
                    added.append(name.upper())
                entries[(host, port)] = now
        self.logger.debug("registered %s:%d as %s", host, port, ", ".join(names))
        for name in added:
            self._notify(self.on_service_added, name, (host, port))
        return "OK"

    def cmd_unregister(self, host: str, port: int) -> str:
        """Drop every registration of ``host:port``."""
        removed = []
        with self._lock:
            for name in list(self.services):
                if self.services[name].pop((host, port), None) is not None:
                    removed.append(name)
                if not self.services[name]:
                    del self.services[name]
        self.logger.debug("unregistered %s:%d", host, port)
        for name in removed:
            self._notify(self.on_service_removed, name, (host, port))
        return "OK"

    def _count(self) -> int:
        return sum(len(entries) for entries in self.services.values())

    def _prune(self, name: str) -> None:
        entries = self.services.get(name)
        if not entries:
            return
        oldest = time.monotonic() - self.pruning_timeout
        for addrinfo in [a for a, seen in entries.items() if seen < oldest]:
            del entries[addrinfo]
            self.logger.debug("dropped stale %s:%d (%s)", *addrinfo, name)
            self._notify(self.on_service_removed, name, addrinfo)
        if not entries:
            del self.services[name]

    def _notify(self, hook: Any, name: str, addrinfo: Address) -> None:
        try:
            hook(name, addrinfo)
        except Exception:
            self.logger.exception("the registry's %s hook failed", hook.__name__)

    def handle(self, data: bytes, host: str) -> bytes | None:
        """The reply to one request from ``host``, or ``None`` for no reply
        (malformed requests are dropped, as RPyC does)."""
        request = _decode(data)
        if not (isinstance(request, tuple) and len(request) == 3 and request[0] == MAGIC
                and isinstance(request[1], str) and isinstance(request[2], tuple)):
            self.logger.debug("dropped a malformed request from %s", host)
            return None
        command, args = request[1].upper(), request[2]
        if command == "QUERY" and len(args) == 1 and isinstance(args[0], str):
            return brine.dump(self.cmd_query(host, args[0]))
        if command == "LIST" and len(args) == 1 and isinstance(args[0], tuple) \
                and len(args[0]) == 1 and isinstance(args[0][0], (str, type(None))):
            return brine.dump(self.cmd_list(host, args[0]))
        if command == "REGISTER" and len(args) == 2 and _port_ok(args[1]) \
                and isinstance(args[0], tuple) and args[0] \
                and all(isinstance(n, str) and n for n in args[0]):
            return brine.dump(self.cmd_register(host, args[0], args[1]))
        if command == "UNREGISTER" and len(args) == 1 and _port_ok(args[0]):
            return brine.dump(self.cmd_unregister(host, args[0]))
        self.logger.debug("dropped an unknown or malformed %r request from %s", command, host)
        return None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Serve in this thread until :meth:`close`."""
        if self.active or self._closed.is_set():
            raise RuntimeError("this registry server is already serving or closed")
        self.active = True
        self._serving = threading.current_thread()
        self.logger.info("registry serving on %s:%d", self.host, self.port)
        try:
            while not self._closed.is_set():
                self._serve_once()
        finally:
            self.active = False
            self.sock.close()
            self._stopped.set()

    def close(self) -> None:
        """Stop serving (idempotent, from any thread or a signal handler); from another
        thread it returns once the socket is closed."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self.active:
            if self._serving is not threading.current_thread():
                self._stopped.wait(self.POLL_INTERVAL * 4)
        else:
            self.sock.close()

    def _serve_once(self) -> None:
        raise NotImplementedError


def _port_ok(value: Any) -> bool:
    return type(value) is int and 0 < value < 65536


def _bind(kind: int, host: str, port: int, reuse_addr: bool) -> socket.socket:
    family, socktype, proto, _, address = socket.getaddrinfo(host, port, 0, kind)[0]
    sock = socket.socket(family, socktype, proto)
    try:
        if reuse_addr:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


class UDPRegistryServer(RegistryServer):
    """A registry answering datagrams (and broadcasts, when bound to every interface)."""

    def __init__(self, host: str = "127.0.0.1", port: int = REGISTRY_PORT,
                 pruning_timeout: float | None = None, logger: logging.Logger | None = None,
                 allow_listing: bool = False, *, max_entries: int = 4096) -> None:
        sock = _bind(socket.SOCK_DGRAM, host, port, reuse_addr=False)
        sock.settimeout(self.POLL_INTERVAL)
        super().__init__(sock, pruning_timeout, logger, allow_listing, max_entries=max_entries)

    def _serve_once(self) -> None:
        try:
            data, addrinfo = self.sock.recvfrom(MAX_DGRAM_SIZE)
        except OSError:  # the timeout, or a closed socket
            return
        reply = self.handle(data, addrinfo[0])
        if reply is not None:
            try:
                self.sock.sendto(reply, addrinfo)
            except OSError as exc:
                self.logger.debug("cannot reply to %s: %s", addrinfo, exc)


class TCPRegistryServer(RegistryServer):
    """A registry answering one request per TCP connection (crosses routers that
    drop broadcasts). Each connection has ``client_timeout`` seconds in all, and
    at most ``max_clients`` are read at once (more are closed unanswered)."""

    def __init__(self, host: str = "127.0.0.1", port: int = REGISTRY_PORT,
                 pruning_timeout: float | None = None, logger: logging.Logger | None = None,
                 reuse_addr: bool = True, allow_listing: bool = False, *,
                 max_entries: int = 4096, client_timeout: float = 3.0,
                 max_clients: int = 64) -> None:
        sock = _bind(socket.SOCK_STREAM, host, port, reuse_addr)
        sock.listen(64)
        sock.settimeout(self.POLL_INTERVAL)
        super().__init__(sock, pruning_timeout, logger, allow_listing, max_entries=max_entries)
        self.client_timeout = client_timeout
        self._slots = threading.BoundedSemaphore(max_clients)

    def _serve_once(self) -> None:
        try:
            client, addrinfo = self.sock.accept()
        except OSError:
            return
        if not self._slots.acquire(blocking=False):
            self.logger.warning("refused %s: too many registry clients at once", addrinfo)
            client.close()
            return
        threading.Thread(target=self._answer, args=(client, addrinfo[0]), daemon=True,
                         name="rpyc_ipy-registry-client").start()

    def _answer(self, client: socket.socket, host: str) -> None:
        try:
            with client:
                data = _read_message(client, MAX_DGRAM_SIZE,
                                     time.monotonic() + self.client_timeout)
                reply = self.handle(data, host) if data else None
                if reply is not None:
                    client.settimeout(self.client_timeout)
                    client.sendall(reply)
        except OSError as exc:
            self.logger.debug("registry client %s: %s", host, exc)
        finally:
            self._slots.release()


def _read_message(sock: socket.socket, limit: int, deadline: float) -> bytes:
    """Bytes from ``sock`` until they decode as one brine value, the peer closes,
    ``limit`` bytes or the deadline (whichever comes first)."""
    data = b""
    while len(data) < limit:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(limit - len(data))
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
        if _decode(data) is not NOTHING:
            break
    return data


# -- clients (registrars) ------------------------------------------------------------


class RegistryClient:
    """Asks a registry; also the *registrar* a server registers itself with.

    Every call waits at most ``timeout`` seconds; a registry that does not answer
    makes :meth:`discover` return ``()`` and :meth:`register` return ``False``.
    """

    #: seconds between renewals of a server's registration (see DEFAULT_PRUNING_TIMEOUT)
    REREGISTER_INTERVAL = 60.0

    def __init__(self, ip: str, port: int, timeout: float,
                 logger: logging.Logger | None = None) -> None:
        self.ip = ip
        self.port = port
        self.timeout = timeout
        self.logger = logger or logging.getLogger(f"rpyc_ipy.registry.{type(self).__name__}")

    def discover(self, name: str) -> tuple[Address, ...]:
        """The ``(host, port)`` of each server registered as ``name``."""
        return _addresses(self._ask("QUERY", (name,)))

    def list(self, filter_host: str | None = None) -> tuple[str, ...] | None:
        """Every registered service name (on ``filter_host`` only, if given); ``None``
        when the registry does not allow listing."""
        reply = self._ask("LIST", ((filter_host,),), MAX_REPLY_SIZE)
        if reply is None:
            return None
        if not isinstance(reply, tuple):  # no answer, or a malformed one
            return ()
        return tuple(name for name in reply if isinstance(name, str))

    def register(self, aliases: Iterable[str], port: int, interface: str = "") -> bool:
        """Register this machine's server on ``port`` as ``aliases``; ``True`` once
        the registry acknowledged it."""
        reply = self._ask("REGISTER", (tuple(aliases), port), interface=interface)
        if reply == "OK":
            self.logger.info("registry %s:%d acknowledged", self.ip, self.port)
            return True
        self.logger.warning("registry %s:%d did not acknowledge the registration%s", self.ip,
                            self.port, " (it is full)" if reply == REFUSED else "")
        return False

    def unregister(self, port: int) -> None:
        """Drop this machine's server on ``port`` from the registry (not waited for)."""
        self._tell("UNREGISTER", (port,))

    def _ask(self, command: str, args: tuple[Any, ...], limit: int = MAX_DGRAM_SIZE,
             interface: str = "") -> Any:
        """The decoded reply, or :data:`NOTHING` when none came within the timeout."""
        raise NotImplementedError

    def _tell(self, command: str, args: tuple[Any, ...]) -> None:
        raise NotImplementedError


class UDPRegistryClient(RegistryClient):
    """Asks by datagram: broadcast to ``255.255.255.255`` by default (the first
    registry to answer wins), or to the registry at ``ip``."""

    def __init__(self, ip: str = "255.255.255.255", port: int = REGISTRY_PORT,
                 timeout: float = 2, bcast: bool | None = None,
                 logger: logging.Logger | None = None, ipv6: bool = False) -> None:
        super().__init__(ip, port, timeout, logger)
        self.sock_family = socket.AF_INET6 if ipv6 else socket.AF_INET
        self.bcast = False if ipv6 else ("255" in ip.split(".") if bcast is None else bcast)

    def _socket(self, interface: str = "") -> socket.socket:
        sock = socket.socket(self.sock_family, socket.SOCK_DGRAM)
        try:
            if interface:
                sock.bind((interface, 0))
            if self.bcast:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        except OSError:
            sock.close()
            raise
        return sock

    def _ask(self, command: str, args: tuple[Any, ...], limit: int = MAX_DGRAM_SIZE,
             interface: str = "") -> Any:
        deadline = time.monotonic() + self.timeout
        with self._socket(interface) as sock:
            try:
                sock.sendto(_request(command, args), (self.ip, self.port))
            except OSError as exc:
                self.logger.warning("cannot reach the registry at %s:%d: %s", self.ip,
                                    self.port, exc)
                return NOTHING
            # stray datagrams are skipped; each skip still counts against the deadline
            for _ in range(64):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                sock.settimeout(remaining)
                try:
                    data, source = sock.recvfrom(limit)
                except OSError:
                    break
                reply = _decode(data)
                if source[1] == self.port and reply is not NOTHING:
                    return reply
        return NOTHING

    def _tell(self, command: str, args: tuple[Any, ...]) -> None:
        with self._socket() as sock:
            try:
                sock.sendto(_request(command, args), (self.ip, self.port))
            except OSError as exc:
                self.logger.warning("cannot reach the registry at %s:%d: %s", self.ip,
                                    self.port, exc)


class TCPRegistryClient(RegistryClient):
    """Asks the registry at ``ip`` over TCP, one connection per request."""

    def __init__(self, ip: str, port: int = REGISTRY_PORT, timeout: float = 2,
                 logger: logging.Logger | None = None) -> None:
        super().__init__(ip, port, timeout, logger)

    def _connect(self, interface: str) -> socket.socket | None:
        try:
            return socket.create_connection((self.ip, self.port), self.timeout,
                                            (interface, 0) if interface else None)
        except OSError as exc:
            self.logger.warning("cannot reach the registry at %s:%d: %s", self.ip, self.port,
                                exc)
            return None

    def _ask(self, command: str, args: tuple[Any, ...], limit: int = MAX_DGRAM_SIZE,
             interface: str = "") -> Any:
        deadline = time.monotonic() + self.timeout
        sock = self._connect(interface)
        if sock is None:
            return NOTHING
        with sock:
            try:
                sock.sendall(_request(command, args))
                return _decode(_read_message(sock, limit, deadline))
            except OSError:
                return NOTHING

    def _tell(self, command: str, args: tuple[Any, ...]) -> None:
        sock = self._connect("")
        if sock is not None:
            with sock:
                try:
                    sock.sendall(_request(command, args))
                except OSError:
                    pass
