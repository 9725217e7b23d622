"""Services: the root object one side hands the other.

Subclass :class:`Service` and prefix what the peer may use with ``exposed_``
(or decorate it with :func:`exposed` inside a :func:`service` class)::

    class CalculatorService(rpyc_ipy.Service):
        def exposed_add(self, a, b):
            return a + b

Serve it with a server from :mod:`rpyc_ipy.servers`, or pass it to ``connect``
to expose it to the server. Each connection gets its own instance when you
pass the class.

:class:`SlaveService`/:class:`ClassicService` are classic mode: they give the
peer the whole interpreter (import, eval, exec) and are never a default.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from rpyc_ipy.core.teleport import teleport_function
from rpyc_ipy.errors import SecurityError, UsageError

if TYPE_CHECKING:
    from rpyc_ipy.core.connection import Connection

__all__ = [
    "ClassicClient",
    "ClassicService",
    "FakeSlaveService",
    "MasterService",
    "ModuleNamespace",
    "Service",
    "SlaveService",
    "VoidService",
    "exposed",
    "restricted",
    "service",
]

T = TypeVar("T")


# -- decorators -----------------------------------------------------------------


def exposed(arg: Any) -> Any:
    """Mark a member as exposed; ``@exposed("prefix_")`` picks another prefix.

    Takes effect when the class is decorated with :func:`service` (it then gets
    the prefixed alias) or subclasses :class:`Service` (done automatically).
    """
    if isinstance(arg, str):
        prefix = arg

        def mark(obj: T) -> T:
            obj.__exposed__ = prefix  # type: ignore[attr-defined]
            return obj
        return mark
    if callable(arg) or hasattr(arg, "__get__"):
        arg.__exposed__ = "exposed_"
        return arg
    raise TypeError("exposed expects a callable, a descriptor or a prefix string")


def service(cls: type[T]) -> type[T]:
    """Class decorator: give every :func:`exposed` member its prefixed alias."""
    for name, value in list(vars(cls).items()):
        target = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
        prefix = getattr(target, "__exposed__", None)
        if not prefix or not isinstance(prefix, str) or inspect.iscode(target):
            continue
        if inspect.isclass(value):
            service(value)
        setattr(cls, prefix + name, value)
    return cls



class Service:
    """Base of services: exposes ``exposed_*`` members, never lets the peer set or
    delete attributes on the service object itself.

    Override :meth:`on_connect` / :meth:`on_disconnect` for setup and cleanup;
    ``self._conn`` is the connection once connected.
    """

    ALIASES: tuple[str, ...] | list[str] = ()
    _conn: Connection | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        service(cls)  # subclasses get their @exposed aliases without @service

    def on_connect(self, conn: Connection) -> None:
        """Called when a connection is built, before it serves anything."""
        self._conn = conn

    def on_disconnect(self, conn: Connection) -> None:
        """Called after the connection closed; do no I/O on it here."""

    def _rpyc_setattr(self, name: str, value: Any) -> None:
        raise SecurityError("access denied: a service cannot be modified remotely")

    def _rpyc_delattr(self, name: str) -> None:
        raise SecurityError("access denied: a service cannot be modified remotely")

    @classmethod
    def get_service_aliases(cls) -> tuple[str, ...]:
        """The names of this service: ``ALIASES`` upper-cased, or the class name
        upper-cased without a trailing ``SERVICE``."""
        if cls.ALIASES:
            return tuple(str(alias).upper() for alias in cls.ALIASES)
        name = cls.__name__.upper()
        if name.endswith("SERVICE"):
            name = name[: -len("SERVICE")]
        return (name,)

    @classmethod
    def get_service_name(cls) -> str:
        """The first alias."""
        return cls.get_service_aliases()[0]

    exposed_get_service_aliases = get_service_aliases
    exposed_get_service_name = get_service_name

    @property
    def credentials(self) -> Any:
        """What the server's authenticator returned for the connected peer."""
        return None if self._conn is None else self._conn.credentials


class VoidService(Service):
    """Exposes nothing but its name."""


