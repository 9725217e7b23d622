"""The execution service: notebook cells run on this server, for an authenticated peer.

It is remote code execution by design, so a server grants it explicitly::

    from rpyc_ipy import ThreadedServer
    from rpyc_ipy.auth import SRPAuthenticator
    from rpyc_ipy.remote import ExecutionService, RuntimeSettings, SessionRegistry

    registry = SessionRegistry(RuntimeSettings(idle_timeout=3600))
    ThreadedServer(ExecutionService.configured(registry=registry), hostname="0.0.0.0",
                   port=18861, authenticator=SRPAuthenticator("users.json")).start()

(``rpyc-ipy serve --notebook`` does this.) Connections without credentials are
refused: every request fails with a :class:`~rpyc_ipy.SecurityError` that says
why, and the connection is closed. For a local demo without authentication,
opt in by name; it still only accepts peers on the loopback interface (or
in-process and unix-socket peers)::

    ExecutionService.configured(allow_loopback_plaintext=True)

A client works in a *session*: ``root.attach(name)`` picks (user, name), starting
its worker process the first time (:mod:`rpyc_ipy.remote.sessions`); a client that
calls an engine method first gets a fresh session of its own, which ends with its
connection (nobody else knows its name). The engine methods
(``execute``, ``resume``, ``jobs``, ``complete``, ``push``, ...; see
:class:`~rpyc_ipy.remote.engine.Engine`) go to the session's worker; ``interrupt``,
``restart``, ``sessions`` and ``close_session`` are the server's own. What the
service grants its peer on this connection, in RPyC policy terms: public
attributes, setattr and delattr of the objects it reaches (it may run any code
anyway), pickle only with the runtime's ``allow_pickle``. The client sees this in
``%rpyc_policy``.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from rpyc_ipy.core.service import Service
from rpyc_ipy.core.transport import Transport
from rpyc_ipy.errors import AuthenticationError, SecurityError, UsageError
from rpyc_ipy.remote.engine import ENGINE_API, ENGINE_VERSION, FEATURES
from rpyc_ipy.remote.relay import Relay
from rpyc_ipy.remote.sessions import Session, SessionRegistry, user_name
from rpyc_ipy.remote.values import available_kinds
from rpyc_ipy.servers.channels import read_ticket
from rpyc_ipy.transports.sockets import SocketTransport

if TYPE_CHECKING:
    from rpyc_ipy.core.connection import Connection

__all__ = ["ExecutionService"]

log = logging.getLogger("rpyc_ipy.remote")

#: the policy keys the service grants its (authenticated) peer
GRANTS: dict[str, Any] = {
    "allow_public_attrs": True,
    "allow_setattr": True,
    "allow_delattr": True,
}
#: what this service adds to the engine's features
SESSION_FEATURES = ("sessions", "interrupt", "restart")
_OPTIONS = ("allow_loopback_plaintext", "registry")
_SERVICE_NAMES = ("hello", "attach", "sessions", "interrupt", "restart", "close_session",
                  "channel_ticket")

_default_registry: SessionRegistry | None = None
_default_lock = threading.Lock()


def default_registry() -> SessionRegistry:
    """The registry of services configured without one (created on first use)."""
    global _default_registry
    with _default_lock:
        if _default_registry is None:
            _default_registry = SessionRegistry()
        return _default_registry


class ExecutionService(Service):
    """Runs cells in per-session worker processes; see the module docstring.

    Options are class attributes; :meth:`configured` makes a subclass with
    some of them changed:

    * ``allow_loopback_plaintext`` (False): accept peers without credentials
      when they are on the loopback interface (local demos only);
    * ``registry`` (a process-wide default): the :class:`SessionRegistry`, with
      the runtime settings (idle timeout, caps, limits, pickle, fd capture).
    """

    ALIASES = ("EXECUTION",)
    allow_loopback_plaintext: ClassVar[bool] = False
    registry: ClassVar[SessionRegistry | None] = None
    #: set by :meth:`channel_handler`: a server relays data channels for this class
    channels: ClassVar[bool] = False

    def __init__(self) -> None:
        self._refusal: str | None = "not connected yet"
        self._user = ""
        self._session: Session | None = None
        self._implicit = False  # the session was made for a client that never attached
        self._lock = threading.Lock()

    @classmethod
    def configured(cls, **options: Any) -> type[ExecutionService]:
        """A subclass with some options changed (a server builds one instance per client)."""
        unknown = set(options) - set(_OPTIONS)
        if unknown:
            raise UsageError(f"unknown ExecutionService options: {', '.join(sorted(unknown))}")
        if "allow_loopback_plaintext" in options and \
                type(options["allow_loopback_plaintext"]) is not bool:
            raise UsageError("allow_loopback_plaintext must be True or False")
        if "registry" in options and not isinstance(options["registry"], SessionRegistry):
            raise UsageError("registry must be a rpyc_ipy.remote.SessionRegistry")
        return type(cls.__name__, (cls,), {"__module__": cls.__module__, **options})

    @property
    def sessions(self) -> SessionRegistry:
        return self.registry if self.registry is not None else default_registry()

    # -- connection lifecycle ----------------------------------------------------------

    def on_connect(self, conn: Connection) -> None:
        super().on_connect(conn)
        credentials = conn.credentials
        self._refusal = None
        if credentials is None:
            if not self.allow_loopback_plaintext:
                self._refusal = ("this execution service requires an authenticated connection "
                                 "(TLS certificates or SRP username/password); for a local "
                                 "demo its operator can start it with `rpyc-ipy serve "
                                 "--notebook --allow-loopback-plaintext`")
            elif not _is_local_peer(conn.config.get("endpoints")):
                self._refusal = ("unauthenticated connections are accepted from the loopback "
                                 "interface only")
        if self._refusal is not None:
            log.warning("%s: refusing the execution service: %s", conn.config["connid"],
                        self._refusal)
            # answer what is already in flight, then hang up
            timer = threading.Timer(2.0, conn.close)
            timer.daemon = True
            timer.start()
            return
        self._user = user_name(credentials)
        conn.update_policy(**GRANTS, allow_pickle=self.sessions.settings.allow_pickle)

    def on_disconnect(self, conn: Connection) -> None:
        with self._lock:
            session, self._session = self._session, None
        if session is None:
            return
        if self._implicit:  # nobody knows its name: nobody can come back to it
            self.sessions.close_session(session)
        else:
            self.sessions.detach(session)

    def _rpyc_getattr(self, name: str) -> Any:
        if self._refusal is not None:
            raise SecurityError(self._refusal)
        name = name.removeprefix("exposed_")
        if name in _SERVICE_NAMES or name in ENGINE_API or \
                name in ("get_service_name", "get_service_aliases"):
            return getattr(self, f"exposed_{name}")
        raise AttributeError(f"the execution service has no {name!r}")

    def __dir__(self) -> list[str]:
        if self._refusal is not None:
            return []
        return sorted(f"exposed_{name}" for name in {*_SERVICE_NAMES, *ENGINE_API})

    # -- sessions ---------------------------------------------------------------------------

    def _current(self) -> Session:
        """The attached session; a client that did not attach gets a fresh one."""
        with self._lock:
            session = self._session
        if session is None:
            self.exposed_attach()
            with self._lock:
                self._implicit = True
                session = self._session
        assert session is not None
        return session

    def exposed_hello(self, client: Any = None) -> tuple[tuple[str, Any], ...]:
        """Server facts: engine version, features, host, user, grants."""
        import os
        import socket
        import sys

        settings = self.sessions.settings
        grants = (*sorted(GRANTS.items()), ("allow_pickle", settings.allow_pickle))
        with self._lock:
            session = self._session
        features = (*FEATURES, *SESSION_FEATURES, *(("channels",) if self.channels else ()))
        return (("engine", ENGINE_VERSION), ("features", features),
                ("python", sys.version.split()[0]), ("implementation", sys.implementation.name),
                ("host", socket.gethostname()), ("pid", os.getpid()),
                ("allow_pickle", settings.allow_pickle), ("capture_fd", settings.capture_fd),
                ("service", "rpyc_ipy.remote.ExecutionService"), ("user", self._user or None),
                ("grants", grants), ("isolation", "process"),
                ("session", session.name if session else None), ("data", available_kinds()))

    def exposed_attach(self, name: str | None = None, new: bool = False
                       ) -> tuple[tuple[str, Any], ...]:
        """Work in session ``name`` (a fresh, uniquely named one if ``None``), starting
        its worker if needed; ``new`` replaces an existing session's worker. Returns
        the session's facts, with ``reattached`` and the ids of its running cells."""
        if name is not None and (type(name) is not str or not name.isidentifier()):
            raise UsageError(f"session name {name!r} must be a Python name, like lab or gpu1")
        if type(new) is not bool:
            raise UsageError("new must be True or False")
        session, reattached = self.sessions.attach(self._user, name, new)
        with self._lock:
            previous, self._session = self._session, session
            was_implicit, self._implicit = self._implicit, False
        if previous is not None and previous is not session:
            if was_implicit:
                self.sessions.close_session(previous)
            else:
                self.sessions.detach(previous)
        elif previous is session:
            self.sessions.detach(previous)  # attached twice by this client: count it once
        running: tuple[str, ...] = ()
        shell = None
        if session.death is None:
            running = tuple(session.call("running")) if reattached else ()
            shell = dict(session.call("hello")).get("shell")
        return (*session.info(), ("reattached", reattached), ("running", running),
                ("shell", shell))

    def exposed_sessions(self) -> tuple[tuple[tuple[str, Any], ...], ...]:
        """This user's sessions on the server (nobody else's)."""
        return tuple(s.info() for s in self.sessions.sessions_of(self._user))

    def exposed_interrupt(self) -> str:
        """``SIGINT`` to the session's worker: what the stop button does."""
        return self._current().interrupt()

    def exposed_restart(self) -> tuple[tuple[str, Any], ...]:
        """Replace the session's worker with a fresh one (its namespace is lost)."""
        session = self._current()
        session.restart()
        return (*session.info(), ("reattached", False), ("running", ()))

    def exposed_channel_ticket(self) -> str:
        """A one-time ticket for a data channel to the attached session's worker: open it
        with :func:`rpyc_ipy.factory.connect_channel` (the notebook client does)."""
        return self.sessions.issue_ticket(self._current())

    @classmethod
    def channel_handler(cls) -> Callable[[Transport, Any], None]:
        """What a server passes as ``channel_handler``: relays each data channel to the
        worker of the session its ticket names (:mod:`rpyc_ipy.remote.relay`)."""
        registry = cls.registry if cls.registry is not None else default_registry()
        allow_plaintext = cls.allow_loopback_plaintext
        cls.channels = True  # clients may now ask for channels (hello says so)

        def handle(transport: Transport, credentials: Any) -> None:
            if credentials is None:
                info = transport.info
                if not allow_plaintext or \
                        not _is_local_peer((info.local_address, info.peer_address)):
                    transport.close()
                    raise AuthenticationError(
                        "data channels need an authenticated connection (or, for a "
                        "loopback demo, a peer on the loopback interface)")
            ticket = read_ticket(transport)
            session = registry.redeem(ticket, user_name(credentials))
            worker = session.start()
            Relay(transport, SocketTransport(worker.open_channel())).start()

        return handle

    def exposed_close_session(self, name: str | None = None) -> bool:
        """End a session of this user (the attached one if ``name`` is None) and its worker."""
        if name is None:
            with self._lock:
                session, self._session = self._session, None
            if session is None:
                return False
            self.sessions.detach(session)
        else:
            matches = [s for s in self.sessions.sessions_of(self._user) if s.name == name]
            if not matches:
                return False
            session = matches[0]
        self.sessions.close_session(session)
        return True


def _forward(name: str) -> Callable[..., Any]:
    def forward(self: ExecutionService, *args: Any) -> Any:
        return self._current().call(name, *args)

    forward.__name__ = forward.__qualname__ = f"exposed_{name}"
    forward.__doc__ = f"The session worker's ``{name}`` (see the engine)."
    return forward


# the engine's methods, forwarded to the attached session's worker (clients that use a
# data channel call the worker directly instead)
for _name in ENGINE_API:
    if f"exposed_{_name}" not in vars(ExecutionService):  # hello is the server's own
        setattr(ExecutionService, f"exposed_{_name}", _forward(_name))


def _is_local_peer(endpoints: Any) -> bool:
    """True for loopback TCP peers, and for transports with no network address."""
    if not endpoints:
        return True  # in-process pair, pipes
    try:
        remote = endpoints[1]
    except (TypeError, IndexError):
        return False
    if isinstance(remote, (str, bytes)):
        return True  # a unix-domain socket path
    try:
        return ipaddress.ip_address(str(remote[0]).split("%", 1)[0]).is_loopback
    except (ValueError, TypeError, IndexError):
        return False
