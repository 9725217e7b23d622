"""The sans-I/O message engine: bytes in, events out; events in, bytes out.

A payload is one raw message-type byte plus the brine of ``(seq, body)`` (wire spec §5)::

    REQUEST    body = (handler_id, boxed_args)
    REPLY      body = boxed return value
    EXCEPTION  body = vinegar payload (not boxed)

Use it like h11: bytes in with ``receive_data(chunk)``, or, reading a socket
without a copy, ``recv_into(engine.receive_buffer())`` then ``received(n)``; then
``next_event()`` until it returns ``None``. ``request(handler, boxed)`` /
``reply(seq, boxed)`` / ``exception(seq, payload)`` give the frame parts to
write. Boxing is the connection's job: the engine only sees brine values.

The engine keeps no socket, thread or clock. After a malformed payload it stays
failed: every later call raises the same :class:`~rpyc_ipy.errors.ProtocolError`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from rpyc_ipy.errors import CodecError, ProtocolError, UnexpectedMessage
from rpyc_ipy.protocol import brine
from rpyc_ipy.protocol.budget import Budget
from rpyc_ipy.protocol.consts import HANDLER_NAMES, MSG_EXCEPTION, MSG_REPLY, MSG_REQUEST
from rpyc_ipy.protocol.framing import KEEP_BUFFER, FrameDecoder, frame_parts
from rpyc_ipy.protocol.limits import DEFAULT_LIMITS, Limits

__all__ = ["Engine", "Event", "Failure", "Reply", "Request"]


@dataclass(slots=True)  # not frozen: a frozen __init__ costs a setattr call per field
class Request:
    """The peer asks us to run ``handler`` with ``args`` (still boxed)."""

    seq: int
    handler: int
    args: Any


@dataclass(slots=True)
class Reply:
    """The peer answers our request ``seq`` with ``value`` (still boxed)."""

    seq: int
    value: Any


@dataclass(slots=True)
class Failure:
    """The peer's handler for our request ``seq`` raised; ``payload`` is vinegar."""

    seq: int
    payload: Any


Event = Request | Reply | Failure

_REQUEST_BYTE = bytes((MSG_REQUEST,))
_REPLY_BYTE = bytes((MSG_REPLY,))
_EXCEPTION_BYTE = bytes((MSG_EXCEPTION,))


class Engine:
    """Sequence numbers and message (de)coding for one connection end.

    ``budget``, ``first_frame_limit`` and ``keep_buffer`` go to the frame decoder
    (:class:`~rpyc_ipy.protocol.framing.FrameDecoder`): the first frame limit holds
    until the peer's first valid message, or :meth:`lift_frame_limit`.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS,
                 compress_threshold: int | None = None, *, budget: Budget | None = None,
                 first_frame_limit: int | None = None, keep_buffer: int = KEEP_BUFFER) -> None:
        self.limits = limits
        self.compress_threshold = compress_threshold
        self._seq = itertools.count()  # next() is atomic under the GIL
        # its payloads are messages: a large bytes value may be received apart
        self._decoder = FrameDecoder(limits, budget, first_frame_limit, keep_buffer,
                                     split_values=True)
        self._error: ProtocolError | None = None
        #: True once the peer sent a valid message (or the limit was lifted)
        self.established = first_frame_limit is None

    # -- outgoing ---------------------------------------------------------------

    def _frame(self, kind: bytes, message: tuple[Any, Any]) -> list[bytes]:
        parts = brine.dump_parts(message)
        parts[0] = kind + parts[0]
        return frame_parts(parts, self.compress_threshold)

    def request(self, handler: int, boxed_args: Any) -> tuple[int, list[bytes]]:
        """Number a new request; returns ``(seq, frame_parts)``."""
        seq = next(self._seq)
        return seq, self._frame(_REQUEST_BYTE, (seq, (handler, boxed_args)))

    def reply(self, seq: int, boxed_value: Any) -> list[bytes]:
        """The frame answering request ``seq`` with a boxed value."""
        return self._frame(_REPLY_BYTE, (seq, boxed_value))

    def exception(self, seq: int, payload: Any) -> list[bytes]:
        """The frame answering request ``seq`` with a vinegar payload."""
        return self._frame(_EXCEPTION_BYTE, (seq, payload))

    # -- incoming ---------------------------------------------------------------

    def receive_buffer(self) -> memoryview:
        """Where the next bytes from the stream go: read into it, then call :meth:`received`."""
        if self._error is not None:
            raise self._error
        try:
            return self._decoder.receive_buffer()
        except ProtocolError as exc:
            self._error = exc
            raise

    def received(self, count: int) -> None:
        """``count`` bytes landed in the last :meth:`receive_buffer`; then :meth:`next_event`."""
        if self._error is not None:
            raise self._error
        self._decoder.received(count)

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes from the stream, in any chunking; then call :meth:`next_event`."""
        if self._error is not None:
            raise self._error
        try:
            self._decoder.feed(data)
        except ProtocolError as exc:
            self._error = exc
            raise

    def next_event(self) -> Event | None:
        """The next complete event, or ``None`` when more bytes are needed.

        Empty payloads are skipped, as RPyC's serving loop does.
        """
        if self._error is not None:
            raise self._error
        decoder = self._decoder
        next_payload = decoder.next_payload
        try:
            while (payload := next_payload()) is not None:
                if len(payload):
                    if type(payload) is bytes:  # a small body: nothing to release
                        event = self._parse(payload)
                        if not self.established:
                            self.lift_frame_limit()
                        return event
                    try:
                        event = self._parse(payload)
                    finally:
                        del payload
                        decoder.release_payload()
                    if not self.established:
                        self.lift_frame_limit()
                    return event
        except ProtocolError as exc:
            self._error = exc
            raise
        return None

    def lift_frame_limit(self) -> None:
        """Accept frames up to ``limits.max_frame_size`` from now on."""
        self.established = True
        self._decoder.lift_frame_limit()

    def close(self) -> None:
        """Drop the buffered input and give its bytes back to the budget."""
        self._decoder.close()

    @property
    def buffer_capacity(self) -> int:
        """Bytes of receive buffer held now (0 while idle after :meth:`release_buffer`)."""
        return self._decoder.capacity

    def release_buffer(self) -> bool:
        """Drop the receive buffer if no frame is partly received; True if none is held."""
        return self._decoder.release_buffer()

    def has_frame(self) -> bool:
        """True if a whole frame has arrived, so :meth:`next_event` may need no more bytes."""
        return self._decoder.has_frame()

    @property
    def in_frame(self) -> bool:
        """True while received bytes of a frame are not yet turned into an event."""
        return self._decoder.in_frame

    def _parse(self, payload: bytes | bytearray | memoryview) -> Event:
        kind = payload[0]
        if kind not in (MSG_REQUEST, MSG_REPLY, MSG_EXCEPTION):
            raise UnexpectedMessage(f"unknown message type {kind}")
        message = brine.load_from(payload, 1, self.limits)
        if type(message) is not tuple or len(message) != 2 or type(message[0]) is not int:
            raise CodecError("message must be a (seq, body) tuple")
        seq, body = message
        if seq < 0:
            raise CodecError(f"negative sequence number {seq}")
        if kind == MSG_REPLY:
            return Reply(seq, body)
        if kind == MSG_EXCEPTION:
            return Failure(seq, body)
        if type(body) is not tuple or len(body) != 2 or type(body[0]) is not int:
            raise CodecError("request body must be a (handler, args) tuple")
        return Request(seq, body[0], body[1])

    @staticmethod
    def handler_name(handler: int) -> str:
        return HANDLER_NAMES.get(handler, f"#{handler}")