class ModuleNamespace:
    """``conn.modules``: ``conn.modules.os`` or ``conn.modules["os.path"]`` imports
    the module on the peer (one request per name, cached)."""

    __slots__ = ("__cache", "__getmodule")

    def __init__(self, getmodule: Callable[[str], Any]) -> None:
        self.__getmodule = getmodule
        self.__cache: dict[str, Any] = {}

    def __contains__(self, name: str) -> bool:
        try:
            self[name]
        except ImportError:
            return False
        return True

    def __getitem__(self, name: str | tuple[str, ...]) -> Any:
        if isinstance(name, tuple):
            name = ".".join(name)
        if name not in self.__cache:
            self.__cache[name] = self.__getmodule(name)
        return self.__cache[name]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self[name]


class Slave:
    """The classic-mode surface: import, eval and exec on this side, for the peer."""

    _conn: Connection | None = None

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {}

    def execute(self, text: str) -> None:
        """Run ``text`` with ``exec`` in :attr:`namespace`."""
        exec(text, self.namespace)

    def eval(self, text: str) -> Any:
        """Evaluate ``text`` in :attr:`namespace`."""
        return eval(text, self.namespace)

    def getmodule(self, name: str | tuple[str, ...]) -> Any:
        """Import and return a module (a tuple name is joined with dots)."""
        if isinstance(name, tuple):
            name = ".".join(name)
        return importlib.import_module(name)

    def getconn(self) -> Connection | None:
        """This side's connection object."""
        return self._conn


class SlaveService(Slave, Service):
    """Classic mode, server side: the peer gets full control of this process.

    Only for trusted peers on trusted networks. It grants every attribute,
    setattr/delattr, pickling, and rebuilding (importing) custom exceptions.
    """

    def __init__(self) -> None:
        Slave.__init__(self)

    def on_connect(self, conn: Connection) -> None:
        self._conn = conn
        conn.enable_classic()
        super().on_connect(conn)


class FakeSlaveService(VoidService):
    """Answers a classic peer's bootstrap with ``None`` and grants nothing."""

    exposed_namespace = None
    exposed_execute = None
    exposed_eval = None
    exposed_getmodule = None
    exposed_getconn = None


class MasterService(Service):
    """Uses the peer's classic surface: installs ``conn.modules``, ``conn.eval``,
    ``conn.execute``, ``conn.namespace``, ``conn.builtins`` lazily."""

    def on_connect(self, conn: Connection) -> None:
        super().on_connect(conn)
        install_classic_surface(conn)


class ClassicService(MasterService, SlaveService):
    """Classic mode both ways: each side has full control of the other."""


class ClassicClient(MasterService, FakeSlaveService):
    """A classic client that exposes nothing to the server."""


class ClassicSurface:
    """RPyC's classic attributes of a connection (``conn.modules``, ``conn.eval``, ...),
    each fetched from the peer's root on first use."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._cache: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        if name not in self._cache:
            root = self._conn.root
            if name == "modules":
                value: Any = ModuleNamespace(root.getmodule)
            elif name in ("builtins", "builtin"):
                value = self.get("modules").builtins
            elif name == "teleport":
                value = functools.partial(teleport_function, self._conn)
            else:
                value = getattr(root, name)
            self._cache[name] = value
        return self._cache[name]


def install_classic_surface(conn: Connection) -> None:
    """Give ``conn`` RPyC's classic attributes, each fetched on first use."""
    conn.set_classic_surface(ClassicSurface(conn))


def restricted(obj: Any, attrs: Iterable[str], wattrs: Iterable[str] | None = None) -> Any:
    """A view of ``obj`` that lets the peer read only ``attrs`` and write only ``wattrs``
    (default: ``attrs``; pass ``()`` to forbid writes)."""
    readable = frozenset(attrs)
    writable = readable if wattrs is None else frozenset(wattrs)
    if not all(isinstance(name, str) for name in readable | writable):
        raise UsageError("restricted() takes attribute names as str")

    class Restricted:
        __slots__ = ()

        def _rpyc_getattr(self, name: str) -> Any:
            if name not in readable:
                raise SecurityError(f"cannot access {name!r}")
            return getattr(obj, name)

        def _rpyc_setattr(self, name: str, value: Any) -> None:
            if name not in writable:
                raise SecurityError(f"cannot set {name!r}")
            setattr(obj, name, value)

        def _rpyc_delattr(self, name: str) -> None:
            raise SecurityError(f"cannot delete {name!r}")

        def __getattr__(self, name: str) -> Any:
            return self._rpyc_getattr(name)

        def __repr__(self) -> str:
            return f"<restricted view of {type(obj).__name__}: {sorted(readable)}>"

    return Restricted()
