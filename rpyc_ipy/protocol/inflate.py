"""Inflating a compressed frame body into its final buffer, a chunk at a time.

A payload that inflates to at most :data:`SMALL` bytes comes back as ``bytes``.
A larger one is inflated a chunk at a time straight into an anonymous ``mmap``
sized for the frame limit: the kernel hands out pages only as chunks land, so
memory follows the bytes inflated, and each chunk is asked of the budget (through
``take``) before zlib produces it. Nothing is copied twice: the most held at once
is the payload so far plus one chunk. Inflation stops one byte past ``limit``.
"""

from __future__ import annotations

import mmap
import zlib
from collections.abc import Callable
from typing import Protocol

from rpyc_ipy.errors import CodecError, LimitExceeded

__all__ = ["CHUNK", "SMALL", "inflate"]

#: a payload up to this size is inflated as one bytes object, outside any budget
#: (as large as the decoder's own receive buffer)
SMALL = 1 << 16
#: inflated bytes asked of the budget, produced and copied at a time
CHUNK = 1 << 20


class Inflater(Protocol):
    """What we use of a ``zlib.decompressobj()``."""

    @property
    def eof(self) -> bool: ...
    @property
    def unconsumed_tail(self) -> bytes: ...
    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes | bytearray | memoryview, max_length: int = ...,
                   /) -> bytes: ...


def inflate(body: bytes | bytearray | memoryview, limit: int,
            take: Callable[[int], None], give: Callable[[int], None]) -> bytes | memoryview:
    """The payload of the zlib stream ``body``, at most ``limit`` bytes of it.

    ``take(n)`` reserves ``n`` bytes (raising to refuse) before they are produced
    and ``give(n)`` returns what was reserved but not produced; a payload longer
    than :data:`SMALL` keeps what it took, for the caller to give back when done
    with it. Raises ``LimitExceeded`` past ``limit`` and ``CodecError`` for a
    broken stream (what was taken is then the caller's to give back too).
    """
    inflater = zlib.decompressobj()
    try:
        most = min(SMALL, limit + 1)
        first = inflater.decompress(body, most)
        # ended, or starved of input before the output was full (truncated)
        if inflater.eof or (not inflater.unconsumed_tail and len(first) < most):
            _check_end(inflater, len(first), limit)
            return first
        return _inflate_large(inflater, first, limit, take, give)
    except zlib.error as exc:
        raise CodecError(f"frame: invalid zlib body: {exc}") from None


def _inflate_large(inflater: Inflater, first: bytes, limit: int,
                   take: Callable[[int], None], give: Callable[[int], None]) -> memoryview:
    size = len(first)
    if size > limit:
        _over(limit)
    take(size)
    # private: cheaper to fault in than a shared mapping, and no child inherits it
    out = mmap.mmap(-1, limit + 1, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    out[:size] = first
    del first
    # each round produces at least one byte or ends: at most limit + 1 rounds
    while not inflater.eof:
        want = min(CHUNK, limit + 1 - size)
        take(want)
        tail = inflater.unconsumed_tail
        chunk = inflater.decompress(tail, want)
        count = len(chunk)
        give(want - count)
        out[size:size + count] = chunk
        del chunk
        size += count
        if size > limit:
            _over(limit)
        if count == 0 and not inflater.eof:
            raise CodecError("frame: truncated zlib body")
    _check_end(inflater, size, limit)
    return memoryview(out)[:size]


def _check_end(inflater: Inflater, size: int, limit: int) -> None:
    if size > limit:
        _over(limit)
    if not inflater.eof:
        raise CodecError("frame: truncated zlib body")
    if inflater.unused_data:
        raise CodecError("frame: trailing bytes after the zlib stream")


def _over(limit: int) -> None:
    raise LimitExceeded(f"frame: compressed body inflates beyond the frame limit of {limit} bytes")
