"""A large bytes value received straight into the ``bytes`` object the peer's code gets.

A frame that carries a large bytes value (an upload, a reply of file contents) is
mostly that value. Received into a buffer and then decoded, the value would be
copied once more and live twice, buffer and ``bytes``, for a moment: 256 MiB
for a 128 MiB value. Instead the frame decoder finds the value's tag in the first
bytes of the body (:func:`find_hole`), makes an uninitialised ``bytes`` object of
the value's size (:func:`new_bytes`, CPython's own way of building a ``bytes``)
and receives the value into it; the rest of the body, a few bytes before and
after, becomes a :class:`Spliced` payload that brine decodes as if the value were
still in place. The ``bytes`` object is filled before anything else can see it,
as a C extension fills one.
"""

from __future__ import annotations

import ctypes
import struct
from typing import Any

__all__ = ["SCAN_ITEMS", "Spliced", "find_hole", "new_bytes"]

#: brine items looked through for the large value: a message's envelope has far fewer
SCAN_ITEMS = 64
_u32 = struct.Struct(">I").unpack_from

try:
    _from_size = ctypes.pythonapi.PyBytes_FromStringAndSize
    _from_size.restype = ctypes.py_object
    _from_size.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t)
    # a bytes object's data follows its header; basicsize counts the trailing NUL
    _DATA_OFFSET: int | None = bytes.__basicsize__ - 1
except (AttributeError, ValueError):  # not CPython: values are received and copied
    _DATA_OFFSET = None


class Spliced(bytes):
    """A frame body without the bytes of its large value: the value's tag and length
    are still at ``hole``, its bytes are in ``value``."""

    hole: int
    value: bytes


def new_bytes(size: int) -> tuple[bytes, memoryview] | None:
    """A new ``bytes`` of ``size`` bytes and a writable view of its memory, to fill
    before the object is handed to anyone; ``None`` where this is not possible."""
    if _DATA_OFFSET is None:
        return None
    value = _from_size(None, size)
    memory = (ctypes.c_char * size).from_address(id(value) + _DATA_OFFSET)
    return value, memoryview(memory).cast("B")


def splice(body: bytes, hole: int, value: bytes) -> Spliced:
    """The payload brine decodes for ``body`` (without the value) and its value."""
    payload = Spliced(body)
    payload.hole = hole
    payload.value = value
    return payload


def find_hole(data: Any, start: int, end: int, minimum: int) -> tuple[int, int] | None:
    """The position and size of the first bytes value of at least ``minimum`` bytes
    in the brine at ``data[start:end]``, walking item by item as the decoder does,
    if its tag and length are within ``end`` and within :data:`SCAN_ITEMS` items;
    else ``None``. Malformed input gives ``None`` or a position the decoder then
    refuses: this only finds where the value would be."""
    pos = start
    for _ in range(SCAN_ITEMS):
        if pos >= end:
            return None
        tag = data[pos]
        if tag >= 0x20:  # an immediate int; f0-ff are not tags
            if tag > 0xEF:
                return None
            pos += 1
        elif tag <= 0x06 or 0x10 <= tag <= 0x13 or tag == 0x19 or tag == 0x1A:
            pos += 1  # a constant, or the header of a tuple, slice or frozenset
        elif 0x0A <= tag <= 0x0D:
            pos += tag - 0x08
        elif tag == 0x0E or tag == 0x16 or tag == 0x14:
            if pos + 1 >= end:
                return None
            pos += 2 + (0 if tag == 0x14 else data[pos + 1])
        elif tag == 0x0F or tag == 0x17 or tag == 0x15:
            if pos + 5 > end:
                return None
            size = _u32(data, pos + 1)[0]
            if tag == 0x0F and size >= minimum:
                return pos, size
            pos += 5 + (0 if tag == 0x15 else size)
        elif tag == 0x08:  # a str: skip its nested bytes value whole
            if pos + 1 >= end:
                return None
            inner = data[pos + 1]
            if inner == 0x0F:
                if pos + 6 > end:
                    return None
                pos += 6 + _u32(data, pos + 2)[0]
            elif inner == 0x0E:
                if pos + 2 >= end:
                    return None
                pos += 3 + data[pos + 2]
            elif 0x0A <= inner <= 0x0D:
                pos += inner - 0x07
            elif inner == 0x01:
                pos += 2
            else:
                return None
        elif tag == 0x18:
            pos += 9
        elif tag == 0x1B:
            pos += 17
        else:  # 07, 09, 1c-1f: not tags
            return None
    return None
