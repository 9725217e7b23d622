"""Property tests for brine: round trips, agreement with rpyc and a reference, bad input."""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest
from codec_vectors import same_value
from fuzzkit import FUZZ, ReferenceError_, int_tuples, reference_load, values
from hypothesis import given
from hypothesis import strategies as st
from rpyc.core import brine as rpyc_brine

from rpyc_ipy.errors import CodecError
from rpyc_ipy.protocol import brine

pytestmark = pytest.mark.timeout(30)  # the whole module runs in seconds; a hang must not wait 120 s


def _outcome(data: bytes) -> tuple[str, Any]:
    try:
        return "value", brine.load(data)
    except CodecError:
        return "error", None


def _agrees_with_reference(data: bytes) -> None:
    got, value = _outcome(data)
    try:
        expected = reference_load(data)
    except ReferenceError_:
        assert got == "error", data.hex()
        return
    assert got == "value", data.hex()
    assert same_value(value, expected), data.hex()
    # the memoryview path (big inputs) decodes the same
    padded = memoryview(bytearray(b"\x00" * brine.BIG_BYTES + data))
    assert same_value(brine.load_from(padded, brine.BIG_BYTES), expected)


@FUZZ
@given(values)
def test_round_trip(value: Any) -> None:
    data = brine.dump(value)
    assert same_value(brine.load(data), value)
    assert b"".join(brine.dump_parts(value)) == data
    assert brine.dumpable(value)


@FUZZ
@given(values)
def test_same_bytes_as_rpyc(value: Any) -> None:
    assert brine.dump(value) == rpyc_brine.dump(value)


@FUZZ
@given(st.one_of(int_tuples, st.tuples(int_tuples, st.text(max_size=3), int_tuples)))
def test_int_tuples_agree_with_the_reference(value: Any) -> None:
    data = brine.dump(value)
    assert data == rpyc_brine.dump(value)
    assert same_value(reference_load(data), value)
    _agrees_with_reference(data)


@FUZZ
@given(st.binary(max_size=3000))
def test_random_bytes_give_a_value_or_codec_error(data: bytes) -> None:
    _agrees_with_reference(data)


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(brine.dump(draw(values)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "delete", "length"]))
        if not data:
            data.append(draw(st.integers(0, 255)))
            continue
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 4))]
        else:  # a plausible tag with a huge or off-by-one length
            data[at:at] = draw(st.sampled_from([b"\x0f\xff\xff\xff\xff", b"\x15\x00\xff\xff\xff",
                                                b"\x17\x00\x00\x10\x00", b"\x14\xff", b"\x16\x15"]))
    return bytes(data)


@FUZZ
@given(_mutated())
def test_mutated_encodings_give_a_value_or_codec_error(data: bytes) -> None:
    _agrees_with_reference(data)


@FUZZ
@given(st.one_of(_mutated(), st.binary(max_size=2000)))
def test_decoding_memory_is_bounded(data: bytes) -> None:
    tracemalloc.start()
    try:
        _outcome(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # a decoded value costs at most a few hundred bytes per input byte (a frozenset
    # of one-byte ints is the worst case), never what a declared length claims
    assert peak < (1 << 20) + 300 * len(data)
