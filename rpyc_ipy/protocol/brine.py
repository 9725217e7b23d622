"""brine: the value serializer of the RPyC 6.0.2 wire format.

Brine carries a closed set of immutable builtins, chosen by **exact** type:
``None``, ``bool``, ``int``, ``float``, ``complex``, ``bytes``, ``str``,
``NotImplemented``, ``Ellipsis``, and ``tuple``/``frozenset``/``slice`` made of
those. Everything else travels by reference, as a netref (the connection boxes it).
There is no pickle here, ever.

Each value is one tag byte plus its data (wire spec §4)::

    00 None   01 b""   02 ()   03 True   04 False   05 NotImplemented   06 Ellipsis
    08 str = utf-8 as a nested bytes value
    0a-0d bytes of length 1-4        0e u8 len + bytes     0f u32 len + bytes
    10-13 tuple of 1-4 items         14 u8 len + items     15 u32 len + items
    16 u8 len + decimal int          17 u32 len + decimal int
    18 f64 float   19 slice(3-tuple)   1a frozenset(tuple)   1b complex(f64, f64)
    20-ef the int (tag - 0x50), i.e. -48 ... 159

Call :func:`dump` (or :func:`dump_parts` for a gathered write) to encode,
:func:`load` / :func:`load_from` to decode, :func:`dumpable` to ask whether a
value can travel by value. Decoding is bounded by a :class:`Limits` and raises
only :class:`~rpyc_ipy.errors.CodecError` (or its subclass
:class:`~rpyc_ipy.errors.LimitExceeded`) on bad input. It takes time linear in
the input whatever the values: a frozenset whose members would flood it (many
that hash alike) is refused before it is built (:mod:`rpyc_ipy.protocol.hashing`).

Speed notes (this module is on every message's path, and pure Python). They are
also why it is one long module: the encoder and decoder share their tag tables
and hand-inlined fast paths, and splitting them would put a call or an attribute
lookup on every value:

* exact-type ``if`` chains with the common types first, scalars handled inline
  in the tuple loops, and no per-call objects beyond the output list;
* long tuples of ints are encoded and decoded with C-level passes (``%``
  formatting, ``translate``, ``json``); the decoder's vectorised path checks
  the byte layout exactly and falls back to the item-by-item path on any doubt,
  so both paths always give the same result;
* malformed input is caught by one ``try`` around the whole decode instead of
  bounds checks per item; lengths that could make us allocate (tuple counts,
  L4 lengths) are still checked before use;
* short str values (up to 63 chars) are encoded once: a memo keeps their
  whole encoding, since the same names recur in message after message. It is
  cleared when it reaches 1024 entries, so it stays small whatever we are made
  to send. (Ints are not memoised: sequence numbers never repeat, and a memo
  measured slower on realistic traffic; nor is str decoding: slicing the key
  out costs as much as decoding it.);
* every tuple under 16 items, at any depth, goes through :func:`_small`, and
  :func:`load` repeats load_from's few lines for bytes: one Python call less;
* CPython 3.11 specifics, measured: ``out.append(x)`` is spelled out (that
  call site is specialised, a bound method hoisted into a local is slower);
  the item loops get their type objects and tables as default arguments
  (local loads); the tag chains are flat with the small branches first,
  because a compare followed by a long jump (``EXTENDED_ARG``) is never
  specialised; in :func:`_small` an immediate's value comes from a table that
  ends at 0xef, so the unknown tags f0-ff fail as an IndexError (a CodecError
  like any other) without a compare per item.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable, Iterable
from typing import Any

from rpyc_ipy.errors import CodecError, LimitExceeded
from rpyc_ipy.protocol.hashing import check_spread
from rpyc_ipy.protocol.limits import DEFAULT_LIMITS, Limits
from rpyc_ipy.protocol.spliced import Spliced

__all__ = ["Encoded", "dump", "dump_parts", "dumpable", "load", "load_from"]

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

# _append_long puts this first in an encoder output list (an empty buffer, so
# joins ignore it) when a part of BIG_BYTES or more follows: a flag for dump_parts.
_BIG = memoryview(b"")

#: tuples at least this long are tried on the vectorised int paths
VECTOR_MIN = 16
_SMALL_RANGES = [tuple(range(n)) for n in range(VECTOR_MIN)]  # no range object per tuple

_SIMPLE_TYPES = frozenset(
    {type(None), bool, int, float, complex, bytes, str, type(NotImplemented), type(Ellipsis)}
)
_INT_ONLY = frozenset({int})

_u32 = struct.Struct(">I")
_pack_u32 = _u32.pack
_unpack_u32 = _u32.unpack_from
_pack_tagged_f64 = struct.Struct(">Bd").pack
_pack_tagged_c128 = struct.Struct(">Bdd").pack
_unpack_f64 = struct.Struct(">d").unpack_from
_unpack_c128 = struct.Struct(">dd").unpack_from

# Encoder tables, indexed by value (+48) or by length.
_IMM_ENC = [bytes((v + IMM_BIAS,)) for v in range(IMM_MIN, IMM_MAX + 1)]
_INT_HEAD = [b"\x16" + bytes((n,)) for n in range(256)]
_BYTES_HEAD = [b"\x01", b"\x0a", b"\x0b", b"\x0c", b"\x0d"] + [
    b"\x0e" + bytes((n,)) for n in range(5, 256)
]
_STR_HEAD = [b"\x08" + head for head in _BYTES_HEAD]
_TUPLE_HEAD = [b"\x02", b"\x10", b"\x11", b"\x12", b"\x13"] + [
    b"\x14" + bytes((n,)) for n in range(5, 256)
]
# for _encode_ints: which decimal lengths may be an immediate, and the fix-ups
_SHORT_INT = bytes(1 if 1 <= n <= 3 else 0 for n in range(256))  # a translate table
_SHORT_RUN = re.compile(b"\x01+")
_SAME_LENGTH_RUN = re.compile(rb"(.)\1*", re.DOTALL)
_IMM_BY_INT = {v: _IMM_ENC[v - IMM_MIN] for v in range(IMM_MIN, IMM_MAX + 1)}
_BLANK_BY_INT = dict.fromkeys(range(IMM_MIN, IMM_MAX + 1), b"")


# ---------------------------------------------------------------------------
# dumpable


def dumpable(obj: object) -> bool:
    """True if ``obj`` is a brine value (exact types only, recursively)."""
    t = type(obj)
    if t in _SIMPLE_TYPES:
        return True
    if t is tuple or t is frozenset:
        for item in obj:  # type: ignore[attr-defined]
            if type(item) not in _SIMPLE_TYPES and not dumpable(item):
                return False
        return True
    if t is slice:
        return dumpable(obj.start) and dumpable(obj.stop) and dumpable(obj.step)  # type: ignore[attr-defined]
    return False


# ---------------------------------------------------------------------------
# encoding


class Encoded(bytes):
    """Bytes that already are the brine encoding of some value, spliced in as they are.

    The connection caches the encoding of values it sends again and again (a
    netref's boxed reference); only code that built the bytes with :func:`dump`
    may wrap them. It is not :func:`dumpable`, so user data never becomes one.
    """

    __slots__ = ()


def _not_dumpable(obj: object) -> TypeError:
    t = type(obj)
    return TypeError(f"cannot dump {t.__module__}.{t.__qualname__} by value")


def _too_many_digits(exc: ValueError) -> TypeError:
    return TypeError(f"cannot dump int with more digits than the int-to-str limit: {exc}")


# The complete encoding (tag, length, utf-8) of recently dumped short str values:
# attribute and method names recur in nearly every message. Only exact str keys go
# in, so equality is str equality. Cleared when full, so whatever strs the
# application (or a peer, through it) makes us send, it holds at most 1024 strs
# of at most 63 chars (under 1 MB). Each dict operation is atomic under the
# GIL: threads racing on it can only lose an entry, never see a wrong one.
_STR_MEMO: dict[str, bytes] = {}
# longer strs are not looked up (hashing them costs more than encoding); 63 chars
# take at most 252 bytes of utf-8, so the memo holds only the u8 length form
_STR_MEMO_CHARS = 63
_STR_MEMO_SIZE = 1024


def _bad_str(exc: UnicodeEncodeError) -> TypeError:
    return TypeError(f"cannot dump str that is not valid unicode: {exc}")


def _encode_str(value: str, out: list[bytes]) -> None:
    """Append a str too long for the memo."""
    try:
        data = value.encode()  # utf-8, strict
    except UnicodeEncodeError as exc:
        raise _bad_str(exc) from None
    n = len(data)
    if n < 256:
        out.append(_STR_HEAD[n])
        out.append(data)
    else:
        _append_long(out, b"\x08\x0f", data)


def _encode(obj: object, out: list[bytes]) -> None:
    """Append the encoding of any brine value to ``out``."""
    t = type(obj)
    if t is tuple:
        _encode_tuple(obj, out)  # type: ignore[arg-type]
    else:
        # a one-item loop shares the scalar code of _encode_tuple
        _encode_items((obj,), out)


def _encode_tuple(items: tuple[Any, ...], out: list[bytes]) -> None:
    n = len(items)
    out.append(_TUPLE_HEAD[n] if n < 256 else b"\x15" + _pack_u32(n))
    if n >= VECTOR_MIN and _INT_ONLY.issuperset(map(type, items)):
        encoded = _encode_ints(items)
        if encoded is not None:
            out.append(encoded)
            return
    _encode_items(items, out)


def _encode_items(items: tuple[Any, ...], out: list[bytes],
                  _int: type = int, _str: type = str, _tuple: type = tuple, _bool: type = bool,
                  _bytes: type = bytes, _float: type = float, _imm: list[bytes] = _IMM_ENC,
                  _memo: dict[str, bytes] = _STR_MEMO) -> None:
    # The defaults are never passed: they make the per-item type tests and
    # tables local lookups, cheaper than globals. out.append(...) is spelled
    # out because CPython 3.11+ specialises that call (a hoisted bound method is slower).
    for x in items:
        t = type(x)
        if t is _int:
            if x >= -48 and x <= 159:
                out.append(_imm[x + 48])
            else:
                try:
                    digits = b"%d" % x
                except ValueError as exc:  # more digits than sys.get_int_max_str_digits()
                    raise _too_many_digits(exc) from None
                n = len(digits)
                out.append(_INT_HEAD[n] if n < 256 else b"\x17" + _pack_u32(n))
                out.append(digits)
        elif t is _str:
            if len(x) > _STR_MEMO_CHARS:
                _encode_str(x, out)
                continue
            encoded = _memo.get(x)
            if encoded is None:
                try:
                    data = x.encode()  # utf-8, strict
                except UnicodeEncodeError as exc:
                    raise _bad_str(exc) from None
                encoded = _STR_HEAD[len(data)] + data
                if len(_memo) >= _STR_MEMO_SIZE:
                    _memo.clear()
                _memo[x] = encoded
            out.append(encoded)
        elif x is None:
            out.append(b"\x00")
        elif t is _tuple:
            n = len(x)
            if n < VECTOR_MIN:
                out.append(_TUPLE_HEAD[n])
                _encode_items(x, out)
            else:
                _encode_tuple(x, out)
        elif t is _bool:
            out.append(b"\x03" if x else b"\x04")
        elif t is _bytes:
            n = len(x)
            if n < 256:
                out.append(_BYTES_HEAD[n])
                out.append(x)
            else:
                _append_long(out, b"\x0f", x)
        elif t is _float:
            out.append(_pack_tagged_f64(0x18, x))
        elif t is Encoded:
            out.append(x)
        elif x is NotImplemented:
            out.append(b"\x05")
        elif x is Ellipsis:
            out.append(b"\x06")
        elif t is complex:
            out.append(_pack_tagged_c128(TAG_COMPLEX, x.real, x.imag))
        elif t is frozenset:
            out.append(b"\x1a")
            _encode_tuple(tuple(x), out)
        elif t is slice:
            out.append(b"\x19")
            _encode_tuple((x.start, x.stop, x.step), out)
        else:
            raise _not_dumpable(x)


def _append_long(out: list[bytes], tag: bytes, data: bytes) -> None:
    """Append a bytes value in the u32 length form; flag ``out`` with _BIG if it is big."""
    out.append(tag + _pack_u32(len(data)))
    out.append(data)
    if len(data) >= BIG_BYTES and out[0] is not _BIG:
        out.insert(0, _BIG)  # type: ignore[arg-type]


def _encode_ints(items: tuple[int, ...]) -> bytes | None:
    """The items of a tuple of exact ints, in C-level passes; None if unsuitable.

    One ``%`` format turns every int to decimal; each item becomes
    ``16 <len> digits``, except that ints of -48..159 are one immediate byte.
    Runs of items with the same decimal length (sorted or clustered data) are
    joined with their common header in one call; otherwise headers and digits
    are interleaved. Only items of at most 3 characters can be immediates.
    """
    n = len(items)
    try:
        digits = ((b"%d," * n) % items).split(b",")
        digits.pop()
        lengths = bytes(map(len, digits))
    except ValueError:  # beyond the int-to-str limit, or 256+ digits: the slow path says
        return None
    runs = []
    for run in _SAME_LENGTH_RUN.finditer(lengths):
        runs.append(run.span())
        if len(runs) > 8 + n // 64:  # scattered lengths: interleave everything
            return _encode_int_items(items, digits, lengths, 0, n)
    pieces = []
    for start, stop in runs:
        size = lengths[start]
        if size > 3:
            head = _INT_HEAD[size]
            pieces.append(head)
            pieces.append(head.join(digits[start:stop]))
        elif size < 3:  # -9..99: all immediates
            pieces.append(b"".join(map(_IMM_BY_INT.__getitem__, items[start:stop])))
        else:
            pieces.append(_encode_int_items(items, digits, lengths, start, stop))
    return b"".join(pieces)


def _encode_int_items(items: tuple[int, ...], digits: list[bytes], lengths: bytes,
                      start: int, stop: int) -> bytes:
    """Items start..stop as interleaved headers and digits, immediates fixed up."""
    count = stop - start
    parts: list[bytes] = [b""] * (2 * count)
    parts[0::2] = map(_INT_HEAD.__getitem__, lengths[start:stop])
    parts[1::2] = digits[start:stop]
    short = lengths[start:stop].translate(_SHORT_INT)
    if 1 in short:
        chunk = items[start:stop]
        if short.count(b"\x00\x01") > count // 32:
            _fix_immediates(chunk, parts, 0, count)
        else:
            for run in _SHORT_RUN.finditer(short):
                _fix_immediates(chunk, parts, run.start(), run.end())
    return b"".join(parts)


def _fix_immediates(items: tuple[int, ...], parts: list[bytes], start: int, stop: int) -> None:
    """Turn the items start..stop that are -48..159 into their immediate byte."""
    chunk = items[start:stop]
    parts[2 * start:2 * stop:2] = map(_IMM_BY_INT.get, chunk, parts[2 * start:2 * stop:2])
    parts[2 * start + 1:2 * stop:2] = map(_BLANK_BY_INT.get, chunk, parts[2 * start + 1:2 * stop:2])


def _coalesce(out: list[bytes]) -> list[bytes]:
    """Join runs of small parts, keeping parts of BIG_BYTES or more on their own."""
    result: list[bytes] = []
    run: list[bytes] = []
    for part in out:
        if len(part) >= BIG_BYTES:
            if run:
                result.append(b"".join(run))
                run = []
            result.append(part)
        else:
            run.append(part)
    if run:
        result.append(b"".join(run))
    return result


def dump_parts(obj: object) -> list[bytes]:
    """Encode ``obj`` as a non-empty list of byte strings whose concatenation is its brine.

    Large bytes/str values stay separate parts (no copy), ready for a gathered
    socket write; small parts are joined. Raises ``TypeError`` if ``obj`` is
    not :func:`dumpable`.
    """
    out: list[bytes] = []
    _encode(obj, out)
    if out[0] is _BIG:
        del out[0]
        return _coalesce(out)
    return [b"".join(out)]


def dump(obj: object) -> bytes:
    """Encode ``obj`` to brine bytes; raises ``TypeError`` if it is not :func:`dumpable`."""
    if type(obj) is tuple:
        n = len(obj)
        if n < VECTOR_MIN:
            out = [_TUPLE_HEAD[n]]
            _encode_items(obj, out)
            return b"".join(out)
        out = []
        _encode_tuple(obj, out)
    else:
        out = []
        _encode_items((obj,), out)
    return b"".join(out)


# ---------------------------------------------------------------------------
# decoding
#
# Every decode runs inside load_from's single try: an index past the end
# (IndexError), a short struct read (struct.error), bad utf-8 or digits
# (ValueError) all become CodecError there. Slices never raise, so a short
# bytes/str/int body is caught by the final position check instead: positions
# only grow by declared lengths, so any short read leaves pos past the end.
#
# ``data`` is bytes, or (``mv`` true) a memoryview of a big buffer, whose
# slices must be copied to bytes.

_SINGLETON: tuple[Any, ...] = (None, b"", (), True, False, NotImplemented, Ellipsis)
# the value of an immediate by its tag; 0x00-0x1f are no immediates, and the
# table ends at 0xef so that a tag above it fails as an IndexError
_IMM_VALUE = [tag - IMM_BIAS for tag in range(IMM_LAST + 1)]
# the size of a str from the tag of its nested bytes value, -1 for the long forms
_STR_FIXED = [-1] * 256
_STR_FIXED[TAG_EMPTY_BYTES] = 0
for _n in range(1, 5):
    _STR_FIXED[TAG_BYTES1 + _n - 1] = _n
_DIGITS = b"0123456789-"
_IMM_RUN = re.compile(rb"[\x20-\xef]*")
_JSON_LOADS = json.loads


def _int_class_table() -> bytes:
    table = bytearray(b"o" * 256)
    for b in _DIGITS:
        table[b] = ord("d")
    for b in range(1, 0x16):
        table[b] = ord("l")
    table[TAG_INT_L1] = ord("t")
    return bytes(table)


# INT_L1 runs of 1..21 digits (every 64-bit int) are vectorised: a class map
# of the bytes, and per length the class pattern one item must have.
_INT_MAX_VECTOR_DIGITS = 0x15
_INT_CLASSES = _int_class_table()
_INT_PATTERN = [b"tl" + b"d" * n if 1 <= n <= _INT_MAX_VECTOR_DIGITS else b"!" for n in range(256)]
_INT_TO_JSON = bytes.maketrans(bytes(range(1, 0x17)), b" " * 0x15 + b",")


def _bad(pos: int, message: str) -> CodecError:
    return CodecError(f"brine: {message} (at offset {pos})")


def _too_deep(limits: Limits) -> LimitExceeded:
    return LimitExceeded(f"brine: nesting deeper than max_depth={limits.max_depth}")


def _count(data: Any, pos: int, n: int, limits: Limits) -> int:
    """Refuse a tuple count before anything is allocated for it; ``pos`` is after the count."""
    if n > limits.max_container_len:
        raise LimitExceeded(f"brine: tuple of {n} items exceeds max_container_len")
    if n > len(data) - pos:  # every item takes at least one byte
        raise _bad(pos, f"truncated: tuple of {n} items, {len(data) - pos} bytes left")
    return n


def _size(data: Any, pos: int, n: int, limit: int, what: str) -> int:
    """Refuse a bytes/str/int length over its limit or past the end; ``pos`` is after it."""
    if n > limit:
        raise LimitExceeded(f"brine: {what} of {n} bytes exceeds its limit of {limit}")
    if n > len(data) - pos:
        raise _bad(pos, f"truncated: {n} bytes declared, {len(data) - pos} left")
    return n


def _items(data: Any, pos: int, n: int, depth: int, limits: Limits, mv: bool
           ) -> tuple[list[Any], int]:
    """Decode ``n`` consecutive values at ``pos``; returns them and the position after.

    ``depth`` is the nesting level of these values. The general decoder: long
    tuples (with their vectorised int paths), memoryview input, every tag.
    The tag chain is laid out as in :func:`_small`.
    """
    out: list[Any] = []
    vector = n >= VECTOR_MIN
    chunk = 256
    # long tuples iterate an explicit iterator so that the vectorised paths can skip items
    counter: Iterable[int] = iter(range(n)) if vector else _SMALL_RANGES[n]
    for i in counter:
        tag = data[pos]
        if tag >= 0x20:
            if tag > 0xEF:
                raise _bad(pos, f"unknown tag 0x{tag:02x}")
            if vector and n - i > VECTOR_MIN and data[pos + 1] >= 0x20:
                stop = _IMM_RUN.match(data, pos, pos + n - i).end()  # type: ignore[union-attr]
                out.extend(map(_IMM_VALUE.__getitem__, data[pos:stop]))
                counter.__setstate__(i + stop - pos)  # type: ignore[attr-defined]
                pos = stop
            else:
                out.append(tag - 0x50)
                pos += 1
        elif tag == 0x08:
            size = _STR_FIXED[data[pos + 1]]
            if size >= 0:
                pos += 2 + size
            elif data[pos + 1] == 0x0E:  # 5-255 bytes, where most names are
                size = data[pos + 2]
                pos += 3 + size
            else:
                size, pos = _long_str_size(data, pos, limits)
            if mv:
                out.append(bytes(data[pos - size:pos]).decode())
            else:
                out.append(data[pos - size:pos].decode())  # utf-8, strict
        elif tag < 0x10:
            if tag <= 0x06:
                out.append(_SINGLETON[tag])
                pos += 1
            elif tag >= 0x0A and tag <= 0x0D:
                pos += tag - 0x08
                out.append(bytes(data[pos - tag + 0x09:pos]) if mv else data[pos - tag + 0x09:pos])
            else:  # long bytes, and the unknown tags 07 and 09
                value, pos = _rare(data, pos, tag, depth, limits, mv)
                out.append(value)
        elif tag <= 0x15:  # tuples: every message is made of them
            if depth >= limits.max_depth:
                raise _too_deep(limits)
            if tag <= 0x13:
                if not mv:
                    small, pos = _small(data, pos + 1, tag - 0x0F, depth + 1, limits)
                    out.append(small)
                    continue
                value, pos = _items(data, pos + 1, tag - 0x0F, depth + 1, limits, mv)
            elif tag == 0x14:
                value, pos = _items(data, pos + 2, data[pos + 1], depth + 1, limits, mv)
            else:
                size = _count(data, pos + 5, _unpack_u32(data, pos + 1)[0], limits)
                value, pos = _items(data, pos + 5, size, depth + 1, limits, mv)
            out.append(tuple(value))
        elif tag == 0x16:
            if vector and n - i > VECTOR_MIN:
                run = _int_run(data, pos, n - i, chunk, mv)
                if run is None:
                    vector = False  # not worth trying again in this tuple
                else:
                    values, pos = run
                    out.extend(values)
                    counter.__setstate__(i + len(values))  # type: ignore[attr-defined]
                    chunk = min(chunk * 2, 1 << 16) if len(values) * 2 >= chunk else 256
                    continue
            size = data[pos + 1]
            pos += 2 + size
            digits = bytes(data[pos - size:pos]) if mv else data[pos - size:pos]
            # int() alone would also take spaces, "+" and "_"; brine has only [-]digits
            out.append(int(digits) if digits.isdigit() else _signed_int(digits, pos))
        elif tag == 0x18:
            out.append(_unpack_f64(data, pos + 1)[0])
            pos += 9
        else:
            value, pos = _rare(data, pos, tag, depth, limits, mv)
            out.append(value)
    return out, pos


def _small(data: Any, pos: int, n: int, depth: int, limits: Limits,
           _str_fixed: list[int] = _STR_FIXED, _singleton: tuple[Any, ...] = _SINGLETON,
           _f64: Callable[[Any, int], tuple[Any, ...]] = _unpack_f64, _int: type = int,
           _imm: list[int] = _IMM_VALUE) -> tuple[tuple[Any, ...], int]:
    """A tuple of ``n`` < VECTOR_MIN items at ``pos`` in ``data`` (bytes): every message.

    The lean twin of :func:`_items` for small tuples: one ``if`` per tag range,
    most common first, and no memoryview handling (big buffers take _items).
    Rare tags are decoded by :func:`_items`. Returns the tuple and the position after it.
    """
    # A flat chain: a compare followed by a long jump (EXTENDED_ARG) is not
    # specialised by CPython 3.11, so big branches come after the small ones.
    # The defaults are never passed: local lookups, as in _encode_items.
    out: list[Any] = []
    for _ in _SMALL_RANGES[n]:
        tag = data[pos]
        if tag >= 0x20:
            out.append(_imm[tag])  # IndexError for the unknown tags f0-ff
            pos += 1
        elif tag == 0x08:
            size = _str_fixed[data[pos + 1]]
            if size >= 0:
                start = pos + 2
                pos = start + size
            elif data[pos + 1] == 0x0E:  # 5-255 bytes, where most names are
                start = pos + 3
                pos = start + data[pos + 2]
            else:
                size, pos = _long_str_size(data, pos, limits)
                start = pos - size
            out.append(data[start:pos].decode())  # utf-8, strict
        elif tag < 0x10:
            if tag <= 0x06:
                out.append(_singleton[tag])
                pos += 1
            elif tag >= 0x0A and tag <= 0x0D:
                pos += tag - 0x08
                out.append(data[pos - tag + 0x09:pos])
            else:  # long bytes, and the unknown tags 07 and 09
                value, pos = _rare(data, pos, tag, depth, limits, False)
                out.append(value)
        elif tag <= 0x14:
            if depth >= limits.max_depth:
                raise _too_deep(limits)
            if tag < 0x14:
                value, pos = _small(data, pos + 1, tag - 0x0F, depth + 1, limits)
            elif data[pos + 1] < VECTOR_MIN:
                value, pos = _small(data, pos + 2, data[pos + 1], depth + 1, limits)
            else:
                items, pos = _items(data, pos + 2, data[pos + 1], depth + 1, limits, False)
                value = tuple(items)
            out.append(value)
        elif tag == 0x16:
            start = pos + 2
            pos = start + data[pos + 1]
            digits = data[start:pos]
            # int() alone would also take spaces, "+" and "_"; brine has only [-]digits
            out.append(_int(digits) if digits.isdigit() else _signed_int(digits, pos))
        elif tag == 0x18:
            out.append(_f64(data, pos + 1)[0])
            pos += 9
        else:  # long tuples and rare values
            items, pos = _items(data, pos, 1, depth, limits, False)
            out.append(items[0])
    return tuple(out), pos


def _long_str_size(data: Any, pos: int, limits: Limits) -> tuple[int, int]:
    """The size of a str at ``pos`` in the u32 length form, and the end of its bytes."""
    if data[pos + 1] != TAG_BYTES_L4:
        raise _bad(pos, "str tag must be followed by a bytes value")
    size = _size(data, pos + 6, _unpack_u32(data, pos + 2)[0], limits.max_bytes_len, "str")
    return size, pos + 6 + size


def _signed_int(digits: bytes, pos: int) -> int:
    if digits[:1] == b"-" and digits[1:].isdigit():
        return int(digits)
    raise _bad(pos, f"invalid int digits {digits[:20]!r}")


def _rare(data: Any, pos: int, tag: int, depth: int, limits: Limits, mv: bool
          ) -> tuple[Any, int]:
    """Tags 0e, 0f, 17, 19, 1a, 1b and the unused ones; returns the value and the next pos."""
    if tag == TAG_BYTES_L1 or tag == TAG_BYTES_L4:
        if tag == TAG_BYTES_L1:
            size = data[pos + 1]
            pos += 2
        else:
            if type(data) is Spliced and pos == data.hole:  # received into its own bytes
                whole = data.value
                if len(whole) > limits.max_bytes_len:
                    raise LimitExceeded(f"brine: bytes of {len(whole)} bytes exceeds its "
                                        f"limit of {limits.max_bytes_len}")
                return whole, pos + 5
            size = _size(data, pos + 5, _unpack_u32(data, pos + 1)[0], limits.max_bytes_len,
                         "bytes")
            pos += 5
        raw = data[pos:pos + size]
        return (bytes(raw) if mv else raw), pos + size
    if tag == TAG_INT_L4:
        # +1: a minus sign
        size = _size(data, pos + 5, _unpack_u32(data, pos + 1)[0], limits.max_int_digits + 1,
                     "int")
        digits = bytes(data[pos + 5:pos + 5 + size])
        if size - (digits[:1] == b"-") > limits.max_int_digits:
            raise LimitExceeded(f"brine: int of {size} digits exceeds max_int_digits")
        try:
            value = int(digits) if digits.isdigit() else _signed_int(digits, pos)
            return value, pos + 5 + size
        except CodecError:
            raise
        except ValueError:  # digits pass the check but exceed the interpreter's limit
            raise LimitExceeded("brine: int exceeds the interpreter's digit limit") from None
    if tag == TAG_COMPLEX:
        real, imag = _unpack_c128(data, pos + 1)
        return complex(real, imag), pos + 17
    if tag == TAG_SLICE or tag == TAG_FROZENSET:
        inner = data[pos + 1]
        if not 0x10 <= inner <= 0x15 and inner != TAG_EMPTY_TUPLE:
            raise _bad(pos, "slice and frozenset must hold a tuple")
        if depth >= limits.max_depth:  # the wrapper is one level, its tuple another
            raise LimitExceeded(f"brine: nesting deeper than max_depth={limits.max_depth}")
        wrapped, pos = _items(data, pos + 1, 1, depth + 1, limits, mv)
        items = wrapped[0]
        if tag == TAG_FROZENSET:
            try:
                if len(items) > 1:  # before building it: a flooded set takes minutes
                    check_spread(items, limits.max_hash_collisions,
                                 f"brine: a frozenset of {len(items)} items")
                return frozenset(items), pos
            except TypeError:  # an unhashable item, e.g. a slice before Python 3.12
                raise _bad(pos, "frozenset holds an unhashable item") from None
        if len(items) != 3:
            raise _bad(pos, "slice must hold a 3-tuple")
        return slice(*items), pos
    raise _bad(pos, f"unknown tag 0x{tag:02x}")


def _int_run(data: Any, pos: int, limit: int, chunk: int, mv: bool
             ) -> tuple[list[int], int] | None:
    """Decode up to ``min(limit, chunk)`` consecutive INT_L1 items at once.

    Returns the values and the position after them, or ``None`` when fewer than
    VECTOR_MIN items qualify (the caller then goes item by item).

    Exactness: ``skeleton`` is the span without digits and ``-``; in a valid run
    it alternates 0x16 and a length byte, which gives the lengths L1, L2...
    The run is accepted only if its byte classes equal, item for item,
    ``t l d*L``: a 0x16, one length byte in 1..21 (never a digit or ``-``),
    then exactly L digit-or-minus bytes. That is precisely what the
    item-by-item decoder reads, so the digit runs are the same tokens; ``json``
    then parses them (leading zeros, a bare or misplaced ``-`` fail there, and
    the caller falls back to the item-by-item path, which has the last word).
    """
    first = data[pos + 1]
    if not 1 <= first <= _INT_MAX_VECTOR_DIGITS:
        return None
    want = min(limit, chunk)
    span = data[pos:pos + want * (first + 3)]
    if mv:
        span = bytes(span)
    skeleton = span.translate(None, _DIGITS)
    tags = skeleton[0::2]
    count = min(len(tags) - len(tags.lstrip(b"\x16")), want, len(skeleton) // 2)
    lengths = skeleton[1:2 * count:2]
    if count and lengths.count(lengths[:1]) == count:  # all the same length: common
        expected = _INT_PATTERN[lengths[0]] * count
    else:
        expected = b"".join(map(_INT_PATTERN.__getitem__, lengths))
    size = len(expected)
    classes = span.translate(_INT_CLASSES)
    if size > len(span) or not classes.startswith(expected):
        # keep the longest valid prefix: k items take 2*k + sum(lengths[:k]) bytes
        low, high = 0, count
        while low < high:
            mid = (low + high + 1) // 2
            size = 2 * mid + sum(lengths[:mid])
            if size <= len(span) and classes.startswith(expected[:size]):
                low = mid
            else:
                high = mid - 1
        count = low
        size = 2 * count + sum(lengths[:count])
    if count < VECTOR_MIN:
        return None
    try:
        values: list[int] = _JSON_LOADS(b"[%b]" % span[1:size].translate(_INT_TO_JSON))
    except ValueError:
        return None
    return values, pos + size


# What decoding malformed input can raise besides CodecError; _decode_error maps them.
_DECODE_ERRORS = (IndexError, ValueError, struct.error, TypeError, RecursionError, MemoryError)


def _decode_error(exc: BaseException) -> CodecError:
    if isinstance(exc, RecursionError):  # only with a max_depth above the interpreter's
        return LimitExceeded("brine: nesting too deep for this interpreter")
    if isinstance(exc, MemoryError):
        return LimitExceeded("brine: value too large to allocate")
    return CodecError(f"brine: malformed or truncated input ({type(exc).__name__}: {exc})")


def _end_error(pos: int, size: int) -> CodecError:
    if pos > size:
        return CodecError(f"brine: truncated: the value needs {pos - size} more bytes")
    return CodecError(f"brine: {size - pos} trailing bytes after the value")


def load_from(
    data: bytes | bytearray | memoryview, offset: int = 0, limits: Limits = DEFAULT_LIMITS
) -> Any:
    """Decode the single brine value that fills ``data[offset:]``.

    Raises :class:`~rpyc_ipy.errors.CodecError` for malformed input or trailing
    bytes, :class:`~rpyc_ipy.errors.LimitExceeded` when ``limits`` are exceeded.
    """
    if type(data) is not bytes or offset < 0:
        if type(data) is Spliced and offset >= 0:
            return _load_spliced(data, offset, limits)
        return _load_buffer(data, offset, limits)
    value: Any
    try:
        tag = data[offset]
        # the usual message, a small tuple, goes straight to _small
        if tag >= 0x10 and tag <= 0x13:
            value, pos = _small(data, offset + 1, tag - 0x0F, 1, limits)
        elif tag == 0x14 and (count := data[offset + 1]) < VECTOR_MIN:
            value, pos = _small(data, offset + 2, count, 1, limits)
        else:
            items, pos = _items(data, offset, 1, 0, limits, False)
            value = items[0]
    except CodecError:
        raise
    except _DECODE_ERRORS as exc:
        raise _decode_error(exc) from None
    if pos != len(data):
        raise _end_error(pos, len(data))
    if limits.check_short:
        _check_short(value, limits)
    return value


def _load_spliced(data: Spliced, offset: int, limits: Limits) -> Any:
    """load_from for a frame body whose large bytes value was received apart."""
    return _load_whole(data, offset, limits, False)


def _load_buffer(data: bytes | bytearray | memoryview, offset: int, limits: Limits) -> Any:
    """load_from for anything but bytes: small buffers are copied, big ones sliced as views."""
    if offset < 0:
        raise CodecError(f"brine: negative offset {offset}")
    view = memoryview(data).cast("B")
    if len(view) - offset <= BIG_BYTES:
        return load_from(bytes(view[offset:]), 0, limits)
    return _load_whole(view, offset, limits, True)  # only the decoded values get copied


def _load_whole(data: Any, offset: int, limits: Limits, views: bool) -> Any:
    """The one value that fills ``data[offset:]``, through the general decoder."""
    try:
        items, pos = _items(data, offset, 1, 0, limits, views)
    except CodecError:
        raise
    except _DECODE_ERRORS as exc:
        raise _decode_error(exc) from None
    if pos != len(data):
        raise _end_error(pos, len(data))
    if limits.check_short:
        _check_short(items[0], limits)
    return items[0]


def _check_short(value: Any, limits: Limits) -> None:
    """Apply limits below 255 to a decoded value.

    The decoder checks the u8 length forms (at most 255 bytes, digits or items,
    so never a memory risk) only through this walk, and only when a limit is
    that small (``Limits.check_short``); the u32 forms are checked before use.
    """
    t = type(value)
    if t is bytes or t is str:
        size = len(value if t is bytes else value.encode("utf-8"))
        if size > limits.max_bytes_len:
            raise LimitExceeded(f"brine: {t.__name__} of {size} bytes exceeds max_bytes_len")
    elif t is int:
        if len(str(abs(value))) > limits.max_int_digits:
            raise LimitExceeded("brine: int exceeds max_int_digits")
    elif t is tuple or t is frozenset:
        if len(value) > limits.max_container_len:
            raise LimitExceeded(f"brine: tuple of {len(value)} items exceeds max_container_len")
        for item in value:
            _check_short(item, limits)
    elif t is slice:
        for item in (value.start, value.stop, value.step):
            _check_short(item, limits)


def load(data: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Decode one brine value that fills all of ``data``; see :func:`load_from`."""
    # load_from's code for bytes at offset 0, repeated to save a call per message
    if type(data) is not bytes:
        return _load_buffer(data, 0, limits)
    value: Any
    try:
        tag = data[0]
        if tag >= 0x10 and tag <= 0x13:
            value, pos = _small(data, 1, tag - 0x0F, 1, limits)
        elif tag == 0x14 and (count := data[1]) < VECTOR_MIN:
            value, pos = _small(data, 2, count, 1, limits)
        else:
            items, pos = _items(data, 0, 1, 0, limits, False)
            value = items[0]
    except CodecError:
        raise
    except _DECODE_ERRORS as exc:
        raise _decode_error(exc) from None
    if pos != len(data):
        raise _end_error(pos, len(data))
    if limits.check_short:
        _check_short(value, limits)
    return value
