"""numpy arrays by value: the npy header plus the raw bytes, checked before anything is built.

The sender describes an array with an npy format header (``numpy.lib.format``,
version 1.0: magic, version, header length, a dict literal) and sends its bytes
in C or Fortran order::

    header, view = encode(arr)               # bytes, a memoryview of the array's bytes
    spec = parse_header(header, max_bytes=1 << 30)   # ArraySpec: descr, fortran, shape, nbytes
    arr2, into = allocate(spec)              # numpy.empty(...), and a writable byte view

:func:`parse_header` is strict: the dict must be exactly what numpy writes
(``descr``, ``fortran_order``, ``shape``, in that order), read with a regular
expression, never evaluated. Only fixed-size dtypes that hold no Python objects are
accepted (:data:`DESCR`): bool, signed/unsigned ints, floats (16 to 64 bits),
complex, datetime64/timedelta64 with a unit, fixed-width bytes/str. Shapes are
checked dimension by dimension against ``max_bytes`` before :func:`allocate` runs.

Pure standard library at import (numpy is imported by the functions that need it):
also shipped by source to classic peers (:mod:`rpyc_ipy.remote.bootstrap`).
"""

from __future__ import annotations

import re
import struct
from typing import Any, NamedTuple

__all__ = [
    "DESCR",
    "MAGIC",
    "MAX_DIMS",
    "ArraySpec",
    "DataCodecError",
    "allocate",
    "check_descr",
    "decode",
    "encode",
    "is_ndarray",
    "is_numpy_scalar",
    "parse_header",
    "write_header",
]

MAGIC = b"\x93NUMPY"
#: the most dimensions a header may declare (numpy's own limit is 64)
MAX_DIMS = 32
#: the longest header accepted (ours are under 200 bytes)
MAX_HEADER = 4096
# a datetime unit, without multiples ("[10ns]") or the generic unit
_UNITS = "Y|M|W|D|h|m|s|ms|us|ns|ps|fs|as"
#: the dtypes carried: byte order, then kind and size
DESCR = re.compile(
    r"(?:\|b1|\|[iu]1|[<>][iu][248]|[<>]f[248]|[<>]c(?:8|16)"
    rf"|[<>][Mm]8\[(?:{_UNITS})\]|\|S[1-9][0-9]{{0,8}}|[<>]U[1-9][0-9]{{0,8}})")
_HEADER = re.compile(
    r"\{'descr': '([^'\\]{1,40})', 'fortran_order': (True|False), "
    r"'shape': \(((?:[0-9]{1,19}, )*[0-9]{1,19},?|)\), \} *\n")
_V1 = struct.Struct("<H")
_V2 = struct.Struct("<I")


class DataCodecError(ValueError):
    """An array or frame header (or its bytes) that the codec refuses; nothing was built."""


class ArraySpec(NamedTuple):
    """What a checked header declares."""

    descr: str
    fortran: bool
    shape: tuple[int, ...]
    itemsize: int
    nbytes: int


def is_ndarray(obj: Any) -> bool:
    """``obj`` is exactly a ``numpy.ndarray`` (subclasses such as masked arrays are not)."""
    t = type(obj)
    return t.__name__ == "ndarray" and t.__module__ == "numpy"


def is_numpy_scalar(obj: Any) -> bool:
    """``obj`` is a numpy scalar (``numpy.float64(1.5)``...)."""
    numpy = _numpy_if_loaded()
    return numpy is not None and isinstance(obj, numpy.generic)


def _numpy_if_loaded() -> Any:
    import sys

    return sys.modules.get("numpy")


def check_descr(descr: str) -> int:
    """The item size of an accepted dtype string; :class:`DataCodecError` otherwise."""
    if type(descr) is not str or DESCR.fullmatch(descr) is None:
        raise DataCodecError(f"dtype {descr!r} is not carried by value (numeric, bool, "
                             "datetime64/timedelta64 with a unit, or fixed-width bytes/str)")
    kind = descr[1]
    if kind in "SU":
        n = int(descr[2:])
        return n * 4 if kind == "U" else n
    if kind in "Mm":
        return 8
    return int(descr[2:])


def write_header(descr: str, fortran: bool, shape: tuple[int, ...]) -> bytes:
    """An npy header (format 1.0, or 2.0 if it is too long for 1.0), padded to 64 bytes."""
    dims = "".join(f"{n}, " for n in shape)
    dims = dims[:-2] + ("," if len(shape) == 1 else "") if shape else ""
    text = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': ({dims}), }}"
    for version, prefix in ((1, _V1), (2, _V2)):
        start = len(MAGIC) + 2 + prefix.size
        pad = -(start + len(text) + 1) % 64
        body = (text + " " * pad + "\n").encode("latin1")
        if version == 2 or len(body) < 1 << 16:
            return MAGIC + bytes((version, 0)) + prefix.pack(len(body)) + body
    raise AssertionError("unreachable")


