"""The transport contract: what a connection needs from its byte pipe.

A transport is a reliable byte pipe with four verbs (see :class:`Transport`).
Anything that has them works: TCP and unix sockets, TLS and TLS-SRP sockets,
pipes, and the in-memory pair used by most tests. Frames are read from it by
:class:`~rpyc_ipy.core.frame_reader.FrameReader`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["DEFAULT_BUSY_POLL_WINDOW", "Transport"]

#: the longest a socket reader polls for data before sleeping (seconds; the
#: ``busy_poll_window`` config key, see transports/spin.py); 0 turns polling off
DEFAULT_BUSY_POLL_WINDOW = 200e-6


@runtime_checkable
class Transport(Protocol):
    """What a connection needs from its byte pipe.

    ``recv_into`` returns 0 at end of stream and raises ``TimeoutError`` when
    nothing arrived within the poll interval (the reader then checks its
    deadlines and calls again). ``send_parts`` writes all parts, in order, as
    one contiguous piece of the stream.
    """

    def recv_into(self, buffer: memoryview) -> int: ...

    def send_parts(self, parts: list[bytes]) -> None: ...

    def close(self) -> None: ...

    @property
    def closed(self) -> bool: ...
