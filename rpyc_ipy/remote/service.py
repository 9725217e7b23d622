"""The execution service: notebook cells run on this side, for an authenticated peer.

It is remote code execution by design, so a server grants it explicitly::

    from rpyc_ipy import ThreadedServer
    from rpyc_ipy.auth import SRPAuthenticator
    from rpyc_ipy.remote import ExecutionService

    ThreadedServer(ExecutionService, hostname="0.0.0.0", port=18861,
                   authenticator=SRPAuthenticator("users.json")).start()

(``rpyc-ipy serve`` offers it with a flag.) Connections without credentials are
refused: every request fails with a :class:`~rpyc_ipy.SecurityError` that says
why, and the connection is closed. For a local demo without authentication,
opt in by name; it still only accepts peers on the loopback interface (or
in-process and unix-socket peers)::

    ThreadedServer(ExecutionService.configured(allow_loopback_plaintext=True), port=0)

Each connection gets its own namespace (set ``shared_namespace`` to serve one
dict to everyone). What the service grants its peer on this connection, in
RPyC policy terms: public attributes, setattr and delattr of the objects it
reaches (it may run any code anyway), pickle only with ``allow_pickle``. The
client sees this in ``%rpyc_policy``.

The exposed methods are thin wrappers over :class:`~rpyc_ipy.remote.engine.Engine`;
see there for the request and reply shapes.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from typing import TYPE_CHECKING, Any, ClassVar

from rpyc_ipy.core.service import Service
from rpyc_ipy.errors import SecurityError, UsageError
from rpyc_ipy.remote.engine import FEATURES, Engine, NamespaceView

if TYPE_CHECKING:
    from rpyc_ipy.core.connection import Connection

__all__ = ["ExecutionService", "NamespaceView"]

log = logging.getLogger("rpyc_ipy.remote")

#: the policy keys the service grants its (authenticated) peer
GRANTS: dict[str, Any] = {
    "allow_public_attrs": True,
    "allow_setattr": True,
    "allow_delattr": True,
}
_OPTIONS = ("allow_loopback_plaintext", "allow_pickle", "capture_fd", "shared_namespace")
class ExecutionService(Service):
    """Runs cells in a per-connection namespace; see the module docstring.

    Options are class attributes; :meth:`configured` makes a subclass with
    some of them changed:

    * ``allow_loopback_plaintext`` (False): accept peers without credentials
      when they are on the loopback interface (local demos only);
    * ``allow_pickle`` (False): let push/pull fall back to pickle when the
      client asks for it too;
    * ``capture_fd`` (True): capture file descriptors 1/2 (C-level output)
      while a cell runs, when the client asks for it;
    * ``shared_namespace`` (None): one dict served to every connection.
    """

    ALIASES = ("EXECUTION",)
    allow_loopback_plaintext: ClassVar[bool] = False
    allow_pickle: ClassVar[bool] = False
    capture_fd: ClassVar[bool] = True
    shared_namespace: ClassVar[dict[str, Any] | None] = None

    def __init__(self) -> None:
        self._engine: Engine | None = None
        self._refusal: str | None = "not connected yet"

    @classmethod
    def configured(cls, **options: Any) -> type[ExecutionService]:
        """A subclass with some options changed (a server builds one instance per client)."""
        unknown = set(options) - set(_OPTIONS)
        if unknown:
            raise UsageError(f"unknown ExecutionService options: {', '.join(sorted(unknown))}")
        for key in ("allow_loopback_plaintext", "allow_pickle", "capture_fd"):
            if key in options and type(options[key]) is not bool:
                raise UsageError(f"{key} must be True or False")
        return type(cls.__name__, (cls,), {"__module__": cls.__module__, **options})

    # -- connection lifecycle ----------------------------------------------------------

    def on_connect(self, conn: Connection) -> None:
        super().on_connect(conn)
        credentials = conn.credentials
        self._refusal = None
        if credentials is None:
            if not self.allow_loopback_plaintext:
                self._refusal = ("this execution service requires an authenticated connection "
                                 "(TLS certificates or SRP username/password); the server may "
                                 "allow unauthenticated loopback demos with "
                                 "ExecutionService.configured(allow_loopback_plaintext=True)")
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
        conn.update_policy(**GRANTS, allow_pickle=self.allow_pickle)
        namespace = self.shared_namespace if self.shared_namespace is not None else {}
        user = credentials if isinstance(credentials, str) else _cert_subject(credentials)
        grants = (*sorted(GRANTS.items()), ("allow_pickle", self.allow_pickle))
        self._engine = Engine(namespace, capture_fd=self.capture_fd,
                              allow_pickle=self.allow_pickle,
                              info={"service": "rpyc_ipy.remote.ExecutionService",
                                    "user": user, "grants": grants})

    def on_disconnect(self, conn: Connection) -> None:
        if self._engine is not None:
            self._engine.shutdown()

    def _rpyc_getattr(self, name: str) -> Any:
        if self._refusal is not None:
            raise SecurityError(self._refusal)
        exposed = name if name.startswith("exposed_") else "exposed_" + name
        if exposed in _EXPOSED:
            return getattr(self, exposed)
        raise AttributeError(f"the execution service has no {name!r}")

    def __dir__(self) -> list[str]:
        return [] if self._refusal is not None else sorted(_EXPOSED)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise SecurityError(self._refusal or "not connected")
        return self._engine

    # -- the exposed surface --------------------------------------------------------------

    def exposed_hello(self, client: Any = None) -> tuple[tuple[str, Any], ...]:
        """Server facts: engine version, features, host, user, grants."""
        return self.engine.hello()

    def exposed_execute(self, code: str, emit: Any = None, options: Any = ()) -> tuple[Any, ...]:
        """Run a cell; output batches go to ``emit(events)`` while it runs."""
        return self.engine.execute(code, emit, options)

    def exposed_start(self, code: str, emit: Any, options: Any = ()) -> str:
        """Run a cell without blocking this request; the outcome comes through ``emit``."""
        return self.engine.start(code, emit, options)

    def exposed_cancel(self, exec_id: str | None = None, force: bool = False) -> str:
        """Stop a running cell (cooperatively, then with KeyboardInterrupt, then abandon)."""
        return self.engine.cancel(exec_id, force)

    def exposed_complete(self, code: str, cursor_pos: int | None = None, limit: int = 1000
                         ) -> tuple[Any, ...]:
        """Completions against the session namespace, in one request."""
        return self.engine.complete(code, cursor_pos, limit)

    def exposed_inspect(self, code: str, cursor_pos: int | None = None, detail_level: int = 0
                        ) -> tuple[Any, ...]:
        """``?`` info for the name at the cursor."""
        return self.engine.inspect(code, cursor_pos, detail_level)

    def exposed_inspect_object(self, obj: Any, oname: str = "", detail_level: int = 0
                               ) -> tuple[Any, ...]:
        """``?`` info for an object the client holds a netref to."""
        return self.engine.inspect_object(obj, oname, detail_level)

    def exposed_describe(self, paths: tuple[str, ...], max_items: int = 50,
                         private: bool = False, root: Any = None) -> tuple[Any, ...]:
        """Bounded summaries for browsing, one per path, in one request."""
        return self.engine.describe(paths, max_items, private, root)

    def exposed_repr_text(self, obj: Any, max_chars: int = 10_000) -> str:
        """An object's ``repr``, cut on this side."""
        return self.engine.repr_text(obj, max_chars)

    def exposed_mimebundle(self, obj: Any, include: tuple[str, ...] | None = None,
                           max_bytes: int = 8 << 20) -> tuple[Any, ...]:
        """The display bundle of an object, by value."""
        return self.engine.mimebundle(obj, include, max_bytes)

    def exposed_push(self, items: tuple[tuple[str, Any], ...], allow_pickle: bool = False
                     ) -> tuple[str, ...]:
        """Bind packed values in the namespace."""
        return self.engine.push(items, allow_pickle)

    def exposed_pull(self, names: tuple[str, ...], allow_pickle: bool = False,
                     max_bytes: int = 64 << 20) -> tuple[Any, ...]:
        """Packed values of namespace entries."""
        return self.engine.pull(names, allow_pickle, max_bytes)

    def exposed_namespace(self) -> NamespaceView:
        """The namespace as an object (a netref on the client: ``sess.ns``)."""
        return self.engine.namespace_view()

    def exposed_running(self) -> tuple[str, ...]:
        """Ids of the cells still running."""
        return self.engine.running()


_EXPOSED = frozenset(name for name in vars(ExecutionService) if name.startswith("exposed_")) | {
    "exposed_get_service_name", "exposed_get_service_aliases"}
assert {f"exposed_{f}" for f in ("execute", "start", "cancel", "complete", "inspect",
                                 "describe", "push", "pull", "mimebundle")} <= _EXPOSED
assert set(FEATURES) >= {"execute", "cancel"}


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


def _cert_subject(credentials: Any) -> str | None:
    """The common name of a TLS peer certificate dict, if there is one."""
    if not isinstance(credentials, dict):
        return None
    for rdn in credentials.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return "certificate"
