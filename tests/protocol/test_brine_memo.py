"""brine's str memo (the encoder's cache of short str encodings) and the small-tuple decoder.

The memo must never change a byte: memoised and fresh encodings are identical
and equal rpyc's; it must stay bounded whatever strs go through it; and it must
not let a value that is not an exact str pass as one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from rpyc.core import brine as rpyc_brine

from rpyc_ipy.errors import CodecError
from rpyc_ipy.protocol import brine

pytestmark = pytest.mark.timeout(60)

# around every boundary: the memo's length cut (63 chars), the u8/u32 length
# forms (255/256 bytes), the fixed forms (0-4 bytes), multi-byte utf-8
STRS = [
    "", "a", "he", "abcd", "abcde", "exposed_add1", "__getattribute__",
    "x" * 62, "x" * 63, "x" * 64, "x" * 255, "x" * 256, "x" * 1000,
    "é", "é" * 63, "€" * 63, "\U0001f600" * 63, "\U0001f600" * 64, "日本語のテキスト",
]


@pytest.fixture(autouse=True)
def _fresh_memo() -> Iterator[None]:
    brine._STR_MEMO.clear()
    yield
    brine._STR_MEMO.clear()


@pytest.mark.parametrize("text", STRS, ids=lambda s: f"{len(s)}:{s[:6]!r}")
def test_memoised_and_fresh_encodings_are_identical(text: str) -> None:
    for value in (text, (text,), (1, text, None, (text, b"x")), (text,) * 20):
        expected = rpyc_brine.dump(value)
        brine._STR_MEMO.clear()
        fresh = brine.dump(value)
        memoised = brine.dump(value)
        assert fresh == memoised == expected
        assert b"".join(brine.dump_parts(value)) == expected
        assert brine.load(expected) == value


def test_only_short_strs_are_memoised() -> None:
    brine.dump(("a" * brine._STR_MEMO_CHARS, "b" * (brine._STR_MEMO_CHARS + 1)))
    assert list(brine._STR_MEMO) == ["a" * brine._STR_MEMO_CHARS]
    assert brine._STR_MEMO["a" * brine._STR_MEMO_CHARS] == rpyc_brine.dump(
        "a" * brine._STR_MEMO_CHARS)


def test_memo_stays_bounded() -> None:
    for i in range(10 * brine._STR_MEMO_SIZE):
        brine.dump((f"name{i}", i))
        assert len(brine._STR_MEMO) <= brine._STR_MEMO_SIZE
    # and it still gives right answers after being cleared and refilled
    assert brine.dump(("name5", "fresh")) == rpyc_brine.dump(("name5", "fresh"))


def test_memo_does_not_admit_str_subclasses_or_bad_unicode() -> None:
    class Name(str):
        pass

    brine.dump("spam")
    assert "spam" in brine._STR_MEMO
    with pytest.raises(TypeError):
        brine.dump(Name("spam"))  # equal and same hash as a memoised str, still not a str
    with pytest.raises(TypeError):
        brine.dump(("ok", Name("spam")))
    with pytest.raises(TypeError):
        brine.dump("lone \udc80")
    assert "lone \udc80" not in brine._STR_MEMO


def test_memo_under_threads() -> None:
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            for i in range(3000):
                value = (f"k{(i + offset) % 1500}", i, "common")
                assert brine.dump(value) == rpyc_brine.dump(value)
        except BaseException as exc:  # reported below, from the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n * 100,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(brine._STR_MEMO) <= brine._STR_MEMO_SIZE


# -- the small-tuple decoder against rpyc, for every tag it handles inline or hands on --------


SMALL_VALUES = [
    ("he", 7, 1.5, None, True, b"xyz", 900, -3),
    (False, NotImplemented, Ellipsis, b"", (), "", -48, 159, -49, 160),
    tuple(STRS[:15]),
    (b"a", b"ab", b"abc", b"abcd", b"abcde", b"x" * 300, 2**70, -(2**70), 1j, -0.0),
    (frozenset({1, 2}), slice(1, None, -1), (1, (2, (3, (4,)))), tuple(range(20)), ()),
]


@pytest.mark.parametrize("value", SMALL_VALUES, ids=lambda v: repr(v)[:30])
def test_small_tuples_match_rpyc(value: tuple[object, ...]) -> None:
    data = rpyc_brine.dump(value)
    assert brine.dump(value) == data
    loaded = brine.load(data)
    assert loaded == value and [type(x) for x in loaded] == [type(x) for x in value]
    assert brine.load_from(b"\x00" + data, 1) == value
    assert brine.load(bytearray(data)) == value
    assert brine.load(rpyc_brine.dump((value, value))) == (value, value)


@pytest.mark.parametrize("data", [
    b"\x10\xf0", b"\x11\x21\xff", b"\x10\x07", b"\x10\x09", b"\x10\x1c",
    b"\x14\x05\x21\x21\xf5\x21\x21",
    b"\x10\x08\x0e\x05abc", b"\x10\x16\x02 1", b"\x10\x16\x03+12", b"\x10\x18\x00", b"\x11\x0d\x00",
    b"\x10\x08\x0f\xff\xff\xff\xff", b"\x10\x0e\x09abc",
], ids=lambda d: d.hex())
def test_malformed_small_tuples_are_codec_errors(data: bytes) -> None:
    with pytest.raises(CodecError):
        brine.load(data)
    with pytest.raises(CodecError):
        brine.load_from(b"\x00" + data, 1)
