"""The array and frame codec: round trips of every carried dtype, shape, layout and index
kind (inline and streamed), and hostile headers refused before anything is allocated."""

from __future__ import annotations

import tracemalloc
from collections.abc import Generator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from rpyc_ipy.protocol import brine
from rpyc_ipy.remote.arrays import MAGIC, DataCodecError, encode, parse_header, write_header
from rpyc_ipy.remote.values import (
    KINDS,
    NotByValue,
    Outbox,
    TooLarge,
    chunk_reader,
    pack,
    unpack,
)

GiB = 1 << 30
DTYPES = ["?", "i1", "u1", "<i2", ">i2", "<u4", ">i8", "<u8", "<f2", ">f4", "<f8", ">f8", "<c8",
          ">c16", "<M8[ns]", ">M8[D]", "<m8[us]", "<m8[s]", "S1", "S7", "<U1", ">U5"]
SHAPES = [(), (0,), (5,), (0, 3), (3, 4), (2, 3, 4), (1, 1, 1, 1)]


def sample(dtype: str, shape: tuple[int, ...]) -> Any:
    count = int(np.prod(shape, dtype=np.int64))
    dt = np.dtype(dtype)
    if dt.kind in "SU":
        raw = np.array([f"v{i}"[: dt.itemsize // (4 if dt.kind == "U" else 1)]
                        for i in range(count)], dtype=dt)
    elif dt.kind in "Mm":
        raw = np.arange(count).astype(dt)
    else:
        raw = (np.arange(count) % 7).astype(dt)
    return raw.reshape(shape)


def round_trip(value: Any, accept: tuple[str, ...] = KINDS, streamed: bool = False) -> Any:
    """Through brine; ``streamed``: every buffer over 16 bytes goes in 7-byte chunks."""
    outbox = Outbox()
    packed = pack(value, max_bytes=GiB, accept=accept, stream=outbox.add if streamed else None,
                  inline_max=16)
    assert brine.dumpable(packed)
    again = unpack(brine.load(brine.dump(packed)), max_bytes=GiB,
                   read=chunk_reader(outbox.read, chunk=7))
    assert len(outbox) == 0  # every stream was read to its end, and forgotten
    return again


def same_array(a: Any, b: Any) -> None:
    assert type(b) is np.ndarray and b.dtype == a.dtype and b.shape == a.shape
    assert b.tobytes(order="A") == np.asarray(a).tobytes(order="A") or np.array_equal(a, b)
    assert b.flags.writeable


@pytest.mark.parametrize("streamed", [False, True], ids=["inline", "streamed"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_and_shape_round_trips(dtype: str, streamed: bool) -> None:
    for shape in SHAPES:
        value = sample(dtype, shape)
        again = round_trip(value, streamed=streamed)
        same_array(value, again)
        assert again.dtype.byteorder == value.dtype.byteorder  # big-endian stays big-endian


@pytest.mark.parametrize("streamed", [False, True], ids=["inline", "streamed"])
def test_layouts_round_trip(streamed: bool) -> None:
    base = np.arange(60, dtype=np.float64).reshape(3, 4, 5)
    fortran = np.asfortranarray(base)
    got = round_trip(fortran, streamed=streamed)
    assert got.flags.f_contiguous and not got.flags.c_contiguous and (got == base).all()
    for view in (base[::-1], base[:, ::2, 1:], base.transpose(2, 0, 1)[::-1, :, ::-3],
                 np.arange(10)[::-3]):  # negative and other strides: sent in C order
        got = round_trip(view, streamed=streamed)
        assert got.flags.c_contiguous and (got == view).all() and got.shape == view.shape
    scalar = round_trip(np.datetime64("2024-02-29T12:00", "m"))
    assert type(scalar) is np.datetime64 and scalar == np.datetime64("2024-02-29T12:00", "m")


def test_our_header_is_numpys_and_numpys_is_ours() -> None:
    from numpy.lib import format as npformat

    for dtype in DTYPES:
        for shape in SHAPES:
            arr = sample(dtype, shape)
            header = bytes(encode(arr)[0])
            got = npformat.read_array_header_1_0(_stream(header[8:], header[:8]))
            order = arr.flags.f_contiguous and not arr.flags.c_contiguous
            assert got == (arr.shape, order, arr.dtype)
            theirs = _numpy_header(arr)
            spec = parse_header(theirs, max_bytes=GiB)
            assert spec.shape == arr.shape and np.dtype(spec.descr) == arr.dtype


def _stream(rest: bytes, prefix: bytes) -> Any:
    import io

    stream = io.BytesIO(prefix + rest)
    stream.seek(8)
    return stream


def _numpy_header(arr: Any) -> bytes:
    import io

    from numpy.lib import format as npformat

    out = io.BytesIO()
    npformat.write_array_header_1_0(out, npformat.header_data_from_array_1_0(arr))
    return out.getvalue()


INDEXES = {
    "range": pd.RangeIndex(10, 16, 2),
    "int": pd.Index([5, 3, 9], name="k"),
    "float": pd.Index([0.5, 1.5, 2.5]),
    "str": pd.Index(["a", "b", "c"], name="s"),
    "datetime": pd.DatetimeIndex(["2024-01-01", "2024-03-01", "2025-01-01"], name="t"),
    "datetime-tz": pd.DatetimeIndex(["2024-01-01", "2024-03-01", "2025-01-01"],
                                    tz="America/New_York"),
    "timedelta": pd.to_timedelta([1, 2, 3], unit="s"),
    "multi": pd.MultiIndex.from_arrays([[1, 1, 2], ["x", "y", "x"]], names=["n", "l"]),
}


def frame_with(index: Any) -> Any:
    return pd.DataFrame({
        "f": [1.5, np.nan, 3.0], "i": np.array([1, 2, 3], dtype=">i4"), "b": [True, False, True],
        "s": pd.array(["x", None, "z"], dtype="str"),
        "when": pd.to_datetime(["2020-01-01", None, "2021-06-30"]),
        "tz": pd.to_datetime(["2020-01-01", "2020-01-02", None]).tz_localize("Asia/Tokyo"),
        "dur": pd.to_timedelta([1, 2, 3], unit="ms"), "c": np.array([1j, 2, 3], "c16"),
    }, index=index)


@pytest.mark.parametrize("accept", [KINDS, ("ndarray", "pandas")], ids=["arrow", "columns"])
@pytest.mark.parametrize("kind", list(INDEXES))
def test_frames_and_series_round_trip_with_every_index_kind(kind: str,
                                                            accept: tuple[str, ...]) -> None:
    frame = frame_with(INDEXES[kind])
    for streamed in (False, True):
        pd.testing.assert_frame_equal(round_trip(frame, accept, streamed), frame)
        for column in ("f", "s", "tz"):
            series = frame[column].rename(("named", 1) if accept != KINDS else "named")
            pd.testing.assert_series_equal(round_trip(series, accept, streamed), series)


def test_column_axis_names_kinds_and_empty_frames_round_trip() -> None:
    odd = pd.DataFrame([[1, 2.5]], columns=pd.Index([7, "seven"], name="cols"))
    pd.testing.assert_frame_equal(round_trip(odd), odd)  # not all str: the column path
    multi = pd.DataFrame([[1, 2]], columns=pd.MultiIndex.from_tuples([("a", 1), ("a", 2)]))
    pd.testing.assert_frame_equal(round_trip(multi), multi)
    for accept in (KINDS, ("ndarray", "pandas")):
        empty = pd.DataFrame({"a": pd.Series([], dtype="f8")})
        pd.testing.assert_frame_equal(round_trip(empty, accept), empty)
        pd.testing.assert_frame_equal(round_trip(pd.DataFrame(), accept), pd.DataFrame(),
                                      check_column_type=False, check_index_type=False)


def test_unsupported_values_are_refused_by_type_and_column() -> None:
    with pytest.raises(NotByValue, match=r"dtype object .*convert it.*pickle on both sides"):
        pack(np.array([object()]), accept=KINDS)
    with pytest.raises(NotByValue, match=r"\[\('a', '<i4'\)\]|fields"):
        pack(np.zeros(2, dtype=[("a", "<i4")]), accept=KINDS)
    odd = pd.DataFrame({"ok": [1], "odd": [object()]})
    with pytest.raises(NotByValue, match=r"column 'odd' has dtype object.*Arrow carries"):
        pack(odd, accept=("ndarray", "pandas"))
    with pytest.raises(NotByValue, match=r"column 'odd' .*object.*pickle on both sides$"):
        pack(odd, accept=KINDS)  # Arrow was tried, then the column path
    with pytest.raises(NotByValue, match=r"no numpy \(pip install 'rpyc_ipy\[data\]' there\)"):
        pack(np.ones(2))
    with pytest.raises(NotByValue, match=r"no pandas \(pip install 'rpyc_ipy\[data\]' there\)"):
        pack(pd.Series([1]), accept=("ndarray",))
    assert unpack(pack(np.ones(2), allow_pickle=True), allow_pickle=True).tolist() == [1, 1]


# -- hostile input -------------------------------------------------------------------------


def header_text(text: str) -> bytes:
    body = text.encode("latin1")
    return MAGIC + b"\x01\x00" + len(body).to_bytes(2, "little") + body


def refused_without_allocating(packed: Any, match: str, read: Any = None,
                               max_bytes: int = GiB) -> None:
    """``unpack`` raises DataCodecError, and traced memory never grew past 1 MiB."""
    tracemalloc.start()
    try:
        with pytest.raises(DataCodecError, match=match):
            unpack(packed, max_bytes=max_bytes, read=read)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


HOSTILE_HEADERS = {
    "huge shape": ("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, "
                   "4294967296), }", "over the size limit"),
    "overflowing shape": ("{'descr': '|u1', 'fortran_order': False, 'shape': ("
                          + ", ".join(["9999999999999999999"] * 8) + "), }",
                          "over the size limit"),
    "negative dimension": ("{'descr': '<f8', 'fortran_order': False, 'shape': (-5,), }",
                           "not the dict numpy writes"),
    "strides": ("{'descr': '<f8', 'fortran_order': False, 'shape': (5,), 'strides': (-8,), }",
                "not the dict numpy writes"),
    "object dtype": ("{'descr': '|O', 'fortran_order': False, 'shape': (5,), }",
                     "not carried by value"),
    "structured": ("{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (5,), }",
                   "not the dict numpy writes"),
    "void": ("{'descr': '|V8', 'fortran_order': False, 'shape': (5,), }",
             "not carried by value"),
    "code": ("{'descr': __import__('os').system('true'), 'fortran_order': False, "
             "'shape': (5,), }", "not the dict numpy writes"),
    "long double": ("{'descr': '<f16', 'fortran_order': False, 'shape': (5,), }",
                    "not carried by value"),
    "huge str width": ("{'descr': '<U999999999', 'fortran_order': False, 'shape': (9,), }",
                       "over the size limit"),
    "too many dims": ("{'descr': '|u1', 'fortran_order': False, 'shape': ("
                      + ", ".join(["1"] * 33) + "), }", "33 dimensions; at most 32"),
    "trailing comma": ("{'descr': '|u1', 'fortran_order': False, 'shape': (1, 2, ), }",
                       "not the dict numpy writes"),
}


@pytest.mark.parametrize("name", list(HOSTILE_HEADERS))
def test_hostile_headers_are_refused_before_allocating(name: str) -> None:
    text, match = HOSTILE_HEADERS[name]
    header = header_text(text + "\n")
    refused_without_allocating(("ndarray", (header, ("stream", "t", 1 << 40))), match)
    refused_without_allocating(("ndarray", (header, b"")), match)


def test_the_most_dimensions_pass() -> None:
    arr = np.zeros((1,) * 32, dtype="u1")
    assert round_trip(arr).shape == (1,) * 32


def test_malformed_header_bytes_are_refused() -> None:
    good = write_header("<f8", False, (3,))
    for bad, match in [(b"\x93NUMPX" + good[6:], "not an npy"), (good[:6] + b"\x04\x00"
                       + good[8:], "version 4.0"), (good[:-1], "length does not match"),
                       (good[:8] + b"\xff\xff" + good[10:], "length does not match")]:
        refused_without_allocating(("ndarray", (bad, b"\0" * 24)), match)


def test_lying_sizes_are_refused_before_allocating() -> None:
    header = write_header("<f8", False, (1 << 20,))  # 8 MiB declared
    refused_without_allocating(("ndarray", (header, b"\0" * 16)), "declares 8,388,608 bytes")
    refused_without_allocating(("ndarray", (header, ("stream", "t", 16))),
                               "declares 8,388,608 bytes")
    # within one value, the arrays together must fit the limit too
    small = write_header("<f8", False, (100_000,))  # 800 kB each, limit 1 MB
    lots = ("list", tuple(("ndarray", (small, ("stream", str(i), 800_000))) for i in range(2)))
    with pytest.raises(DataCodecError, match="over the size limit of 200,000 bytes"):
        unpack(lots, max_bytes=1_000_000, read=_zeros)  # the second finds 200 kB left


def _zeros(token: str, nbytes: int) -> Generator[bytes, None, None]:
    for offset in range(0, nbytes, 1 << 16):
        yield bytes(min(1 << 16, nbytes - offset))


def test_truncated_and_overlong_streams_are_refused() -> None:
    header = write_header("|u1", False, (100,))
    packed = ("ndarray", (header, ("stream", "t", 100)))

    def short(token: str, nbytes: int) -> Generator[bytes, None, None]:
        yield b"\0" * 60

    def long(token: str, nbytes: int) -> Generator[bytes, None, None]:
        yield b"\0" * 60
        yield b"\0" * 60

    def empty_chunks(token: str, nbytes: int) -> Generator[bytes, None, None]:
        while True:  # a stream that never advances is refused at its first empty chunk
            yield b""

    with pytest.raises(DataCodecError, match="ended after 60 of 100 bytes"):
        unpack(packed, read=short)
    with pytest.raises(DataCodecError, match="does not fit: 60 of 100"):
        unpack(packed, read=long)
    with pytest.raises(DataCodecError, match="does not fit: 0 of 100"):
        unpack(packed, read=empty_chunks)
    with pytest.raises(DataCodecError, match="cannot read them"):
        unpack(packed)


def test_hostile_frames_are_refused() -> None:
    arr = pack(np.arange(3), accept=KINDS)[1]
    columns = (("array", arr),)
    names, axis = pack(("a",)), pack((None,))
    for payload, match in [
        (("columns", (pack(()), axis, columns, ("range", (0, 3, 1, None)))),
         "names and columns"),
        (("columns", (names, axis, columns, ("range", (0, 5, 1, None)))),
         "3 values for an index of 5"),
        (("columns", (names, axis, (("tz", arr, "UTC"),), ("range", (0, 3, 1, None)))),
         "malformed tz-aware column"),
        (("columns", (names, axis, columns, ("range", (0, 3, 0, None)))), "malformed"),
        (("columns", (names, axis, (("pickle", b""),), ("range", (0, 3, 1, None)))),
         "malformed packed column"),
        (("columns", (names, axis, columns, ("range", (0, 10**400, 1, None)))),
         "malformed packed dataframe"),
        (("arrow", b"not arrow at all"), "malformed Arrow frame"),
    ]:
        with pytest.raises(DataCodecError, match=match):
            unpack(("dataframe", payload))


def arrow_bytes(table: Any, compression: str | None = None) -> bytes:
    import pyarrow

    sink = pyarrow.BufferOutputStream()
    options = pyarrow.ipc.IpcWriteOptions(compression=compression)
    with pyarrow.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def test_hostile_arrow_streams_are_refused() -> None:
    import pyarrow

    plain = pyarrow.table({"x": pyarrow.array(np.arange(1000)),
                           "c": pyarrow.array(["a", "b"] * 500).dictionary_encode()})
    assert len(unpack(("dataframe", ("arrow", arrow_bytes(plain))))) == 1000
    for compression in ("zstd", "lz4"):  # inflates beyond the checked size: refused unread
        with pytest.raises(DataCodecError, match="compressed Arrow batches are refused"):
            unpack(("dataframe", ("arrow", arrow_bytes(plain, compression))))
    nulls = pyarrow.table({"n": pyarrow.nulls(1 << 20)})  # no bytes in Arrow, 8 MiB in pandas
    with pytest.raises(DataCodecError, match="'n' has type null"):
        unpack(("dataframe", ("arrow", arrow_bytes(nulls))))
    nested = pyarrow.table({"l": pyarrow.array([[1, 2], [3]])})
    with pytest.raises(DataCodecError, match="'l' has type list"):
        unpack(("dataframe", ("arrow", arrow_bytes(nested))))
    cut = arrow_bytes(plain)[:-100]
    with pytest.raises(DataCodecError, match="malformed Arrow frame"):
        unpack(("dataframe", ("arrow", cut)))
    flags = pd.DataFrame({"b": np.ones(1 << 20, dtype=bool)})  # a bit per value is honest
    pd.testing.assert_frame_equal(round_trip(flags), flags)
    # a frame whose columns Arrow would not carry to pandas safely takes the column path
    odd = pd.DataFrame({"n": [None, None]}, dtype=object)
    with pytest.raises(NotByValue, match="column 'n' has dtype object"):
        pack(odd, accept=KINDS)


def test_the_sender_refuses_an_array_over_its_guard_before_copying_it() -> None:
    strided = np.zeros(1 << 22, dtype="u1")[::2]  # 2 MiB, would be copied to send
    tracemalloc.start()
    try:
        with pytest.raises(TooLarge, match="size guard"):
            pack(strided, max_bytes=(1 << 21) - 1, accept=KINDS)  # one byte short
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    assert pack(strided, max_bytes=(1 << 21) + 1000, accept=KINDS)


def test_outbox_bounds_its_streams() -> None:
    outbox = Outbox(max_streams=2)
    tokens = [outbox.add(memoryview(bytes(10))) for _ in range(3)]
    assert len(outbox) == 2
    with pytest.raises(ValueError, match="no such stream"):
        outbox.read(tokens[0], 0, 5)  # the oldest was dropped
    assert outbox.read(tokens[1], 5, 5) == bytes(5) and len(outbox) == 2  # out of order
    assert outbox.read(tokens[1], 0, 5) == bytes(5) and len(outbox) == 1  # all served
    with pytest.raises(ValueError, match="0 < length"):
        outbox.read(tokens[2], 0, 1 << 30)
