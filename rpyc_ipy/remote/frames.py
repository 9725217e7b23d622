"""pandas DataFrames and Series by value: Arrow IPC, or per-column arrays.

With pyarrow on both sides a frame travels as one Arrow IPC stream (strings and
missing values included). Otherwise each column is a numpy array (see
:mod:`.arrays`) with what pandas needs to rebuild it, and the index is described::

    ("arrow", buffer)                                      # a DataFrame
    ("arrow", (name, buffer))                              # a Series, as a one-column frame
    ("columns", (names, axis_names, columns, index))       # a DataFrame
    ("columns", (name, column, index))                     # a Series

A column (or an index level) is ``("array", arr)`` (numeric, bool, naive
datetime64/timedelta64), ``("tz", utc_values, zone)`` (tz-aware datetimes) or
``("str", values, missing, dtype)`` (pandas string dtypes, as fixed-width str
plus a mask). The index is ``("range", (start, stop, step, name))``, ``("index",
(column, name))`` or ``("multi", ((column, name), ...))``. Object columns are
refused with the column's name: their values could be anything.

The pack/unpack functions take the array, buffer and plain-value codecs of
:mod:`.values` as arguments. Pure standard library at import (pandas and pyarrow
are imported by the functions that need them): also shipped by source to classic
peers (:mod:`rpyc_ipy.remote.bootstrap`).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from typing import Any

from .arrays import DataCodecError

__all__ = ["TAGS", "is_frame", "pack_frame", "tag_of", "unpack_frame"]

#: the packed tags of frames
TAGS = ("dataframe", "series")
#: pandas string dtypes carried as fixed-width str plus a mask
_STRING_DTYPES = ("str", "string")
#: a time zone name (IANA key or a fixed offset such as UTC+01:00)
_ZONE = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]{0,40}(?:/[A-Za-z0-9_+\-]{1,40}){0,2}"
                   r"|UTC[+-][0-9]{2}:[0-9]{2}")
_SERIES_COLUMN = "value"
Codec = Callable[[Any], Any]


def is_frame(obj: Any) -> bool:
    """``obj`` is exactly a pandas DataFrame or Series (pandas is loaded if it is one)."""
    import sys

    pandas = sys.modules.get("pandas")
    return pandas is not None and type(obj) in (pandas.DataFrame, pandas.Series)


def tag_of(obj: Any) -> str:
    import pandas

    return "dataframe" if type(obj) is pandas.DataFrame else "series"


# -- sending ----------------------------------------------------------------------------------


def pack_frame(obj: Any, array: Codec, buffer: Codec, plain: Codec, arrow: bool) -> Any:
    """The payload of a DataFrame or Series; :class:`DataCodecError` if a column is not
    carried. ``arrow``: the receiver reads Arrow IPC (used if pyarrow imports here)."""
    series = tag_of(obj) == "series"
    if arrow and _arrow_ok(obj, series):
        try:
            if series:
                return ("arrow", (plain(obj.name),
                                  buffer(_to_arrow(obj.to_frame(_SERIES_COLUMN)))))
            return ("arrow", buffer(_to_arrow(obj)))
        except DataCodecError:
            pass  # e.g. byte-swapped columns: the column path carries those
    try:
        index = _pack_index(obj.index, array, plain)
        if series:
            return ("columns", (plain(obj.name), _pack_column(obj, repr(obj.name), array),
                                index))
        columns = tuple(_pack_column(obj.iloc[:, i], repr(name), array)
                        for i, name in enumerate(obj.columns))
    except DataCodecError as exc:
        if arrow:
            raise
        raise DataCodecError(f"{exc} (with pyarrow on both sides, Arrow carries columns of "
                             "str objects)") from None
    return ("columns", (plain(tuple(obj.columns)), plain(tuple(obj.columns.names)), columns,
                        index))


def _arrow_ok(obj: Any, series: bool) -> bool:
    """Arrow keeps str column names only; other frames take the column path."""
    from importlib.util import find_spec

    if find_spec("pyarrow") is None:
        return False
    return series or all(type(name) is str for name in obj.columns)


def _to_arrow(frame: Any) -> memoryview:
    import pyarrow

    try:
        table = pyarrow.Table.from_pandas(frame)
    except (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError, pyarrow.ArrowNotImplementedError,
            TypeError, ValueError) as exc:
        why = "; ".join(map(str, exc.args))
        raise DataCodecError(f"Arrow cannot carry it ({why}): convert the column "
                             "(df.astype(...)), or allow pickle on both sides") from None
    _check_schema(table.schema)  # what the receiver refuses goes the column path
    sink = pyarrow.BufferOutputStream()
    with pyarrow.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return memoryview(sink.getvalue())


def _pack_column(column: Any, label: str, array: Codec) -> tuple[Any, ...]:
    import numpy
    import pandas

    dtype = column.dtype
    if isinstance(dtype, pandas.DatetimeTZDtype):
        return ("tz", array(column.dt.tz_convert(None).to_numpy()), str(dtype.tz))
    if isinstance(dtype, pandas.StringDtype):
        missing = column.isna().to_numpy()
        values = column.fillna("").to_numpy(dtype=str)
        return ("str", array(values), array(missing), str(dtype))
    if not isinstance(dtype, numpy.dtype) or dtype.kind not in "biufcmM":
        raise DataCodecError(
            f"column {label} has dtype {dtype}, which is not carried by value: convert it "
            "(df.astype(...), e.g. to 'float64' or 'str'), or allow pickle on both sides")
    return ("array", array(column.to_numpy()))


def _pack_index(index: Any, array: Codec, plain: Codec) -> tuple[str, Any]:
    import pandas

    if type(index) is pandas.RangeIndex:
        return ("range", (index.start, index.stop, index.step, plain(index.name)))
    if type(index) is pandas.MultiIndex:
        return ("multi", tuple((_pack_column(index.get_level_values(i).to_series(),
                                             f"index level {i}", array), plain(name))
                               for i, name in enumerate(index.names)))
    return ("index", (_pack_column(index.to_series(), "index", array), plain(index.name)))


# -- receiving --------------------------------------------------------------------------------


def unpack_frame(tag: str, payload: Any, array: Codec, buffer: Codec, plain: Codec) -> Any:
    """Rebuild a DataFrame or Series; :class:`DataCodecError` for a malformed payload."""
    import pandas

    if type(payload) is not tuple or len(payload) != 2:
        raise DataCodecError(f"malformed packed {tag}")
    kind, body = payload
    if kind == "arrow":
        if tag == "dataframe":
            return _from_arrow(buffer(body))
        if type(body) is not tuple or len(body) != 2:
            raise DataCodecError("malformed packed series")
        frame = _from_arrow(buffer(body[1]))
        if list(frame.columns) != [_SERIES_COLUMN]:
            raise DataCodecError("malformed Arrow series")
        return frame[_SERIES_COLUMN].rename(plain(body[0]))
    if kind != "columns" or type(body) is not tuple:
        raise DataCodecError(f"malformed packed {tag}")
    if tag == "series":
        if len(body) != 3:
            raise DataCodecError("malformed packed series")
        name, column, index = body
        idx = _unpack_index(index, array, plain)
        values = _unpack_column(column, array)
        _check_length(values, idx)
        return pandas.Series(values, index=idx, name=plain(name), copy=False)
    if len(body) != 4 or type(body[2]) is not tuple:
        raise DataCodecError("malformed packed dataframe")
    names, axis_names, columns, index = body
    names, axis_names = plain(names), plain(axis_names)
    if type(names) is not tuple or len(names) != len(columns) or type(axis_names) is not tuple:
        raise DataCodecError("malformed packed dataframe: names and columns differ")
    idx = _unpack_index(index, array, plain)
    data = {}
    for i, column in enumerate(columns):
        values = _unpack_column(column, array)
        _check_length(values, idx)
        data[i] = values
    frame = pandas.DataFrame(data, index=idx, copy=False) if data else \
        pandas.DataFrame(index=idx)
    frame.columns = pandas.Index(list(names)) if names else frame.columns
    if len(axis_names) == frame.columns.nlevels:
        frame.columns.names = list(axis_names)
    return frame


def _from_arrow(data: Any) -> Any:
    """A frame from Arrow IPC bytes: uncompressed batches only (checked before any is
    read), columns of :func:`_arrow_type_ok` types, validated before pandas sees it."""
    import pyarrow

    buffer = pyarrow.py_buffer(data)
    try:
        for message in pyarrow.ipc.MessageReader.open_stream(buffer):
            if message.type == "schema":
                continue
            if message.type not in ("record batch", "dictionary"):
                raise DataCodecError(f"Arrow message {message.type!r} is not expected")
            if _compressed(message.metadata.to_pybytes(), message.type == "dictionary"):
                raise DataCodecError("compressed Arrow batches are refused (their inflated "
                                     "size is not checked in advance)")
        table = pyarrow.ipc.open_stream(buffer).read_all()
        _check_schema(table.schema)
        table.validate(full=True)
    except (pyarrow.ArrowException, OSError, ValueError, TypeError, KeyError,
            struct.error) as exc:
        if isinstance(exc, DataCodecError):
            raise
        raise DataCodecError(f"malformed Arrow frame: {exc}") from None
    # every value takes at least a bit of the body (booleans): more is a lie
    if table.num_rows * max(table.num_columns, 1) > 8 * max(len(data), 1 << 16):
        raise DataCodecError("the Arrow frame declares more rows than its bytes hold")
    return table.to_pandas()


def _check_schema(schema: Any) -> None:
    for field in schema:
        if not _arrow_type_ok(field.type):
            raise DataCodecError(f"Arrow column {field.name!r} has type {field.type}, which "
                                 "is not carried by value: convert it (df.astype(...))")


def _arrow_type_ok(kind: Any) -> bool:
    """Flat types whose pandas form is about as large as their Arrow bytes (no null
    type: a billion nulls take no bytes in Arrow and 8 GB in pandas)."""
    from pyarrow import types

    if types.is_dictionary(kind):
        return types.is_integer(kind.index_type) and _arrow_type_ok(kind.value_type)
    return any(check(kind) for check in (
        types.is_boolean, types.is_integer, types.is_floating, types.is_timestamp,
        types.is_date, types.is_duration, types.is_string, types.is_large_string))


def _compressed(metadata: bytes, dictionary: bool) -> bool:
    """Whether an IPC message's batch declares body compression: field 3 of its
    RecordBatch table (in a DictionaryBatch, field 1 holds the RecordBatch), read
    from the Message flatbuffer with bounds checks (``struct.error`` if malformed)."""
    (root,) = struct.unpack_from("<I", metadata, 0)
    header = _subtable(metadata, _table(metadata, root), 2)
    if header is not None and dictionary:
        header = _subtable(metadata, header, 1)
    if header is None:
        raise DataCodecError("malformed Arrow message")
    fields = header[1]
    return len(fields) > 3 and fields[3] != 0


def _table(buf: bytes, pos: int) -> tuple[int, tuple[int, ...]]:
    """A flatbuffer table: its position and its fields' offsets (0: absent)."""
    (back,) = struct.unpack_from("<i", buf, pos)
    vtable = pos - back
    if vtable < 0:
        raise DataCodecError("malformed Arrow message")
    size, _ = struct.unpack_from("<HH", buf, vtable)
    if size < 4 or size % 2 or vtable + size > len(buf):
        raise DataCodecError("malformed Arrow message")
    return pos, struct.unpack_from(f"<{(size - 4) // 2}H", buf, vtable + 4)


