"""What a frame decoder needs of a memory budget (the budget itself is
:class:`rpyc_ipy.core.budget.FrameBudget`).

A decoder reserves a large body's size when it reads the frame's header, before
it allocates, reserves inflated bytes before zlib produces them, and gives them
back once the payload is decoded or dropped. A reservation that does not fit is
refused (the decoder then refuses the frame).
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Budget"]


class Budget(Protocol):
    """One connection's share of a memory budget; safe to call from any thread."""

    def reserve(self, size: int) -> bool:
        """Take ``size`` bytes if they fit; False (and nothing taken) if not, or if closed."""

    def release(self, size: int) -> None:
        """Give back up to ``size`` of the bytes this share took."""

    def close(self) -> None:
        """Give back everything this share holds, and take nothing more."""
