"""brine against the vectors real rpyc 6.0.2 produced, its limits, and its fast paths."""

from __future__ import annotations

import math
import random
import sys
from typing import Any

import pytest
from codec_vectors import same_value, spec_json
from rpyc.core import brine as rpyc_brine

from rpyc_ipy.errors import CodecError, LimitExceeded
from rpyc_ipy.protocol import brine
from rpyc_ipy.protocol.limits import Limits

pytestmark = pytest.mark.timeout(60)

VECTORS = spec_json("brine-vectors.json")


def _value(expression: str) -> Any:
    return eval(expression, {"__name__": "vectors"})  # the vectors' own expressions


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["python"][:40])
def test_vector_encodes_and_decodes(vector: dict[str, str]) -> None:
    value = _value(vector["python"])
    data = bytes.fromhex(vector["hex"])
    assert brine.dumpable(value)
    assert brine.dump(value) == data
    assert b"".join(brine.dump_parts(value)) == data
    assert same_value(brine.load(data), value)
    assert same_value(brine.load(bytearray(data)), value)
    assert same_value(brine.load(memoryview(data)), value)
    assert same_value(brine.load_from(b"\x01\x02\x03" + data, 3), value)


@pytest.mark.parametrize("vector", VECTORS["nan_vectors"], ids=lambda v: v["python"])
def test_nan_vectors(vector: dict[str, str]) -> None:
    value = brine.load(bytes.fromhex(vector["hex"]))
    assert math.isnan(value.real)
    assert brine.dump(value)[:1] == bytes.fromhex(vector["hex"])[:1]


@pytest.mark.parametrize("vector", VECTORS["not_dumpable"], ids=lambda v: v["python"][:40])
def test_not_dumpable(vector: dict[str, Any]) -> None:
    value = _value(vector["python"])
    assert not brine.dumpable(value)
    with pytest.raises(TypeError):
        brine.dump(value)
    with pytest.raises(TypeError):
        brine.dump_parts(value)
    with pytest.raises(TypeError):
        brine.dump((1, 2, value))


def test_values_rpyc_cannot_dump_either() -> None:
    huge = 10 ** (sys.get_int_max_str_digits() or 4300)
    assert brine.dumpable(huge)  # as in rpyc: dumpable() says yes, dump() refuses
    with pytest.raises(TypeError):
        brine.dump(huge)
    with pytest.raises(TypeError):
        brine.dump(tuple([huge] * 20))  # the vectorised int path refuses too
    with pytest.raises(TypeError):
        brine.dump("lone \udc80 surrogate")


def test_dump_parts_keeps_big_values_uncopied() -> None:
    big = b"B" * (brine.BIG_BYTES + 1)
    value = (1, "small", big, (2, big), None)
    parts = brine.dump_parts(value)
    assert b"".join(parts) == brine.dump(value)
    assert sum(part is big for part in parts) == 2
    assert len(parts) == 5  # small pieces joined around the two big ones
    assert brine.dump_parts((1, 2, 3)) == [brine.dump((1, 2, 3))]


def test_big_memoryview_input_gives_bytes() -> None:
    blob = bytes(range(256)) * 1024
    value = (1, blob, "text", tuple(range(-100, 5000)), b"tiny")
    data = bytearray(b"\xff" * 7 + brine.dump(value))
    loaded = brine.load_from(memoryview(data), 7)
    assert same_value(loaded, value)
    assert type(loaded[1]) is bytes and type(loaded[4]) is bytes


# -- the vectorised int paths must agree with rpyc and with the item-by-item path ------------


def _int_tuples() -> list[tuple[int, ...]]:
    r = random.Random(7)
    tuples = [tuple(range(10_000)), tuple(range(-5000, 5000, 3)),
              tuple(range(10**15, 10**15 + 500))]
    for lo, hi in [(-60, 170), (-10**6, 10**6), (-2**63, 2**64), (150, 170), (0, 10**30)]:
        for n in (16, 17, 100, 2000):
            tuples.append(tuple(r.randrange(lo, hi) for _ in range(n)))
            tuples.append(tuple(sorted(r.randrange(lo, hi) for _ in range(n))))
    tuples.append(tuple([10**21] * 40))  # 22 digits: the length byte is the INT_L1 tag itself
    tuples.append(tuple([-(10**20)] * 40))
    tuples.append(tuple([10**250] * 20))  # long decimal forms stay item by item
    return tuples


@pytest.mark.parametrize("value", _int_tuples(), ids=lambda v: f"{len(v)}@{v[0]}")
def test_int_tuples_match_rpyc(value: tuple[int, ...]) -> None:
    data = rpyc_brine.dump(value)
    assert brine.dump(value) == data
    assert same_value(brine.load(data), value)
    mixed = (*value, "end", *value)
    assert brine.dump(mixed) == rpyc_brine.dump(mixed)
    assert same_value(brine.load(brine.dump(mixed)), mixed)


def test_int_run_edge_encodings_decode_like_the_item_path() -> None:
    run = b"".join(b"\x16\x03%d" % i for i in range(200, 240))
    cases = {
        # a leading zero is not canonical but valid: json refuses it, the item path takes it
        b"\x14\x28" + run[:50] + b"\x16\x03007" + run[55:]: None,
        # an immediate that is a digit byte right after the run ('0' is -32)
        b"\x14\x29" + run + b"\x30": (*range(200, 240), -32),
        # a '-' immediate (-35) between two runs
        b"\x14\x51" + run + b"\x2d" + run: (*range(200, 240), -35, *range(200, 240)),
    }
    for data, expected in cases.items():
        loaded = brine.load(data)
        if expected is not None:
            assert loaded == expected
        assert loaded == rpyc_brine.load(data)
    for bad in (b"\x16\x031-2", b"\x16\x03--1", b"\x16\x03+12", b"\x16\x03 12", b"\x16\x031_2"):
        data = b"\x14\x28" + run[:50] + bad + run[55:]
        with pytest.raises(CodecError):
            brine.load(data)