def _subtable(buf: bytes, table: tuple[int, tuple[int, ...]], index: int
              ) -> tuple[int, tuple[int, ...]] | None:
    pos, fields = table
    if index >= len(fields) or fields[index] == 0:
        return None
    at = pos + fields[index]
    (offset,) = struct.unpack_from("<I", buf, at)
    return _table(buf, at + offset)


def _unpack_column(column: Any, array: Codec) -> Any:
    import pandas

    if type(column) is not tuple or not column or column[0] not in ("array", "tz", "str"):
        raise DataCodecError("malformed packed column")
    kind = column[0]
    if kind == "array" and len(column) == 2:
        values = array(column[1])
        _check_flat(values)
        return values
    if kind == "tz" and len(column) == 3 and type(column[2]) is str:
        values = array(column[1])
        _check_flat(values)
        if values.dtype.kind != "M" or _ZONE.fullmatch(column[2]) is None:
            raise DataCodecError("malformed tz-aware column")
        try:
            return pandas.DatetimeIndex(values).tz_localize("UTC").tz_convert(column[2])
        except Exception as exc:  # an unknown zone: pytz, zoneinfo and dateutil differ
            raise DataCodecError(f"unknown time zone {column[2]!r}: {exc}") from None
    if kind == "str" and len(column) == 4 and column[3] in _STRING_DTYPES:
        values, missing = array(column[1]), array(column[2])
        _check_flat(values)
        _check_flat(missing)
        if values.dtype.kind != "U" or missing.dtype.kind != "b" or len(missing) != len(values):
            raise DataCodecError("malformed string column")
        out = pandas.array(values, dtype=column[3])
        out[missing] = None
        return out
    raise DataCodecError("malformed packed column")


