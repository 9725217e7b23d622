"""A memory budget for frames: bytes of frame bodies being received or inflated.

Each connection's decoder bounds one frame (``Limits.max_frame_size``); a
:class:`FrameBudget` bounds the sum over every connection that shares it. Each
connection takes a :meth:`FrameBudget.share` and its decoder reserves from it
(see :mod:`rpyc_ipy.protocol.budget`). A reservation that does not fit is
refused at once, and so is the frame: waiting would park a reader, and the
peers holding the budget could hold it for a whole frame deadline.

A server shares one budget among its clients; a client process shares
:data:`CLIENT_FRAME_BUDGET` among its connections unless given another.
"""

from __future__ import annotations

import threading

from rpyc_ipy.errors import ConfigError

__all__ = ["CLIENT_FRAME_BUDGET", "DEFAULT_FRAME_BUDGET", "BudgetShare", "FrameBudget"]

MiB = 1 << 20
#: bytes of frames in flight a server (or a client process) holds at most by default:
#: room for three frames of the default 160 MiB ``max_frame_size``
DEFAULT_FRAME_BUDGET = 512 * MiB


class FrameBudget:
    """A thread-safe count of reserved bytes, never above ``limit``."""

    def __init__(self, limit: int = DEFAULT_FRAME_BUDGET) -> None:
        if type(limit) is not int or limit <= 0:
            raise ConfigError(f"a frame budget must be a positive int of bytes, not {limit!r}")
        self.limit = limit
        self._used = 0
        self._peak = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<FrameBudget {self._used}/{self.limit} bytes in use>"

    @property
    def used(self) -> int:
        """Bytes reserved now."""
        return self._used

    @property
    def peak(self) -> int:
        """The most bytes ever reserved at once."""
        return self._peak

    def share(self) -> BudgetShare:
        """A connection's share: what it takes counts here, and its close gives it all back."""
        return BudgetShare(self)

    def _take(self, size: int) -> bool:  # lock held
        used = self._used + size
        if used > self.limit:
            return False
        self._used = used
        if used > self._peak:
            self._peak = used
        return True


class BudgetShare:
    """The bytes one connection holds of a :class:`FrameBudget` (a
    :class:`rpyc_ipy.protocol.budget.Budget`); thread safe."""

    def __init__(self, budget: FrameBudget) -> None:
        self._budget = budget
        self._held = 0
        self._closed = False

    @property
    def held(self) -> int:
        return self._held

    def reserve(self, size: int) -> bool:
        budget = self._budget
        with budget._lock:
            if self._closed or not budget._take(size):
                return False
            self._held += size
            return True

    def release(self, size: int) -> None:
        budget = self._budget
        with budget._lock:
            size = min(size, self._held)
            self._held -= size
            budget._used -= size

    def close(self) -> None:
        budget = self._budget
        with budget._lock:
            self._closed = True
            budget._used -= self._held
            self._held = 0


#: the budget every client connection shares unless its config names another
CLIENT_FRAME_BUDGET = FrameBudget()
