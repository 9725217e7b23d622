"""The buffered frame reader: whole frames out of a transport with as few reads as possible.

Small frames come out of one 64 KiB buffer (often several per read), a large body
is received straight into a preallocated buffer of its exact size.
"""

from __future__ import annotations

import mmap
import time

from rpyc_ipy.core.transport import Transport
from rpyc_ipy.errors import ConnectionClosed, LimitExceeded
from rpyc_ipy.protocol.framing import HEADER_SIZE, decode_body, parse_header
from rpyc_ipy.protocol.limits import DEFAULT_LIMITS, Limits

__all__ = ["FrameReader"]

_BUFFER_SIZE = 1 << 16


class FrameReader:
    """Reads one payload at a time from a transport; not thread safe (one reader).

    ``frame_deadline`` bounds how long a frame may take once its first byte has
    arrived, so a peer cannot hold a connection with a half-sent frame.
    """

    def __init__(self, transport: Transport, limits: Limits = DEFAULT_LIMITS,
                 frame_deadline: float | None = 60.0) -> None:
        self._transport = transport
        self._limits = limits
        self._frame_deadline = frame_deadline
        self._buffer = bytearray(_BUFFER_SIZE)
        self._view = memoryview(self._buffer)
        self._start = 0
        self._end = 0
        self._frame_started: float | None = None
        self._big: mmap.mmap | None = None  # a large frame's body, as it arrives
        self._big_filled = 0
        self._big_compressed = False
        self.frames_read = 0
        #: monotonic time by which the first frame must have arrived (servers set it)
        self.first_frame_by: float | None = None
        self._recv = transport.recv_into
        self._recv_nowait = transport.recv_nowait if transport.supports_nowait else None

    @property
    def in_frame(self) -> bool:
        return self._frame_started is not None

    def _fill(self) -> None:
        """One read into the free tail of the buffer (compacting it first)."""
        if self._start:
            pending = self._end - self._start
            self._buffer[:pending] = self._buffer[self._start:self._end]
            self._start, self._end = 0, pending
        received = self._recv(self._view[self._end:])
        if not received:
            raise ConnectionClosed("the peer closed the connection")
        if self._frame_started is None:
            self._frame_started = time.monotonic()
        self._end += received
        self.check_stall()  # here too: a peer dripping bytes never lets a read time out

    @property
    def can_read_available(self) -> bool:
        """True if the transport offers the non-waiting read :meth:`read_available` needs."""
        return self._recv_nowait is not None

    def has_frame(self) -> bool:
        """True if a whole frame is already buffered (no read needed to get it)."""
        pending = self._end - self._start
        if self._big is not None or pending < HEADER_SIZE:
            return False
        start = self._start
        try:
            length, _ = parse_header(self._view[start:start + HEADER_SIZE], self._limits)
        except LimitExceeded:
            return True  # reading it is what reports the error
        return pending >= HEADER_SIZE + length + 1

    def read_available(self) -> bytes | bytearray | memoryview:
        """The next payload, if what the transport has now completes one; raises
        ``TimeoutError`` otherwise without waiting (nothing is lost: call again
        when more has arrived). Needs a transport with ``recv_nowait``."""
        assert self._recv_nowait is not None
        self._recv = self._recv_nowait
        try:
            return self.read_payload()
        finally:
            self._recv = self._transport.recv_into

    def stall_deadline(self) -> float | None:
        """When the frame now arriving must be complete (``time.monotonic``), or None."""
        if self._frame_started is None or self._frame_deadline is None:
            return None
        return self._frame_started + self._frame_deadline

    def check_stall(self) -> None:
        """Raise ``LimitExceeded`` if a frame, or the first frame, is overdue."""
        if self._frame_started is None:
            return
        now = time.monotonic()
        if self._frame_deadline is not None and now - self._frame_started > self._frame_deadline:
            raise LimitExceeded(
                f"a frame started arriving but was not complete within {self._frame_deadline} s"
            )
        if self.frames_read == 0 and self.first_frame_by is not None and now > self.first_frame_by:
            raise LimitExceeded("the first frame did not arrive in time")

    def read_payload(self) -> bytes | bytearray | memoryview:
        """The next non-empty payload; raises ``TimeoutError`` between frames or
        while a frame is still arriving (call again), ``ConnectionClosed`` at EOF.
        """
        while True:
            try:
                payload = self._read_one()
            except TimeoutError:
                self.check_stall()
                raise
            if len(payload):
                return payload

    def _read_one(self) -> bytes | bytearray | memoryview:
        if self._big is not None:
            return self._continue_big()
        if self._start == self._end:
            self._frame_started = None
        while self._end - self._start < HEADER_SIZE:
            self._fill()
        start = self._start
        length, compressed = parse_header(self._view[start:start + HEADER_SIZE], self._limits)
        total = HEADER_SIZE + length + 1
        if total > _BUFFER_SIZE:
            # a large body goes into an anonymous mapping of its declared size: the
            # kernel hands out zeroed pages only as bytes arrive, so the header alone
            # costs no memory and the body is received in place, with no copy
            have = min(self._end - start - HEADER_SIZE, length + 1)
            body = mmap.mmap(-1, length + 1)
            body[:have] = self._view[start + HEADER_SIZE:start + HEADER_SIZE + have]
            self._start = start + HEADER_SIZE + have
            self._big, self._big_filled, self._big_compressed = body, have, compressed
            return self._continue_big()
        while self._end - self._start < total:
            self._fill()
        start = self._start
        body_bytes = bytes(self._view[start + HEADER_SIZE:start + HEADER_SIZE + length])
        self._start = start + total
        self._frame_started = None if self._start == self._end else time.monotonic()
        self.frames_read += 1
        return decode_body(body_bytes, compressed, self._limits)

    def _continue_big(self) -> bytes | bytearray | memoryview:
        body = self._big
        assert body is not None
        size = len(body)
        with memoryview(body) as view:
            while self._big_filled < size:
                received = self._recv(view[self._big_filled:])
                if not received:
                    raise ConnectionClosed(
                        "the peer closed the connection in the middle of a frame")
                self._big_filled += received
                self.check_stall()
        self._big = None
        self._frame_started = None
        self.frames_read += 1
        return decode_body(memoryview(body)[: size - 1], self._big_compressed, self._limits)