def _unpack_index(index: Any, array: Codec, plain: Codec) -> Any:
    import pandas

    if type(index) is not tuple or len(index) != 2 or type(index[1]) is not tuple:
        raise DataCodecError("malformed packed index")
    kind, body = index
    if kind == "range" and len(body) == 4 and all(type(x) is int for x in body[:3]) \
            and body[2] != 0:
        return pandas.RangeIndex(body[0], body[1], body[2], name=plain(body[3]))
    if kind == "index" and len(body) == 2:
        return pandas.Index(_unpack_column(body[0], array), name=plain(body[1]))
    if kind == "multi" and body and all(type(x) is tuple and len(x) == 2 for x in body):
        levels = [_unpack_column(column, array) for column, _ in body]
        if len({len(level) for level in levels}) != 1:
            raise DataCodecError("malformed packed MultiIndex: levels differ in length")
        return pandas.MultiIndex.from_arrays(levels, names=[plain(name) for _, name in body])
    raise DataCodecError("malformed packed index")


def _check_flat(values: Any) -> None:
    if values.ndim != 1:
        raise DataCodecError("a column must be one-dimensional")


def _check_length(values: Any, index: Any) -> None:
    if len(values) != len(index):
        raise DataCodecError(f"a column has {len(values)} values for an index of {len(index)}")