# -- malformed input: CodecError only -------------------------------------------------------


@pytest.mark.parametrize("data", [
    b"", b"\x07", b"\x09", b"\x1c", b"\x1f", b"\xf0", b"\xff",
    b"\x50\x50",  # trailing bytes
    b"\x0d\x00", b"\x0e\x05ab", b"\x0f\x00\x00\x00\x05ab", b"\x18\x00", b"\x1b" + b"\x00" * 15,
    b"\x13\x50\x50", b"\x14\x05\x50", b"\x15\x00\x00\x00\x02\x50",
    b"\x08\x50", b"\x08\x10\x0a\x61", b"\x08\x0b\xc3\x28", b"\x08\x0d\xed\xa0\x80\x61",
    b"\x16\x02+1", b"\x16\x02 1", b"\x16\x031_0", b"\x16\x01-", b"\x16\x00", b"\x16\x02\xd9\xa1",
    b"\x17\x00\x00\x00\x02-1x",
    b"\x19\x11\x50\x50", b"\x19\x50", b"\x1a\x50", b"\x1a\x10\x19\x12\x50\x50\x50",
    b"\x0f\xff\xff\xff\xff", b"\x15\x00\xff\xff\xff\x50\x50",
    b"\x17\xff\xff\xff\xff",
], ids=lambda d: d.hex() or "empty")
def test_malformed_input_is_a_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        brine.load(data)
    with pytest.raises(CodecError):
        brine.load(memoryview(bytearray(b"\x00" * brine.BIG_BYTES + data))[brine.BIG_BYTES:])


def test_negative_offset_is_refused() -> None:
    with pytest.raises(CodecError):
        brine.load_from(b"\x50", -1)


# -- one step over each limit ----------------------------------------------------------------


def _nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = (value,)
    return value


def test_depth_limit() -> None:
    limits = Limits(max_depth=3)
    # a frozenset or slice is one level and the tuple it holds another; () is no level
    at_limit = [_nested(3), (((1,),),) + (1,) * 20, (frozenset([1]),), (slice(1, 2, 3),),
                ((((),),),)]
    for value in at_limit:
        assert brine.load(brine.dump(value), limits) == value
    over = [_nested(4), ((((1,),),),) + (1,) * 20, ((frozenset([1]),),), ((slice(1, 2, 3),),),
            frozenset([((1,),)])]
    for value in over:
        with pytest.raises(LimitExceeded):
            brine.load(brine.dump(value), limits)


def test_depth_beyond_the_interpreter_is_a_limit_error() -> None:
    data = b"\x10" * 100_000 + b"\x50"
    with pytest.raises(LimitExceeded):
        brine.load(data, Limits(max_depth=10**6))
    with pytest.raises(LimitExceeded):
        brine.load(data)


@pytest.mark.parametrize("limit", [5, 300])  # the u8 and the u32 length forms
def test_container_limit(limit: int) -> None:
    limits = Limits(max_container_len=limit)
    assert brine.load(brine.dump(tuple(range(limit))), limits) == tuple(range(limit))
    with pytest.raises(LimitExceeded):
        brine.load(brine.dump(tuple(range(limit + 1))), limits)
    with pytest.raises(LimitExceeded):
        brine.load(brine.dump(frozenset(range(limit + 1))), limits)


def test_declared_container_longer_than_the_data_is_refused_before_allocating() -> None:
    with pytest.raises(CodecError) as info:
        brine.load(b"\x15\x00\xff\xff\xff" + b"\x50" * 100)
    assert not isinstance(info.value, LimitExceeded)
    with pytest.raises(LimitExceeded):
        brine.load(b"\x15\x7f\xff\xff\xff" + b"\x50" * 100, Limits(max_container_len=1000))


@pytest.mark.parametrize("limit", [3, 1000])
def test_bytes_limit(limit: int) -> None:
    limits = Limits(max_bytes_len=limit)
    for value in (b"x" * limit, "x" * limit, "é" * (limit // 2)):
        assert brine.load(brine.dump(value), limits) == value
    # the last one is a str in a tuple: the limit holds inside containers too
    for too_long in (b"x" * (limit + 1), "x" * (limit + 1), ("é" * ((limit + 2) // 2),)):
        with pytest.raises(LimitExceeded):
            brine.load(brine.dump(too_long), limits)


def test_declared_bytes_longer_than_the_data_is_refused() -> None:
    with pytest.raises(CodecError) as info:
        brine.load(b"\x0f\x00\xff\xff\xff" + b"x" * 10)
    assert not isinstance(info.value, LimitExceeded)
    with pytest.raises(LimitExceeded):
        brine.load(b"\x0f\x7f\xff\xff\xff", Limits(max_bytes_len=1 << 20))


@pytest.mark.parametrize("limit", [5, 300])
def test_int_digit_limit(limit: int) -> None:
    limits = Limits(max_int_digits=limit)
    for value in (10**limit - 1, -(10**limit - 1)):
        assert brine.load(brine.dump(value), limits) == value
    for value in (10**limit, -(10**limit), (1, 10**limit)):
        with pytest.raises(LimitExceeded):
            brine.load(brine.dump(value), limits)


def test_int_over_the_interpreter_limit_is_a_limit_error() -> None:
    digits = (sys.get_int_max_str_digits() or 4300) + 1
    data = b"\x17" + digits.to_bytes(4, "big") + b"1" * digits
    with pytest.raises(LimitExceeded):
        brine.load(data, Limits(max_int_digits=digits))
    with pytest.raises(LimitExceeded):
        brine.load(data)
