"""Shared pieces of the fuzz tests: settings, value strategies, a reference brine decoder.

The reference decoder is written from spec §4 in the plainest way (one value at
a time, recursion, no fast paths), so the real decoder's vectorised and
one-``try`` shortcuts can be checked against it on arbitrary input.
"""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

#: every fuzz test: bounded examples and time, no example database in the tree
FUZZ = settings(
    max_examples=300,
    deadline=None,  # no timing thresholds in tests: a loaded machine is not a failure
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class ReferenceError_(Exception):
    """The reference decoder refused its input."""


def reference_load(data: bytes, max_depth: int = 64) -> Any:
    """Decode one brine value filling ``data``, or raise ReferenceError_."""
    try:
        value, pos = _value(data, 0, 0, max_depth)
    except (IndexError, ValueError, TypeError, struct.error) as exc:
        raise ReferenceError_(str(exc)) from None
    if pos != len(data):
        raise ReferenceError_("trailing or missing bytes")
    return value


def _take(data: bytes, pos: int, n: int) -> tuple[bytes, int]:
    if pos + n > len(data):
        raise ReferenceError_("truncated")
    return data[pos:pos + n], pos + n


def _length(data: bytes, pos: int, wide: bool) -> tuple[int, int]:
    raw, pos = _take(data, pos, 4 if wide else 1)
    return int.from_bytes(raw, "big"), pos


def _value(data: bytes, pos: int, depth: int, max_depth: int) -> tuple[Any, int]:
    raw, pos = _take(data, pos, 1)
    tag = raw[0]
    if 0x20 <= tag <= 0xEF:
        return tag - 0x50, pos
    singletons = {0: None, 1: b"", 2: (), 3: True, 4: False, 5: NotImplemented, 6: Ellipsis}
    if tag in singletons:
        return singletons[tag], pos
    if 0x0A <= tag <= 0x0D:
        return _take(data, pos, tag - 0x09)
    if tag in (0x0E, 0x0F):
        n, pos = _length(data, pos, tag == 0x0F)
        return _take(data, pos, n)
    if tag == 0x08:
        if pos >= len(data) or data[pos] not in (0x01, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F):
            raise ReferenceError_("str needs a bytes value")
        raw, pos = _value(data, pos, depth, max_depth)
        return raw.decode("utf-8"), pos
    if 0x10 <= tag <= 0x15:
        if depth >= max_depth:
            raise ReferenceError_("too deep")
        if tag <= 0x13:
            n = tag - 0x0F
        else:
            n, pos = _length(data, pos, tag == 0x15)
        items = []
        for _ in range(n):
            item, pos = _value(data, pos, depth + 1, max_depth)
            items.append(item)
        return tuple(items), pos
    if tag in (0x16, 0x17):
        n, pos = _length(data, pos, tag == 0x17)
        digits, pos = _take(data, pos, n)
        body = digits[1:] if digits[:1] == b"-" else digits
        if not body.isdigit():
            raise ReferenceError_("bad digits")
        return int(digits), pos
    if tag == 0x18:
        raw, pos = _take(data, pos, 8)
        return struct.unpack(">d", raw)[0], pos
    if tag == 0x1B:
        raw, pos = _take(data, pos, 16)
        real, imag = struct.unpack(">dd", raw)
        return complex(real, imag), pos
    if tag in (0x19, 0x1A):
        if depth >= max_depth:
            raise ReferenceError_("too deep")
        if pos >= len(data) or data[pos] not in (0x02, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15):
            raise ReferenceError_("needs a tuple")
        items, pos = _value(data, pos, depth + 1, max_depth)
        if tag == 0x1A:
            return frozenset(items), pos
        if len(items) != 3:
            raise ReferenceError_("slice needs 3 items")
        return slice(*items), pos
    raise ReferenceError_(f"unknown tag {tag:#x}")




# -- strategies -------------------------------------------------------------------------------

ints = st.one_of(
    st.integers(-60, 170),
    st.integers(-(2**64), 2**64),
    st.integers(-(10**300), 10**300),
)
scalars = st.one_of(
    st.none(), st.booleans(), ints,
    st.floats(allow_nan=True, allow_infinity=True),
    st.complex_numbers(allow_nan=True, allow_infinity=True),
    st.binary(max_size=300), st.text(max_size=60),
    st.just(NotImplemented), st.just(Ellipsis),
)
hashables = st.one_of(st.none(), st.booleans(), ints, st.binary(max_size=8), st.text(max_size=8))
int_tuples = st.lists(
    st.one_of(st.integers(-60, 170), st.integers(-(2**63), 2**63),
              st.integers(1000, 1100), st.integers(-(10**25), 10**25)),
    min_size=16, max_size=400,
).map(tuple)
sorted_int_tuples = int_tuples.map(lambda t: tuple(sorted(t)))
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=24).map(tuple),
        st.frozensets(hashables, max_size=8),
        st.builds(slice, children, children, children),
        int_tuples, sorted_int_tuples,
    ),
    max_leaves=60,
)
