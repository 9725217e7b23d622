"""Property tests for vinegar: any payload gives an exception object or CodecError."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from codec_vectors import same_value
from fuzzkit import FUZZ, values
from hypothesis import given
from hypothesis import strategies as st

from rpyc_ipy.errors import CodecError
from rpyc_ipy.protocol import brine, vinegar

pytestmark = pytest.mark.timeout(30)  # the whole module runs in seconds; a hang must not wait 120 s

names = st.one_of(
    st.sampled_from(["builtins", "os", "sys", "mymod", "rpyc_ipy.errors", "collections", ""]),
    st.text(max_size=20),
)
classes = st.one_of(
    st.sampled_from(["KeyError", "OSError", "SystemExit", "StopIteration", "UnicodeDecodeError",
                     "KeyboardInterrupt", "GeneratorExit", "BaseExceptionGroup", "RemoteError",
                     "CodecError", "len", "object", "OrderedDict", "path", "__import__"]),
    st.text(max_size=20),
)
attr_entries = st.one_of(
    st.tuples(st.text(max_size=12), values),
    st.tuples(st.just("_remote_version"), st.one_of(st.text(max_size=10), st.just("5.0"))),
    values,
)
well_shaped = st.tuples(st.tuples(names, classes), st.lists(values, max_size=5).map(tuple),
                        st.lists(attr_entries, max_size=6).map(tuple), st.text(max_size=200))
payloads = st.one_of(well_shaped, values, st.just(1), st.text(max_size=20))


def _strings_in(value: Any, out: set[str]) -> set[str]:
    if isinstance(value, str):
        out.add(value)
    elif isinstance(value, tuple):
        for item in value:
            _strings_in(item, out)
    return out


def _check(payload: Any, instantiate_custom: bool) -> None:
    modules = set(sys.modules)
    try:
        exc = vinegar.load(payload, instantiate_custom=instantiate_custom)
    except CodecError:
        return
    assert isinstance(exc, BaseException)
    assert isinstance(str(exc), str) and isinstance(repr(exc), str)
    # nothing the payload names was imported (other threads of the suite may import
    # unrelated modules meanwhile)
    assert not (set(sys.modules) - modules) & _strings_in(payload, set())
    if type(exc) is not StopIteration:  # the bare one of payload 1 has no remote parts
        assert len(exc.remote_attrs) <= vinegar.MAX_ATTRS  # type: ignore[attr-defined]


@FUZZ
@given(payloads, st.booleans())
def test_any_payload_gives_an_exception_or_codec_error(payload: Any,
                                                       instantiate_custom: bool) -> None:
    _check(payload, instantiate_custom)


@FUZZ
@given(well_shaped, st.integers(0, 3), values)
def test_one_broken_part_gives_an_exception_or_codec_error(payload: Any, index: int,
                                                          replacement: Any) -> None:
    broken = list(payload)
    broken[index] = replacement
    _check(tuple(broken), False)


@FUZZ
@given(st.sampled_from([KeyError, ValueError, OSError, SystemExit, RuntimeError, ZeroDivisionError,
                        UnicodeError, KeyboardInterrupt, StopAsyncIteration]),
       st.lists(st.one_of(values, st.builds(list, st.lists(st.integers()))), max_size=4))
def test_dumped_exceptions_come_back(cls: type[BaseException], args: list[Any]) -> None:
    try:
        raise cls(*args)
    except BaseException as exc:  # the point is to catch KeyboardInterrupt and SystemExit too
        payload = vinegar.dump(exc)
    wire = brine.load(brine.dump(payload))
    back = vinegar.load(wire)
    assert isinstance(back, cls)
    assert same_value(back.args, payload[1])  # type: ignore[index]
