"""The frame reader: the I/O loop that feeds a transport's bytes to the sans-I/O engine.

Reads land straight in the engine's receive buffer (``recv_into``): small frames
share one buffer (4 KiB to 64 KiB, dropped whenever a read finds nothing between
frames, so an idle connection holds none), often several per read, and a large body is received
in place into a buffer of its exact size (see
:class:`~rpyc_ipy.protocol.framing.FrameDecoder`). What stays here is what needs
a clock: the frame and first-frame deadlines.
"""

from __future__ import annotations

import time

from rpyc_ipy.core.transport import Transport
from rpyc_ipy.errors import ConnectionClosed, LimitExceeded
from rpyc_ipy.protocol.engine import Engine, Event

__all__ = ["FrameReader"]


class FrameReader:
    """Reads one event at a time from a transport; not thread safe (one reader).

    ``frame_deadline`` bounds how long a frame may take once its first byte has
    arrived, so a peer cannot hold a connection with a half-sent frame.
    """

    def __init__(self, transport: Transport, engine: Engine,
                 frame_deadline: float | None = 60.0) -> None:
        self._transport = transport
        self._engine = engine
        self._frame_deadline = frame_deadline
        self._frame_started: float | None = None
        self.frames_read = 0
        #: monotonic time by which the first frame must have arrived (servers set it)
        self.first_frame_by: float | None = None
        self._recv = transport.recv_into
        self._recv_nowait = transport.recv_nowait if transport.supports_nowait else None

    @property
    def in_frame(self) -> bool:
        return self._frame_started is not None

    @property
    def buffer_capacity(self) -> int:
        """Bytes of receive buffer held now; 0 between frames once a read found nothing."""
        return self._engine.buffer_capacity

    @property
    def can_read_available(self) -> bool:
        """True if the transport offers the non-waiting read :meth:`read_available` needs."""
        return self._recv_nowait is not None

    def read_available(self) -> Event:
        """The next event, if what the transport has now completes one; raises
        ``TimeoutError`` otherwise without waiting (nothing is lost: call again
        when more has arrived). Needs a transport with ``recv_nowait``."""
        assert self._recv_nowait is not None
        self._recv = self._recv_nowait
        try:
            event = self.read_event()
        finally:
            self._recv = self._transport.recv_into
        # a server loop does not read again after a request (the next read would find
        # nothing): drop the buffer now unless more bytes came with this frame
        self._engine.release_buffer()
        return event

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

    def read_event(self) -> Event:
        """The next event; raises ``TimeoutError`` between frames or while a frame
        is still arriving (call again), ``ConnectionClosed`` at EOF, and the
        engine's ``ProtocolError`` for a malformed frame or message.
        """
        engine = self._engine
        while True:
            event = engine.next_event()
            if event is not None:
                self.frames_read += 1
                # the next frame's clock starts now if some of it came with this one
                self._frame_started = time.monotonic() if engine.in_frame else None
                return event
            if self._frame_started is not None:
                if engine.in_frame:
                    self.check_stall()  # a peer dripping bytes never lets a read time out
                else:
                    self._frame_started = None  # between frames (empty ones were skipped)
            try:
                received = self._recv(engine.receive_buffer())
            except TimeoutError:
                self.check_stall()
                if not engine.in_frame:
                    engine.release_buffer()  # idle: hold no buffer until bytes come
                raise
            if not received:
                raise ConnectionClosed("the peer closed the connection" +
                                       (" in the middle of a frame" if engine.in_frame else ""))
            if self._frame_started is None:
                self._frame_started = time.monotonic()
            engine.received(received)
