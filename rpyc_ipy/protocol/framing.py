"""Channel framing of the RPyC 6.0.2 wire format (spec §3).

One message is one frame::

    u32 length | u8 compressed | body (length bytes) | 0x0a

``length`` counts the body only; the trailing byte is not checked on receipt.
A compressed body is a zlib container stream. We accept both kinds of frame and
send uncompressed frames unless a threshold is configured.

Two ways in:

* :class:`FrameDecoder` for a byte stream: ``feed(data)`` then ``next_payload()``
  until it returns ``None`` (fuzzing, the in-memory transport, tests).
* :func:`parse_header` + :func:`decode_body` for a reader that knows the body
  size up front and reads it straight into a preallocated buffer (sockets).

And one way out: :func:`frame_parts` returns the header, the payload parts and
the flusher, ready for one gathered write.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

from rpyc_ipy.errors import CodecError, LimitExceeded
from rpyc_ipy.protocol.limits import DEFAULT_LIMITS, Limits

__all__ = [
    "FLUSHER",
    "HEADER_SIZE",
    "RPYC_COMPRESSION_THRESHOLD",
    "FrameDecoder",
    "decode_body",
    "frame_bytes",
    "frame_parts",
    "parse_header",
]

HEADER_SIZE = 5
FLUSHER = b"\n"
#: rpyc 6.0.2 compresses payloads strictly longer than this (at zlib level 1).
RPYC_COMPRESSION_THRESHOLD = 3000
_header = struct.Struct(">IB")
# below this payload size one joined buffer beats a gathered write of many pieces
_GATHER_THRESHOLD = 1 << 16


def parse_header(header: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS
                 ) -> tuple[int, bool]:
    """Return ``(body_length, compressed)`` from the 5 header bytes.

    The size limit is checked here, before a single body byte is read. The caller
    then reads ``body_length + 1`` bytes (the body and the flusher).
    """
    length, flag = _header.unpack_from(header)
    if flag > 1:
        raise CodecError(f"frame: compression flag must be 0 or 1, not {flag}")
    if length > limits.max_frame_size:
        raise LimitExceeded(
            f"frame: declared body of {length} bytes exceeds max_frame_size={limits.max_frame_size}"
        )
    return length, bool(flag)


def decode_body(body: bytes | bytearray | memoryview, compressed: bool,
                limits: Limits = DEFAULT_LIMITS) -> bytes | bytearray | memoryview:
    """Return the payload carried by ``body`` (the flusher already stripped).

    A compressed body is inflated to at most ``limits.max_frame_size`` bytes; a
    stream that would inflate further, is truncated, or has trailing garbage is a
    :class:`~rpyc_ipy.errors.CodecError`.
    """
    if not compressed:
        return body
    inflater = zlib.decompressobj()
    try:
        payload = inflater.decompress(body, limits.max_frame_size)
        # output full with input left: either more output follows (over the limit)
        # or only the end of the stream does (a payload of exactly the limit)
        over = bool(inflater.unconsumed_tail) and \
            bool(inflater.decompress(inflater.unconsumed_tail, 1))
    except zlib.error as exc:
        raise CodecError(f"frame: invalid zlib body: {exc}") from None
    if over:
        raise LimitExceeded(
            f"frame: compressed body inflates beyond max_frame_size={limits.max_frame_size}"
        )
    if not inflater.eof:
        raise CodecError("frame: truncated zlib body")
    if inflater.unused_data:
        raise CodecError("frame: trailing bytes after the zlib stream")
    return payload


def frame_parts(parts: Sequence[bytes], compress_threshold: int | None = None) -> list[bytes]:
    """Frame a payload given as parts; returns the buffers to write, in order.

    Small frames come back as one buffer (one ``send``); large payload parts are
    passed through uncopied for a gathered write. With ``compress_threshold``
    set, payloads longer than it are zlib-compressed at level 1 (what rpyc 6.0.2
    does with 3000); ``None`` never compresses.
    """
    length = sum(map(len, parts))
    if compress_threshold is not None and length > compress_threshold:
        body = zlib.compress(b"".join(parts), 1)
        return [_header.pack(len(body), 1), body, FLUSHER]
    if length < _GATHER_THRESHOLD:
        return [b"".join((_header.pack(length, 0), *parts, FLUSHER))]
    return [_header.pack(length, 0), *parts, FLUSHER]


def frame_bytes(payload: bytes, compress_threshold: int | None = None) -> bytes:
    """The whole frame for ``payload`` as one byte string."""
    return b"".join(frame_parts([payload], compress_threshold))


class FrameDecoder:
    """Incremental frame splitter for a byte stream.

    ``feed()`` bytes as they arrive (in any chunking), then call
    ``next_payload()`` until it returns ``None``. Memory stays bounded by the
    size limit: a declared length over the limit is refused from the header.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._buffer = bytearray()
        self._pending: tuple[int, bool] | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a payload."""
        return len(self._buffer)

    @property
    def in_frame(self) -> bool:
        """True while part of a frame has arrived and the rest has not."""
        return bool(self._buffer) or self._pending is not None

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data

    def next_payload(self) -> bytes | bytearray | memoryview | None:
        """The next complete payload, or ``None`` if more bytes are needed."""
        buffer = self._buffer
        if self._pending is None:
            if len(buffer) < HEADER_SIZE:
                return None
            self._pending = parse_header(buffer, self._limits)
            del buffer[:HEADER_SIZE]
        length, compressed = self._pending
        if len(buffer) < length + 1:
            return None
        with memoryview(buffer) as view:  # one copy of the body, not two
            body = bytes(view[:length])
        del buffer[: length + 1]
        self._pending = None
        return decode_body(body, compressed, self._limits)
