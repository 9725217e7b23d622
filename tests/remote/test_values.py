"""By-value packing: round trips, refusals, pickle on both sides' terms, malformed input."""

from __future__ import annotations

import fractions

import pytest

from rpyc_ipy.protocol import brine
from rpyc_ipy.remote.values import NotByValue, TooLarge, pack, unpack

PLAIN = [None, True, 3, -(10**40), 2.5, 1j, "text", b"bytes", (1, (2, 3)), [1, [2]],
         {"a": {1: [None]}}, {1, 2}, frozenset({3}), bytearray(b"ab"), range(1, 9, 2),
         {(1, 2): "tuple key"}, [], {}, ()]


@pytest.mark.parametrize("value", PLAIN, ids=repr)
def test_plain_data_round_trips_through_brine(value: object) -> None:
    packed = pack(value)
    assert brine.dumpable(packed)
    again = unpack(brine.load(brine.dump(packed)))
    assert again == value and type(again) is type(value)


def test_other_objects_need_pickle_on_both_sides() -> None:
    value = fractions.Fraction(1, 3)
    with pytest.raises(NotByValue, match="pickle is not allowed") as refused:
        pack([value])
    # the message names the type and what the user can do instead
    assert "fractions.Fraction is not plain data" in str(refused.value)
    assert "convert it to builtins, numpy or pandas" in str(refused.value)
    assert "allow pickle on both sides" in str(refused.value)
    packed = pack([value], allow_pickle=True)
    with pytest.raises(NotByValue, match="pickle is not allowed here"):
        unpack(packed)
    assert unpack(packed, allow_pickle=True) == [value]


def test_size_guard_and_cycles() -> None:
    with pytest.raises(TooLarge):
        pack(["x" * 600] * 10, max_bytes=5000)
    assert pack(["x" * 400] * 10, max_bytes=5000)
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(NotByValue, match="contains itself"):
        pack(loop)
    deep: list[object] = []
    for _ in range(40):
        deep = [deep]
    with pytest.raises(NotByValue, match="nested too deeply"):
        pack(deep)


@pytest.mark.parametrize("bad", [(1, 2, 3), ("list", 5), ("dict", ((1,),)), ("nope", ()),
                                 ("range", (1, "2", 3)), ("bytearray", "str"), [1]])
def test_malformed_input_is_refused(bad: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        unpack(bad)
