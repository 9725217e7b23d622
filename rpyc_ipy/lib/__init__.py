"""RPyC's ``rpyc.lib``: small helpers RPyC code imports (logging set-up, threads,
optional imports, id packs).

::

    from rpyc_ipy.lib import setup_logger, spawn
    log = setup_logger(quiet=True)
    thread = spawn(work, 1, 2)
"""

from __future__ import annotations

import inspect
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from rpyc_ipy.core.async_result import AsyncResult
from rpyc_ipy.core.helpers import spawn as _spawn
from rpyc_ipy.core.netref import BaseNetref, class_methods
from rpyc_ipy.protocol.objects import IdPack, id_pack_of

__all__ = [
    "SPAWN_THREAD_PREFIX",
    "MissingModule",
    "Timeout",
    "asyncreq",
    "get_id_pack",
    "get_methods",
    "hasattr_static",
    "hybridmethod",
    "maxint",
    "safe_import",
    "setup_logger",
    "spawn",
    "spawn_waitready",
    "syncreq",
]

SPAWN_THREAD_PREFIX = "rpyc_ipy-spawn"
maxint = sys.maxsize
T = TypeVar("T")


class MissingModule:
    """Stands for a module that could not be imported: false, and any attribute
    raises ``ImportError`` naming it."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):  # copy, pickle and friends probe dunders
            raise AttributeError(f"module {self._name!r} not found")
        raise ImportError(f"module {self._name!r} not found: install it to use this feature")

    def __bool__(self) -> bool:
        return False


def safe_import(name: str) -> Any:
    """The module ``name``, or a :class:`MissingModule` when it cannot be imported."""
    try:
        return __import__(name, None, None, ["*"])
    except ImportError:
        return MissingModule(name)


def setup_logger(quiet: bool = False, logfile: str | None = None,
                 namespace: str | None = None) -> logging.Logger:
    """Configure the root logger (errors only when ``quiet``, else everything, to
    ``logfile`` or stderr) and return the ``rpyc_ipy[.namespace]`` logger."""
    if quiet:
        options: dict[str, Any] = {"level": logging.ERROR,
                                   "format": "%(asctime)s %(levelname)s: %(message)s"}
    else:
        options = {"level": logging.DEBUG,
                   "format": "%(asctime)s %(levelname)s %(name)s[%(threadName)s]: %(message)s"}
    if logfile:
        options["filename"] = logfile
    logging.basicConfig(datefmt="%b %d %H:%M:%S", **options)
    return logging.getLogger("rpyc_ipy" if namespace is None else f"rpyc_ipy.{namespace}")


class hybridmethod(Generic[T]):
    """A method that receives the class when called on the class and the instance
    when called on an instance."""

    def __init__(self, func: Callable[..., T]) -> None:
        self.func = func

    def __get__(self, obj: Any, cls: type) -> Callable[..., T]:
        bound: Callable[..., T] = self.func.__get__(cls if obj is None else obj, obj)
        return bound

    def __set__(self, obj: Any, value: Any) -> None:
        raise AttributeError("cannot overwrite a hybridmethod")


def hasattr_static(obj: Any, attr: str) -> bool:
    """Whether ``attr`` exists on ``obj`` without running descriptors or ``__getattr__``."""
    try:
        inspect.getattr_static(obj, attr)
    except AttributeError:
        return False
    return True


def spawn(func: Callable[..., Any], *args: Any, **kwargs: Any) -> threading.Thread:
    """Start ``func(*args, **kwargs)`` in a daemon thread and return the thread."""
    return _spawn(func, *args, **kwargs)


def spawn_waitready(init: Callable[[], T], main: Callable[[], Any]
                    ) -> tuple[threading.Thread, T]:
    """Start a thread that runs ``init()`` then ``main()``; return ``(thread, init())``
    once ``init`` has finished (its exception is raised here)."""
    ready = threading.Event()
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(init())
        except BaseException as exc:  # raised in the caller, not in this thread
            outcome.append(exc)
            ready.set()
            return
        ready.set()
        main()

    thread = _spawn(run)
    ready.wait()
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return thread, outcome[0]


class Timeout:
    """A deadline: ``Timeout(None)`` (or a negative number) never expires.

    ``expired()``, ``timeleft()`` (``None`` when infinite) and ``sleep(interval)``
    (never past the deadline)."""

    finite: bool
    tmax: float | None

    def __init__(self, timeout: float | Timeout | None) -> None:
        if isinstance(timeout, Timeout):
            self.finite, self.tmax = timeout.finite, timeout.tmax
        else:
            self.finite = timeout is not None and timeout >= 0
            self.tmax = time.monotonic() + timeout if timeout is not None and self.finite \
                else None

    def expired(self) -> bool:
        return self.tmax is not None and time.monotonic() >= self.tmax

    def timeleft(self) -> float | None:
        return None if self.tmax is None else max(0.0, self.tmax - time.monotonic())

    def sleep(self, interval: float) -> None:
        left = self.timeleft()
        time.sleep(interval if left is None else min(interval, left))


def get_id_pack(obj: Any) -> IdPack:
    """``(name_pack, class id, object id)``: how RPyC names an object on the wire
    (a netref gives its remote object's id pack)."""
    if isinstance(obj, BaseNetref):
        id_pack: IdPack = object.__getattribute__(obj, "____id_pack__")
        return id_pack
    return id_pack_of(obj)


def get_methods(obj_attrs: Iterable[str], obj: Any) -> list[tuple[str, str | None]]:
    """``(name, docstring)`` of the methods of ``obj`` (an instance or a class, its
    metaclass included), up its MRO, leaving out the names in ``obj_attrs``."""
    excluded = set(obj_attrs)
    is_class = isinstance(obj, type)
    methods = class_methods(obj if is_class else type(obj), for_class=is_class)
    return [(name, doc) for name, doc in methods if name not in excluded]


def syncreq(proxy: BaseNetref, handler: int, *args: Any) -> Any:
    """Send the request ``handler`` (a ``consts.HANDLE_*``) about ``proxy`` and return
    the reply."""
    return object.__getattribute__(proxy, "____conn__").sync_request(handler, proxy, *args)


def asyncreq(proxy: BaseNetref, handler: int, *args: Any) -> AsyncResult:
    """Like :func:`syncreq`, but return an :class:`AsyncResult` at once."""
    result: AsyncResult = object.__getattribute__(proxy, "____conn__").async_request(
        handler, proxy, *args)
    return result
