"""RPyC's helpers on netrefs: async calls, timed calls, buffered iteration, background serving.

::

    slow = rpyc_ipy.async_(conn.root.compute)
    result = slow(42)            # returns at once
    result.value                 # waits for the reply

    for row in rpyc_ipy.buffiter(conn.root.rows()):   # 10, 20, 40 ... items per request
        ...

    bg = rpyc_ipy.BgServingThread(conn)   # serve the peer's callbacks while idle
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from rpyc_ipy.core.async_result import AsyncResult
from rpyc_ipy.core.connection import Connection
from rpyc_ipy.core.netref import BaseNetref, RemoteMethod, method_target
from rpyc_ipy.errors import UsageError
from rpyc_ipy.protocol import consts

__all__ = ["BgServingThread", "async_", "buffiter", "spawn", "timed"]

_object_get = object.__getattribute__


class _Async:
    """Calling it sends the call and returns an :class:`AsyncResult` at once."""

    __slots__ = ("__weakref__", "_method", "_target")

    def __init__(self, target: BaseNetref | RemoteMethod) -> None:
        self._target = target
        # a remote method is one CALLATTR on its owner: look the pair up once
        self._method = method_target(target) if isinstance(target, RemoteMethod) else None

    def __call__(self, *args: Any, **kwargs: Any) -> AsyncResult:
        method = self._method
        if method is not None:
            owner, name = method
            conn: Connection = _object_get(owner, "____conn__")
            return conn.async_request(consts.HANDLE_CALLATTR, owner, name, args,
                                      tuple(kwargs.items()))
        target = self._target
        conn = _object_get(target, "____conn__")
        return conn.async_request(consts.HANDLE_CALL, target, args, tuple(kwargs.items()))

    def __repr__(self) -> str:
        return f"async_({self._target!r})"


def async_(proxy: Any) -> _Async:
    """An asynchronous version of a callable netref."""
    if isinstance(proxy, _Async):
        return proxy
    if not isinstance(proxy, (BaseNetref, RemoteMethod)):
        raise TypeError("async_ needs a netref (a remote callable)")
    return _Async(proxy)


class _Timed:
    __slots__ = ("_async", "_timeout")

    def __init__(self, proxy: Any, timeout: float) -> None:
        self._async = async_(proxy)
        self._timeout = timeout

    def __call__(self, *args: Any, **kwargs: Any) -> AsyncResult:
        result = self._async(*args, **kwargs)
        result.set_expiry(self._timeout)
        return result

    def __repr__(self) -> str:
        return f"timed({self._async._target!r}, {self._timeout})"


def timed(proxy: Any, timeout: float) -> _Timed:
    """Like :func:`async_`, and the result expires after ``timeout`` seconds."""
    return _Timed(proxy, timeout)


def buffiter(obj: Any, chunk: int = 10, max_chunk: int = 1000, factor: int = 2) -> Iterator[Any]:
    """Iterate a remote iterable fetching items in growing batches (one request each)."""
    if factor < 1:
        raise UsageError(f"factor must be >= 1, got {factor!r}")
    iterator = iter(obj)
    if not isinstance(iterator, BaseNetref):
        yield from iterator
        return
    conn: Connection = _object_get(iterator, "____conn__")
    count = chunk
    while True:
        items = conn.sync_request(consts.HANDLE_BUFFITER, iterator, count)
        if not items:
            return
        yield from items
        count = min(count * factor, max_chunk)


def spawn(func: Callable[..., Any], *args: Any, **kwargs: Any) -> threading.Thread:
    """Start ``func`` in a daemon thread and return the thread."""
    thread = threading.Thread(target=func, args=args, kwargs=kwargs, daemon=True)
    thread.start()
    return thread


class BgServingThread:
    """Keeps a reader on ``conn`` while no call is waiting, so the peer's callbacks
    and requests are served even when this side is idle. ``stop()`` when done."""

    def __init__(self, conn: Connection, callback: Callable[[], Any] | None = None) -> None:
        self._conn = conn
        self._callback = callback
        conn.start_serving()
        self._active = True

    def stop(self) -> None:
        """Stop serving in the background (the connection stays open)."""
        if not self._active:
            return
        self._active = False
        self._conn.stop_serving()
        if self._callback is not None:
            self._callback()