def parse_header(header: bytes, *, max_bytes: int) -> ArraySpec:
    """Check an npy header and what it declares against ``max_bytes``; raises
    :class:`DataCodecError` for anything else (other dtypes, extra keys, sizes over it)."""
    if type(header) is not bytes or len(header) > MAX_HEADER or len(header) < 10 \
            or not header.startswith(MAGIC):
        raise DataCodecError("not an npy array header")
    major, minor = header[6], header[7]
    prefix = {1: _V1, 2: _V2, 3: _V2}.get(major)
    if prefix is None or minor != 0:
        raise DataCodecError(f"npy format version {major}.{minor} is not supported")
    (length,) = prefix.unpack_from(header, 8)
    start = 8 + prefix.size
    if start + length != len(header):
        raise DataCodecError("the npy header's length does not match its bytes")
    try:
        text = header[start:].decode("utf-8" if major == 3 else "latin1")
    except UnicodeDecodeError:
        raise DataCodecError("the npy header is not text") from None
    match = _HEADER.fullmatch(text)
    if match is None:
        raise DataCodecError("the npy header is not the dict numpy writes (descr, "
                             "fortran_order, shape only)")
    descr, fortran, dims = match.groups()
    itemsize = check_descr(descr)
    shape = tuple(int(n) for n in dims.replace(",", " ").split())
    if len(shape) > MAX_DIMS:
        raise DataCodecError(f"the array has {len(shape)} dimensions; at most {MAX_DIMS}")
    if len(shape) == 1 and not dims.endswith(","):
        raise DataCodecError("the npy header's shape is malformed")
    nbytes = itemsize
    for n in shape:  # an empty dimension makes it empty, whatever the others say
        if n == 0:
            nbytes = 0
    if nbytes:
        for n in shape:
            nbytes *= n
            if nbytes > max_bytes:
                break
    if nbytes > max_bytes:
        raise DataCodecError(f"the array declares shape {shape} of {descr}: over the size "
                             f"limit of {max_bytes:,} bytes")
    return ArraySpec(descr, fortran == "True", shape, itemsize, nbytes)


def encode(arr: Any) -> tuple[bytes, memoryview]:
    """The npy header of an ndarray (or numpy scalar) and a byte view of its data.

    A C- or Fortran-contiguous array is not copied; any other layout (a slice with
    steps, negative strides) is copied once into C order. Raises
    :class:`DataCodecError` for a dtype that is not carried (object, structured...).
    """
    import numpy

    arr = numpy.asarray(arr)
    dtype = arr.dtype
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise DataCodecError(f"dtype {dtype} is not carried by value: it holds Python "
                             "objects or fields: convert it (arr.astype(...)), or allow "
                             "pickle on both sides")
    descr = dtype.str
    if descr in ("<b1", ">b1"):
        descr = "|b1"
    check_descr(descr)
    if arr.flags.c_contiguous:
        fortran, flat = False, arr.reshape(-1, order="C")
    elif arr.flags.f_contiguous:
        fortran, flat = True, arr.reshape(-1, order="F")
    else:
        fortran, flat = False, numpy.ascontiguousarray(arr).reshape(-1)
    return write_header(descr, fortran and arr.ndim > 1, arr.shape), \
        flat.view(numpy.uint8).data


def allocate(spec: ArraySpec) -> tuple[Any, memoryview]:
    """``numpy.empty`` for a checked spec, and a writable byte view of its memory."""
    import numpy

    arr = numpy.empty(spec.shape, dtype=numpy.dtype(spec.descr),
                      order="F" if spec.fortran else "C")
    flat = arr.reshape(-1, order="F" if spec.fortran else "C")
    return arr, flat.view(numpy.uint8).data


def decode(header: bytes, data: bytes, *, max_bytes: int) -> Any:
    """The array of a header and its inline bytes (a fresh, writable array)."""
    spec = parse_header(header, max_bytes=max_bytes)
    if type(data) is not bytes or len(data) != spec.nbytes:
        raise DataCodecError(f"the array declares {spec.nbytes:,} bytes but "
                             f"{len(data) if type(data) is bytes else '?'} came")
    arr, into = allocate(spec)
    into[:] = data
    return arr
