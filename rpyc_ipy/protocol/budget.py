"""A memory budget for frames: bytes of frame bodies being received or inflated.

Each connection's decoder bounds one frame (``Limits.max_frame_size``); a budget
bounds the sum over every connection that shares it. A decoder reserves a large
body's size from the budget when it reads the frame's header, before it
allocates, reserves inflated bytes before zlib produces them, and gives it all
back once the payload is decoded or dropped. A reservation that does not fit is
refused at once (the decoder then refuses the frame): waiting would park a
reader, and the peers holding the budget could hold it for a whole frame deadline.

A server shares one :class:`FrameBudget` among its clients; a client process
shares :data:`CLIENT_FRAME_BUDGET` among its connections unless given its own.
"""

from __future__ import annotations

import threading
from typing import Protocol

from rpyc_ipy.errors import ConfigError

__all__ = ["CLIENT_FRAME_BUDGET", "DEFAULT_FRAME_BUDGET", "Budget", "FrameBudget"]

MiB = 1 << 20
#: bytes of frames in flight a server (or a client process) holds at most by default:
#: room for three frames of the default 160 MiB ``max_frame_size``
DEFAULT_FRAME_BUDGET = 512 * MiB


class Budget(Protocol):
    """What a decoder needs of a budget."""

    def reserve(self, size: int) -> bool:
        """Take ``size`` bytes if they fit; False (and nothing taken) if not."""

    def release(self, size: int) -> None:
        """Give back ``size`` bytes taken by :meth:`reserve`."""


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

    def reserve(self, size: int) -> bool:
        with self._lock:
            used = self._used + size
            if used > self.limit:
                return False
            self._used = used
            if used > self._peak:
                self._peak = used
            return True

    def release(self, size: int) -> None:
        with self._lock:
            self._used -= size


#: the budget every client connection shares unless its config names another
CLIENT_FRAME_BUDGET = FrameBudget()
