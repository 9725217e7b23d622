"""Channel framing of the RPyC 6.0.2 wire format (wire spec §3).

One message is one frame::

    u32 length | u8 compressed | body (length bytes) | 0x0a

``length`` counts the body only; the trailing byte is not checked on receipt.
A compressed body is a zlib container stream. We accept both kinds of frame and
send uncompressed frames unless a threshold is configured.

One way in, :class:`FrameDecoder`, fed either way (both can be mixed):

* receive-into, for sockets: ``view = receive_buffer()``, read into ``view``,
  ``received(n)``, then ``next_payload()`` until it returns ``None``;
* ``feed(data)`` for bytes already in hand (tests, fuzzing), then the same.

And one way out: :func:`frame_parts` returns the header, the payload parts and
the flusher, ready for one gathered write.
"""

from __future__ import annotations

import mmap
import struct
import zlib
from collections.abc import Sequence

from rpyc_ipy.errors import CodecError, LimitExceeded
from rpyc_ipy.protocol.budget import Budget
from rpyc_ipy.protocol.inflate import inflate
from rpyc_ipy.protocol.limits import DEFAULT_LIMITS, Limits
from rpyc_ipy.protocol.spliced import Spliced, find_hole, new_bytes, splice

__all__ = [
    "FLUSHER",
    "HEADER_SIZE",
    "KEEP_BUFFER",
    "RPYC_COMPRESSION_THRESHOLD",
    "TLS_RECORD",
    "FrameDecoder",
    "frame_bytes",
    "frame_parts",
]

HEADER_SIZE = 5
FLUSHER = b"\n"
#: rpyc 6.0.2 compresses payloads strictly longer than this (at zlib level 1).
RPYC_COMPRESSION_THRESHOLD = 3000
_header = struct.Struct(">IB")
#: TLS record content types (change_cipher_spec, alert, handshake, application_data)
_TLS_TYPES = range(0x14, 0x18)
#: what a frame error says when the peer sent TLS instead of frames
TLS_RECORD = "the peer sent a TLS record"

# below this payload size one joined buffer beats a gathered write of many pieces
_GATHER_THRESHOLD = 1 << 16
# the receive buffer for small frames grows up to this; a larger frame gets a body buffer
# of its own
_BUFFER_SIZE = 1 << 16
#: the default largest body buffer kept for the next large frame (see FrameDecoder)
KEEP_BUFFER = 64 << 20
# the receive buffer is allocated at this size when a read needs it (an idle connection
# holds none): small requests fit, several to a read, and it is cheap to allocate again
_FIRST_BUFFER = 1 << 12
# what a decoder without a receive buffer holds: empty, shared, never written to
_NO_BUFFER = bytearray()
_NO_VIEW = memoryview(_NO_BUFFER)

Payload = bytes | bytearray | memoryview


class _Split:
    """A large frame whose large bytes value is received into its final object
    (:mod:`rpyc_ipy.protocol.spliced`): the body's head up to the value's length,
    then the value, then the tail and the flusher."""

    __slots__ = ("filled", "head", "hole", "index", "targets", "value")

    def __init__(self, head: bytes, hole: int, value: bytes, view: memoryview,
                 tail: bytearray) -> None:
        self.head, self.hole, self.value = head, hole, value
        self.targets = [view, memoryview(tail)]
        self.index = 0  # the target being filled
        self.filled = 0  # bytes of it received

    def received(self, count: int) -> None:
        self.filled += count
        if self.filled == len(self.targets[self.index]):
            self.index += 1
            self.filled = 0

    @property
    def complete(self) -> bool:
        return self.index == 2

    def payload(self) -> Spliced:
        """The body as brine decodes it; the value's view is given up first."""
        view, tail = self.targets
        view.release()
        body = self.head + tail[:-1].tobytes()
        tail.release()
        return splice(body, self.hole, self.value)


