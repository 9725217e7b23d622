"""brine: the value serializer of the RPyC 6.0.2 wire format.

Brine carries a closed set of immutable builtins, chosen by **exact** type:
``None``, ``bool``, ``int``, ``float``, ``complex``, ``bytes``, ``str``,
``NotImplemented``, ``Ellipsis``, and ``tuple``/``frozenset``/``slice`` made of
those. Everything else travels by reference (see :mod:`rpyc_ipy.protocol.boxing`).
There is no pickle here, ever.

Each value is one tag byte plus its data (spec §4)::

    00 None   01 b""   02 ()   03 True   04 False   05 NotImplemented   06 Ellipsis
    08 str = utf-8 as a nested bytes value
    0a-0d bytes of length 1-4        0e u8 len + bytes     0f u32 len + bytes
    10-13 tuple of 1-4 items         14 u8 len + items     15 u32 len + items
    16 u8 len + decimal int          17 u32 len + decimal int
    18 f64 float   19 slice(3-tuple)   1a frozenset(tuple)   1b complex(f64, f64)
    20-ef the int (tag - 0x50), i.e. -48 ... 159

Call :func:`dump` to encode, :func:`load` to decode, :func:`dumpable` to ask
whether a value can travel by value. Decoding is bounded by a :class:`Limits` and
raises only :class:`~rpyc_ipy.errors.CodecError` on bad input.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from ..errors import CodecError, LimitExceeded
from .limits import DEFAULT_LIMITS, Limits

__all__ = ["dump", "dump_parts", "dumpable", "load", "load_from"]

TAG_NONE = 0x00
TAG_EMPTY_BYTES = 0x01
TAG_EMPTY_TUPLE = 0x02
TAG_TRUE = 0x03
TAG_FALSE = 0x04
TAG_NOT_IMPLEMENTED = 0x05
TAG_ELLIPSIS = 0x06
TAG_UNICODE = 0x08
TAG_BYTES1 = 0x0A
TAG_BYTES_L1 = 0x0E
TAG_BYTES_L4 = 0x0F
TAG_TUP1 = 0x10
TAG_TUP_L1 = 0x14
TAG_TUP_L4 = 0x15
TAG_INT_L1 = 0x16
TAG_INT_L4 = 0x17
TAG_FLOAT = 0x18
TAG_SLICE = 0x19
TAG_FROZENSET = 0x1A
TAG_COMPLEX = 0x1B
IMM_FIRST, IMM_LAST = 0x20, 0xEF
IMM_BIAS = 0x50  # immediate int = tag - IMM_BIAS
IMM_MIN, IMM_MAX = IMM_FIRST - IMM_BIAS, IMM_LAST - IMM_BIAS  # -48, 159

#: bytes values at least this long are kept as separate parts by dump_parts, so
#: a big payload is written to the socket without being copied into the frame.
BIG_BYTES = 1 << 16

_SIMPLE_TYPES = frozenset(
    {type(None), bool, int, float, complex, bytes, str, type(NotImplemented), type(Ellipsis)}
)
_IMMEDIATE = [bytes((i + IMM_BIAS,)) for i in range(IMM_MIN, IMM_MAX + 1)]
_IMMEDIATE_TAGS = bytes(range(IMM_FIRST, IMM_LAST + 1))
_CONSTANTS: dict[Any, bytes] = {}  # filled below; keyed by identity-safe singletons
_pack_u32 = struct.Struct(">I").pack
_pack_f64 = struct.Struct(">d").pack
_pack_c128 = struct.Struct(">dd").pack
_unpack_u32 = struct.Struct(">I").unpack_from
_unpack_f64 = struct.Struct(">d").unpack_from
_unpack_c128 = struct.Struct(">dd").unpack_from


# ---------------------------------------------------------------------------
# dumpable


def dumpable(obj: object) -> bool:
    """True if ``obj`` is a brine value (exact types only, recursively)."""
    t = type(obj)
    if t in _SIMPLE_TYPES:
        return True
    if t is tuple or t is frozenset:
        return all(dumpable(item) for item in obj)  # type: ignore[attr-defined]
    if t is slice:
        return dumpable(obj.start) and dumpable(obj.stop) and dumpable(obj.step)  # type: ignore[attr-defined]
    return False


# ---------------------------------------------------------------------------
# encoding


def _int_bytes(value: int) -> bytes:
    if IMM_MIN <= value <= IMM_MAX:
        return _IMMEDIATE[value - IMM_MIN]
    try:
        digits = b"%d" % value
    except ValueError as exc:  # more digits than sys.get_int_max_str_digits()
        raise TypeError(f"cannot dump int with more digits than the int-to-str limit: {exc}") from None
    n = len(digits)
    if n < 256:
        return b"\x16%c%b" % (n, digits)
    return b"\x17" + _pack_u32(n) + digits


def _bytes_header(n: int) -> bytes:
    if n < 5:
        return (b"\x01", b"\x0a", b"\x0b", b"\x0c", b"\x0d")[n]
    if n < 256:
        return b"\x0e%c" % n
    return b"\x0f" + _pack_u32(n)


def _tuple_header(n: int) -> bytes:
    if n < 5:
        return (b"\x02", b"\x10", b"\x11", b"\x12", b"\x13")[n]
    if n < 256:
        return b"\x14%c" % n
    return b"\x15" + _pack_u32(n)


def _encode_into(obj: object, out: list[bytes]) -> None:
    """Append the encoding of ``obj`` to ``out``; raise TypeError if not dumpable."""
    t = type(obj)
    if t is int:
        out.append(_int_bytes(obj))  # type: ignore[arg-type]
    elif t is str:
        try:
            data = obj.encode("utf-8")  # type: ignore[attr-defined]
        except UnicodeEncodeError as exc:
            raise TypeError(f"cannot dump str that is not valid unicode: {exc}") from None
        n = len(data)
        if n < BIG_BYTES:
            out.append(b"\x08" + _bytes_header(n) + data)
        else:
            out.append(b"\x08" + _bytes_header(n))
            out.append(data)
    elif t is bytes:
        n = len(obj)  # type: ignore[arg-type]
        if n < BIG_BYTES:
            out.append(_bytes_header(n) + obj)  # type: ignore[operator]
        else:
            out.append(_bytes_header(n))
            out.append(obj)  # type: ignore[arg-type]
    elif t is tuple:
        _encode_tuple(obj, out)  # type: ignore[arg-type]
    elif t is float:
        out.append(b"\x18" + _pack_f64(obj))
    elif t is bool or obj is None or obj is NotImplemented or obj is Ellipsis:
        out.append(_CONSTANTS[obj])
    elif t is complex:
        out.append(b"\x1b" + _pack_c128(obj.real, obj.imag))  # type: ignore[attr-defined]
    elif t is frozenset:
        out.append(b"\x1a")
        _encode_tuple(tuple(obj), out)  # type: ignore[arg-type]
    elif t is slice:
        out.append(b"\x19\x12")
        _encode_into(obj.start, out)  # type: ignore[attr-defined]
        _encode_into(obj.stop, out)  # type: ignore[attr-defined]
        _encode_into(obj.step, out)  # type: ignore[attr-defined]
    else:
        raise TypeError(f"cannot dump {t.__module__}.{t.__qualname__} by value")


def _encode_tuple(items: tuple[Any, ...], out: list[bytes]) -> None:
    n = len(items)
    out.append(_tuple_header(n))
    if n > 16 and set(map(type, items)) == {int}:
        # homogeneous int tuples (indexes, shapes, ids) are common and worth a fast path
        if IMM_MIN <= min(items) and max(items) <= IMM_MAX:
            out.append(bytes(map(IMM_BIAS.__add__, items)))
        else:
            out.append(b"".join(map(_int_bytes, items)))
        return
    append = out.append
    for item in items:
        t = type(item)
        if t is int and IMM_MIN <= item <= IMM_MAX:
            append(_IMMEDIATE[item - IMM_MIN])
        elif item is None:
            append(b"\x00")
        else:
            _encode_into(item, out)


def dump_parts(obj: object) -> list[bytes]:
    """Encode ``obj`` as a list of byte strings whose concatenation is its brine.

    Large bytes/str values stay separate parts (no copy), ready for a gathered
    socket write. Raises ``TypeError`` if ``obj`` is not :func:`dumpable`.
    """
    out: list[bytes] = []
    _encode_into(obj, out)
    return out


def dump(obj: object) -> bytes:
    """Encode ``obj`` to brine bytes; raises ``TypeError`` if it is not :func:`dumpable`."""
    t = type(obj)
    if t is int:
        return _int_bytes(obj)  # type: ignore[arg-type]
    out: list[bytes] = []
    _encode_into(obj, out)
    return out[0] if len(out) == 1 else b"".join(out)


# ---------------------------------------------------------------------------
# decoding

_IMM_VALUES = [b - IMM_BIAS for b in range(256)]  # index by tag byte
_FIXED_BYTES_LEN = {0x0A: 1, 0x0B: 2, 0x0C: 3, 0x0D: 4}
_FIXED_TUPLE_LEN = {0x10: 1, 0x11: 2, 0x12: 3, 0x13: 4}
_SINGLETONS: dict[int, Any] = {
    TAG_NONE: None,
    TAG_EMPTY_BYTES: b"",
    TAG_EMPTY_TUPLE: (),
    TAG_TRUE: True,
    TAG_FALSE: False,
    TAG_NOT_IMPLEMENTED: NotImplemented,
    TAG_ELLIPSIS: Ellipsis,
}
_CONSTANTS.update({None: b"\x00", True: b"\x03", False: b"\x04",
                   NotImplemented: b"\x05", Ellipsis: b"\x06"})


class _Decoder:
    """One pass over one buffer; ``value()`` reads the next value at ``pos``."""

    __slots__ = ("as_bytes", "data", "end", "limits", "pos")

    def __init__(self, data: bytes | bytearray | memoryview, pos: int, limits: Limits) -> None:
        if type(data) is bytes:
            self.data: Any = data
            self.as_bytes: Callable[[Any], bytes] | None = None
        else:
            self.data = memoryview(data).cast("B")
            self.as_bytes = bytes
        self.pos = pos
        self.end = len(self.data)
        self.limits = limits

    def fail(self, message: str) -> CodecError:
        return CodecError(f"brine: {message} (at offset {self.pos})")

    def take(self, n: int) -> Any:
        pos = self.pos
        end = pos + n
        if end > self.end:
            raise self.fail(f"truncated: needs {n} bytes, {self.end - pos} left")
        self.pos = end
        chunk = self.data[pos:end]
        return chunk if self.as_bytes is None else self.as_bytes(chunk)

    def length(self, tag: int, small: int) -> int:
        if tag == small:
            if self.pos >= self.end:
                raise self.fail("truncated length")
            n: int = self.data[self.pos]
            self.pos += 1
            return n
        if self.pos + 4 > self.end:
            raise self.fail("truncated length")
        (n,) = _unpack_u32(self.data, self.pos)
        self.pos += 4
        return n

    def value(self, depth: int) -> Any:
        pos = self.pos
        if pos >= self.end:
            raise self.fail("truncated: a value was expected")
        tag = self.data[pos]
        self.pos = pos + 1
        if IMM_FIRST <= tag <= IMM_LAST:
            return tag - IMM_BIAS
        if tag in _SINGLETONS:
            return _SINGLETONS[tag]
        if tag in _FIXED_BYTES_LEN:
            return self.take(_FIXED_BYTES_LEN[tag])
        if tag == TAG_BYTES_L1 or tag == TAG_BYTES_L4:
            n = self.length(tag, TAG_BYTES_L1)
            if n > self.limits.max_bytes_len:
                raise LimitExceeded(f"brine: bytes of {n} bytes exceed max_bytes_len")
            return self.take(n)
        if tag == TAG_UNICODE:
            raw = self.value(depth)
            if type(raw) is not bytes:
                raise self.fail("str tag must be followed by a bytes value")
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                raise self.fail("str is not valid utf-8") from None
        if tag in _FIXED_TUPLE_LEN:
            return self.items(_FIXED_TUPLE_LEN[tag], depth)
        if tag == TAG_TUP_L1 or tag == TAG_TUP_L4:
            return self.items(self.length(tag, TAG_TUP_L1), depth)
        if tag == TAG_INT_L1 or tag == TAG_INT_L4:
            n = self.length(tag, TAG_INT_L1)
            if n > self.limits.max_int_digits + 1:
                raise LimitExceeded(f"brine: int of {n} digits exceeds max_int_digits")
            digits = self.take(n)
            body = digits[1:] if digits[:1] == b"-" else digits
            if not body.isdigit():
                raise self.fail(f"invalid int digits {bytes(digits[:20])!r}")
            try:
                return int(digits)
            except ValueError:
                raise LimitExceeded("brine: int exceeds the interpreter's digit limit") from None
        if tag == TAG_FLOAT:
            if pos + 9 > self.end:
                raise self.fail("truncated float")
            self.pos = pos + 9
            return _unpack_f64(self.data, pos + 1)[0]
        if tag == TAG_COMPLEX:
            if pos + 17 > self.end:
                raise self.fail("truncated complex")
            self.pos = pos + 17
            real, imag = _unpack_c128(self.data, pos + 1)
            return complex(real, imag)
        if tag == TAG_SLICE:
            parts = self.nested(depth)
            if type(parts) is not tuple or len(parts) != 3:
                raise self.fail("slice must hold a 3-tuple")
            return slice(*parts)
        if tag == TAG_FROZENSET:
            items = self.nested(depth)
            if type(items) is not tuple:
                raise self.fail("frozenset must hold a tuple")
            try:
                return frozenset(items)
            except TypeError:  # an unhashable item, e.g. a slice on Python < 3.12
                raise self.fail("frozenset holds an unhashable item") from None
        raise self.fail(f"unknown tag 0x{tag:02x}")

    def nested(self, depth: int) -> Any:
        if depth >= self.limits.max_depth:
            raise LimitExceeded(f"brine: nesting deeper than max_depth={self.limits.max_depth}")
        return self.value(depth + 1)

    def items(self, n: int, depth: int) -> tuple[Any, ...]:
        if n > self.limits.max_container_len:
            raise LimitExceeded(f"brine: tuple of {n} items exceeds max_container_len")
        if n > self.end - self.pos:  # every item takes at least one byte
            raise self.fail(f"truncated: tuple of {n} items, {self.end - self.pos} bytes left")
        if depth >= self.limits.max_depth:
            raise LimitExceeded(f"brine: nesting deeper than max_depth={self.limits.max_depth}")
        pos = self.pos
        head = self.data[pos : pos + n]
        if n > 8 and not bytes(head).translate(None, _IMMEDIATE_TAGS):
            self.pos = pos + n
            return tuple(map(_IMM_VALUES.__getitem__, head))
        value = self.value
        depth += 1
        return tuple([value(depth) for _ in range(n)])


def load_from(
    data: bytes | bytearray | memoryview, offset: int = 0, limits: Limits = DEFAULT_LIMITS
) -> Any:
    """Decode the single brine value that fills ``data[offset:]``.

    Raises :class:`~rpyc_ipy.errors.CodecError` for malformed input or trailing
    bytes, :class:`~rpyc_ipy.errors.LimitExceeded` when ``limits`` are exceeded.
    """
    decoder = _Decoder(data, offset, limits)
    try:
        value = decoder.value(0)
    except RecursionError:  # only reachable with a max_depth above the interpreter's
        raise LimitExceeded("brine: nesting too deep for this interpreter") from None
    except MemoryError:
        raise LimitExceeded("brine: value too large to allocate") from None
    if decoder.pos != decoder.end:
        raise CodecError(f"brine: {decoder.end - decoder.pos} trailing bytes after the value")
    return value


def load(data: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Decode one brine value that fills all of ``data``; see :func:`load_from`."""
    return load_from(data, 0, limits)
