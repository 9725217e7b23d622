"""The result of a request whose reply has not necessarily arrived yet.

``conn.async_request(...)``, :func:`rpyc_ipy.async_` and :func:`rpyc_ipy.timed`
return an :class:`AsyncResult`; read ``.value`` (waits, then returns or raises),
or poll ``.ready``, or register ``add_callback``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rpyc_ipy.errors import AsyncResultTimeout, UsageError

if TYPE_CHECKING:
    from rpyc_ipy.core.connection import Connection

__all__ = ["AsyncResult"]


class AsyncResult:
    """One pending request: filled by the connection's reader, read by anyone."""

    __slots__ = ("_callbacks", "_conn", "_deadline", "_error", "_value", "ready", "seq", "wake")

    def __init__(self, conn: Connection | None, seq: int = -1) -> None:
        self._conn = conn
        self.seq = seq
        #: True once the reply (or failure) has arrived; read it, never set it (a plain
        #: attribute, not a property: a waiting reader looks at it after every frame)
        self.ready = False
        self._error = False
        self._value: Any = None
        self._callbacks: list[Callable[[AsyncResult], Any]] = []
        self._deadline: float | None = None
        #: a locked lock the waiting thread blocks on; the reader releases it
        self.wake: threading.Lock | None = None

    def __repr__(self) -> str:
        state = "ready" if self.ready else ("expired" if self.expired else "pending")
        return f"<AsyncResult seq={self.seq} {state}>"

    def resolve(self, is_error: bool, value: Any) -> None:
        """Set the outcome: called once, by the connection, when the reply or the
        failure is known (not for users: a result resolved twice breaks waiting)."""
        self._value = value
        self._error = is_error
        self.ready = True
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:  # a callback must not break the reader
                pass

    @property
    def error(self) -> bool:
        """True if the request failed (valid only once ``ready``)."""
        return self.ready and self._error

    @property
    def exception(self) -> BaseException | None:
        """The failure, without raising it; ``None`` unless ``ready`` and ``error``."""
        return self._value if self.ready and self._error else None

    @property
    def expired(self) -> bool:
        """True if an expiry was set and it passed before the reply arrived."""
        return not self.ready and self._deadline is not None and time.monotonic() > self._deadline

    def set_expiry(self, timeout: float | None) -> None:
        """Give up waiting ``timeout`` seconds from now (``None``: never)."""
        self._deadline = None if timeout is None else time.monotonic() + timeout

    def add_callback(self, func: Callable[[AsyncResult], Any]) -> None:
        """Call ``func(self)`` when the result arrives (at once if it already has)."""
        if self.ready:
            func(self)
        else:
            self._callbacks.append(func)

    def wait(self, timeout: float | None = None) -> None:
        """Block until the result arrives; ``AsyncResultTimeout`` if the expiry passes."""
        deadline = self._deadline
        if timeout is not None:
            local = time.monotonic() + timeout
            deadline = local if deadline is None else min(deadline, local)
        if not self.ready:
            if self._conn is None:
                raise AsyncResultTimeout("result was never sent")
            self._conn.wait_for(self, deadline)

    @property
    def value(self) -> Any:
        """The reply's value; raises the remote exception if the request failed."""
        self.wait()
        return self.unwrap()

    def unwrap(self) -> Any:
        """The value of a ``ready`` result, or raise its failure (no waiting)."""
        if not self.ready:
            raise UsageError("the result has not arrived yet: wait() for it or read .value")
        if self._error:
            raise self._value
        return self._value