def _is_tls_record(buffer: bytearray, start: int) -> bool:
    """Whether the bytes at ``start`` begin a TLS record (type, then version 3.x):
    checked only on a bad header, to say why it is bad."""
    return buffer[start] in _TLS_TYPES and buffer[start + 1] == 3


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
    """Splits a byte stream into payloads; bytes in, payloads out, no I/O.

    Bytes arrive through :meth:`receive_buffer` + :meth:`received` (read straight
    into the decoder's memory) or :meth:`feed` (copied in); then call
    :meth:`next_payload` until it returns ``None``. Small frames share one buffer,
    so one read can bring several; it is allocated when a read needs it (4 KiB,
    growing up to 64 KiB for a frame that needs room), given up when it grew and
    nothing is left in it, and :meth:`release_buffer` drops it while idle, so an
    idle connection holds no receive buffer. A frame too large for it gets an
    anonymous ``mmap`` of exactly its body size: the kernel hands out pages only
    as bytes land, so a header alone costs no memory, and the body is received in
    place and returned uncopied; with ``split_values`` (the engine's choice: its
    payloads are messages), a body's large bytes value is received straight into
    its final ``bytes`` instead, and the payload is a
    :class:`~rpyc_ipy.protocol.spliced.Spliced` that brine decodes. Declared sizes
    over the frame limit are refused
    from the header, before a body byte is accepted. Once its payload is released,
    a body buffer of up to ``keep_buffer`` bytes (default :data:`KEEP_BUFFER`; 0
    keeps none) is kept, once the frame limit is lifted, for the next large
    frame, its pages lent back to the kernel (``MADV_FREE``: taken back only under
    memory pressure): a fresh page costs a fault, about 6 us on the virtual machines
    we measure on, 25 ms per 16 MiB, more than the transfer itself.

    The frame limit is ``limits.max_frame_size``, or ``first_frame_limit`` (if
    smaller) until :meth:`lift_frame_limit`. With a ``budget``, a large body is
    reserved from it before its buffer exists, and so is every inflated byte
    beyond the small-payload size; a frame that does not fit is refused. A large
    payload keeps its reservation until :meth:`release_payload` (call it once
    the payload is decoded) and :meth:`close` gives back everything.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS, budget: Budget | None = None,
                 first_frame_limit: int | None = None, keep_buffer: int = KEEP_BUFFER,
                 split_values: bool = False) -> None:
        self._limits = limits
        self._split_values = split_values
        self._keep_buffer = keep_buffer
        self._frame_limit = limits.max_frame_size if first_frame_limit is None \
            else min(first_frame_limit, limits.max_frame_size)
        self._budget = budget
        self._held = 0  # bytes reserved from the budget (the reader's count; close() may
        # come from another thread, so the budget keeps its own)
        # the large payload last returned, and the bytes reserved for it
        self._payload: memoryview | Spliced | None = None
        self._payload_held = 0
        self._buffer, self._view = _NO_BUFFER, _NO_VIEW  # the first read that needs one allocates
        self._start = 0  # bytes before _start are consumed, from _end on free
        self._end = 0
        self._length = -1  # body length of the small frame at _start, -1 until its header is read
        self._compressed = False
        # a large frame (it precedes whatever the small buffer holds): body and flusher,
        # in the first _big_size bytes of _big (a kept buffer may be larger)
        self._big: mmap.mmap | None = None
        self._big_size = 0
        self._big_filled = 0
        self._big_compressed = False
        self._split: _Split | None = None  # a large frame whose large value is apart
        self._body_map: mmap.mmap | None = None  # the buffer of the payload handed out
        self._spare: mmap.mmap | None = None  # a body buffer kept for the next large frame
        self._held_for_split = 0

    @property
    def frame_limit(self) -> int:
        """The largest frame body (declared or inflated) accepted now."""
        return self._frame_limit

    def lift_frame_limit(self) -> None:
        """From now on accept frames up to ``limits.max_frame_size``."""
        self._frame_limit = self._limits.max_frame_size

    @property
    def capacity(self) -> int:
        """Bytes the receive buffer for small frames holds now (0: none allocated)."""
        return len(self._buffer)

    def release_buffer(self) -> bool:
        """Drop the receive buffer if it holds no bytes of a frame (an idle connection
        needs none; the next read allocates one). True if it is gone now."""
        if self._end != self._start or self._big is not None or self._split is not None:
            return False
        if self._buffer:  # the offsets stay: has_frame() may read them from another thread
            self._buffer, self._view = _NO_BUFFER, _NO_VIEW
        return True

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a payload."""
        pending = self._end - self._start
        split = self._split
        if split is not None:
            done = sum(len(target) for target in split.targets[:split.index])
            return pending + HEADER_SIZE + len(split.head) + done + split.filled
        return pending if self._big is None else pending + HEADER_SIZE + self._big_filled

    @property
    def in_frame(self) -> bool:
        """True while bytes of a frame not yet returned by :meth:`next_payload` are held."""
        return self._end != self._start or self._big is not None or self._split is not None

    def has_frame(self) -> bool:
        """True if :meth:`next_payload` has a payload (or an error) without more bytes.

        Only reads state, so another thread may ask while the reader works.
        """
        if self._big is not None:
            return self._big_filled == self._big_size
        if self._split is not None:
            return self._split.complete
        pending = self._end - self._start
        if pending < HEADER_SIZE:
            return False
        length, flag = _header.unpack_from(self._buffer, self._start)
        return flag > 1 or length > self._frame_limit or pending > HEADER_SIZE + length

    def receive_buffer(self) -> memoryview:
        """Where the next bytes of the stream go; read into it, then call :meth:`received`.

        Raises ``LimitExceeded`` or ``CodecError`` for a frame header that is refused.
        """
        big = self._big
        if big is None:
            if self._length < 0 and self._split is None and \
                    self._end - self._start >= HEADER_SIZE:
                self._read_header()
                big = self._big
            split = self._split
            if split is not None and not split.complete:
                return split.targets[split.index][split.filled:]
        if big is not None and self._big_filled < self._big_size:
            return memoryview(big)[self._big_filled:self._big_size]
        start = self._start
        if start:
            # the rest of a partial frame moves to the front: at most one small frame
            pending = self._end - start
            if pending:  # view to view: a memmove, the two ranges may overlap
                self._view[:pending] = self._view[start:self._end]
            self._start, self._end = 0, pending
        # room for one more byte, or for the whole small frame whose header is in
        need = self._end + 1 if self._length < 0 else \
            max(self._end + 1, HEADER_SIZE + self._length + 1)
        if need > len(self._buffer):
            self._grow(need)
        return self._view[self._end:]

    def received(self, count: int) -> None:
        """``count`` bytes landed at the start of the last :meth:`receive_buffer`."""
        if self._big is not None and self._big_filled < self._big_size:
            self._big_filled += count
        elif self._split is not None and not self._split.complete:
            self._split.received(count)
        else:
            self._end += count

    def feed(self, data: Payload) -> None:
        """Copy ``data`` in, as if it had been received; any chunking will do.

        Raises as :meth:`receive_buffer` does when a header it passes is refused.
        """
        with memoryview(data) as rest:
            while rest:
                target = self.receive_buffer()
                count = min(len(target), len(rest))
                target[:count] = rest[:count]
                self.received(count)
                rest = rest[count:]

    def next_payload(self) -> Payload | None:
        """The next complete payload, or ``None`` if more bytes are needed.

        Raises ``LimitExceeded`` or ``CodecError`` for a refused frame; the
        decoder is then unusable (the stream has no resynchronisation point).
        A large payload not yet released is done with now: its bytes go back to
        the budget (its buffer goes with the last reference to it).
        """
        if self._payload is not None:
            self._payload = self._body_map = None  # its buffer may still be in use: not kept
            self._give(self._payload_held)
            self._payload_held = 0
        big = self._big
        if big is None:
            length = self._length
            if length < 0:
                split = self._split
                if split is None:
                    if self._end - self._start < HEADER_SIZE:
                        return None
                    self._read_header()
                    split = self._split
                if split is not None:
                    if not split.complete:
                        return None
                    self._split = None
                    return self._hand_out(split.payload(), self._held_for_split)
                big = self._big
                length = self._length
        if big is not None:
            size = self._big_size
            if self._big_filled < size:
                return None
            self._big = None
            body = memoryview(big)[:size - 1]
            if not self._big_compressed:
                self._body_map = big
                return self._hand_out(body, size)
            try:
                payload = inflate(body, self._frame_limit, self._take, self._give)
            finally:  # the compressed body goes as soon as it is inflated
                body.release()
                self._keep(big)
                self._give(size)
            return self._hand_out(payload, self._held)
        start = self._start + HEADER_SIZE
        stop = start + length
        if stop >= self._end:  # the flusher has not arrived yet
            return None
        body_bytes = bytes(self._view[start:stop])  # the one copy of a small body
        self._start = stop + 1
        self._length = -1
        if self._start == self._end and len(self._buffer) > _FIRST_BUFFER:
            self.release_buffer()  # a frame made it grow: do not keep the room
        if not self._compressed:
            return body_bytes
        return self._hand_out(inflate(body_bytes, self._frame_limit, self._take, self._give),
                              self._held)

    def release_payload(self) -> None:
        """The last payload is decoded (or dropped): free its buffer if it had one of
        its own, and give its bytes back to the budget."""
        payload = self._payload
        if payload is None:
            return
        self._payload = None
        held, self._payload_held = self._payload_held, 0
        if type(payload) is not memoryview:  # a Spliced body: nothing mapped
            self._give(held)
            return
        mapping = payload.obj
        try:
            payload.release()
        except BufferError:
            pass  # a view of it is still in use: freed with that view
        if mapping is self._body_map:
            self._body_map = None
            self._keep(mapping)
        else:
            _unmap(mapping)
        self._give(held)

    def close(self) -> None:
        """Give every reserved byte back, and the pages of a frame still arriving to the
        system; the decoder takes no more budget. Safe from another thread while the
        reader works: it changes no state the reader uses, and the buffer stays mapped
        (a write into it lands in a fresh zero page)."""
        if self._budget is not None:
            self._budget.close()
        for mapping in (self._big, self._spare):
            if mapping is not None:
                try:
                    mapping.madvise(mmap.MADV_DONTNEED)
                except (OSError, ValueError):
                    pass  # unmapped already: nothing to give back

    def _keep(self, mapping: mmap.mmap) -> None:
        """Keep a body buffer we are done with for the next large frame, or unmap it."""
        spare = self._spare
        # a peer not yet established (the pending frame limit holds) gets nothing kept
        if len(mapping) > self._keep_buffer or \
                self._frame_limit < self._limits.max_frame_size or \
                (spare is not None and len(spare) >= len(mapping)):
            _unmap(mapping)
            return
        try:
            # the one way to ask whether a view of it is still alive (a decoded value's
            # slice would see the next frame's bytes): same size, so no move, no copy
            mapping.resize(len(mapping))
        except (BufferError, OSError, ValueError, SystemError):
            _unmap(mapping)
            return
        if _MADV_FREE is not None:
            try:
                mapping.madvise(_MADV_FREE)
            except OSError:
                pass  # a kernel without it: the pages stay as they are
        self._spare = mapping
        if spare is not None:
            _unmap(spare)

    def _body_buffer(self, size: int) -> mmap.mmap:
        """A buffer of at least ``size`` bytes: the kept one if it is large enough."""
        spare = self._spare
        if spare is not None and len(spare) >= size:
            self._spare = None
            return spare
        # private: cheaper to fault in than the default shared mapping, and no child inherits it
        return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)

    def _hand_out(self, payload: Payload, held: int) -> Payload:
        """Return ``payload``; a large one is remembered for :meth:`release_payload`."""
        if type(payload) is memoryview or type(payload) is Spliced:
            self._payload, self._payload_held = payload, held
        return payload

    def _take(self, size: int) -> None:
        """Reserve ``size`` bytes of the budget, or refuse the frame."""
        budget = self._budget
        if budget is None:
            return
        if not budget.reserve(size):
            raise LimitExceeded(
                f"frame: {size} more bytes would exceed the memory budget for frames "
                "shared by this side's connections; raise frame_budget, or retry when "
                "fewer large frames are in flight")
        self._held += size

    def _give(self, size: int) -> None:
        budget = self._budget
        if budget is None:
            return
        size = min(size, self._held)
        self._held -= size
        budget.release(size)

    def _read_header(self) -> None:
        """Check the header at ``_start``; a large frame moves into a body buffer of its own."""
        start = self._start
        length, flag = _header.unpack_from(self._buffer, start)
        if (flag > 1 or length > self._limits.max_frame_size) and \
                _is_tls_record(self._buffer, start):
            raise CodecError(f"frame: {TLS_RECORD}: it speaks TLS, not plaintext RPyC")
        if flag > 1:
            raise CodecError(f"frame: compression flag must be 0 or 1, not {flag}")
        if length > self._frame_limit:
            if self._frame_limit < self._limits.max_frame_size:
                raise LimitExceeded(
                    f"frame: declared body of {length} bytes exceeds the limit of "
                    f"{self._frame_limit} bytes for a peer that has not logged in or sent a "
                    "valid request yet (pending_frame_limit)")
            raise LimitExceeded(
                f"frame: declared body of {length} bytes exceeds "
                f"max_frame_size={self._limits.max_frame_size}"
            )
        if HEADER_SIZE + length + 1 <= _BUFFER_SIZE:
            self._length, self._compressed = length, bool(flag)
            return
        start += HEADER_SIZE
        have = min(self._end - start, length + 1)
        self._take(length + 1)  # before the buffer exists
        if self._split_values and not flag and self._split_value(start, have, length):
            return
        big = self._body_buffer(length + 1)
        big[:have] = self._view[start:start + have]
        self._start = start + have
        self._big, self._big_size = big, length + 1
        self._big_filled, self._big_compressed = have, bool(flag)

    def _split_value(self, start: int, have: int, length: int) -> bool:
        """Receive the body's large bytes value, if its tag is among the ``have`` bytes
        at ``start``, straight into its final ``bytes``; False to take the whole body
        into one buffer instead. The budget is reserved already."""
        found = find_hole(self._view, start + 1, start + have, _BUFFER_SIZE)  # 1: msg type
        if found is None:
            return False
        tag, size = found
        hole = tag - start
        value_at = hole + 5
        if size > self._limits.max_bytes_len or value_at + size > length or \
                have > value_at + size:
            return False  # refused or malformed: the whole-body path says why
        made = new_bytes(size)
        if made is None:
            return False
        value, view = made
        got = have - value_at
        view[:got] = self._view[start + value_at:start + have]
        split = _Split(bytes(self._view[start:start + value_at]), hole, value, view,
                       bytearray(length - value_at - size + 1))
        split.received(got)
        self._start = start + have
        self._split, self._held_for_split = split, length + 1
        return True

    def _grow(self, need: int) -> None:
        """Make the small buffer hold at least ``need`` bytes (it at least doubles)."""
        buffer = bytearray(max(_FIRST_BUFFER, need, 2 * len(self._buffer)))
        buffer[:self._end] = self._view[:self._end]
        self._buffer, self._view = buffer, memoryview(buffer)


_MADV_FREE: int | None = getattr(mmap, "MADV_FREE", None)


def _unmap(mapping: object) -> None:
    """Unmap a buffer of ours now, unless a view of it is still in use."""
    if isinstance(mapping, mmap.mmap):
        try:
            mapping.close()
        except BufferError:
            pass  # unmapped when the last view goes
