"""Plain data by value over brine: :func:`pack` on one side, :func:`unpack` on the other.

Brine carries only immutable builtins, so lists, dicts and sets travel as tagged
tuples::

    packed = pack({"a": [1, 2.5, b"x"]}, max_bytes=1 << 20)   # brine-able tuples
    value = unpack(packed)                                   # {"a": [1, 2.5, b"x"]}

A packed value is either a scalar of an exact brine type (``None``, ``bool``,
``int``, ``float``, ``complex``, ``str``, ``bytes``) or a ``(tag, payload)``
pair; a bare tuple never appears otherwise, so the format is unambiguous.
Anything else is refused with :class:`NotByValue`, unless the caller allows
pickle, whose bytes travel as the ``"pickle"`` tag. :func:`unpack` never
unpickles unless its own caller allows it too: both sides must agree.

numpy arrays and scalars, and pandas DataFrames and Series, travel typed when the
receiver says it can build them (``accept``, see :data:`KINDS`): an array as its npy
header plus raw bytes (:mod:`.arrays`), a frame as Arrow IPC or as per-column arrays
(:mod:`.frames`). A buffer over ``inline_max`` bytes does not ride in the reply: the
sender keeps it in an :class:`Outbox` and sends ``("stream", token, nbytes)``; the
receiver checks the declared sizes against its ``max_bytes``, allocates the
destination, and copies the chunks its ``read(token, nbytes)`` yields into it.

Pure standard library at import: this module is also shipped by source to classic
peers (see :mod:`rpyc_ipy.remote.bootstrap`).
"""

from __future__ import annotations

import pickle
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Generator
from typing import Any

from . import arrays as _arrays
from . import frames as _frames
from .arrays import DataCodecError

__all__ = [
    "CHUNK",
    "DEFAULT_MAX_BYTES",
    "INLINE_MAX",
    "KINDS",
    "MAX_DEPTH",
    "MAX_HASH_COLLISIONS",
    "DataCodecError",
    "NotByValue",
    "Outbox",
    "TooLarge",
    "available_kinds",
    "chunk_reader",
    "pack",
    "pack_mapping",
    "unpack",
    "unpack_mapping",
]

#: the default size guard for one value (approximate encoded bytes)
DEFAULT_MAX_BYTES = 64 << 20
#: containers nested deeper than this are refused (brine decoders stop at 64 levels,
#: and a packed container costs up to three)
MAX_DEPTH = 16

_SCALARS = frozenset({type(None), bool, int, float, complex, str, bytes})
_SEQUENCE_TAGS: dict[type, str] = {tuple: "tuple", list: "list", set: "set",
                                   frozenset: "frozenset"}
_BUILDERS: dict[str, Any] = {"tuple": tuple, "list": list, "set": set, "frozenset": frozenset}
_HASHED = frozenset({"set", "frozenset"})
#: the most members of one set (or keys of one dict) that may share a hash value
MAX_HASH_COLLISIONS = 16
#: what a receiver may say it builds: numpy arrays, pandas frames, Arrow IPC frames
KINDS = ("ndarray", "pandas", "arrow")
#: buffers larger than this stream in chunks (well under the 160 MiB frame limit)
INLINE_MAX = 8 << 20
#: the bytes one chunk request asks for
CHUNK = 4 << 20
#: what to say when this side cannot build a value the other side has
DATA_EXTRA = "pip install 'rpyc_ipy[data]'"
#: ``read(token, nbytes)``: the chunks of a streamed buffer, in order
Reader = Callable[[str, int], Generator[bytes, None, None]]


def available_kinds() -> tuple[str, ...]:
    """The :data:`KINDS` this process can build (looked up, not imported)."""
    from importlib.util import find_spec

    have = {name: find_spec(name) is not None for name in ("numpy", "pandas", "pyarrow")}
    out = []
    if have["numpy"]:
        out.append("ndarray")
        if have["pandas"]:
            out.append("pandas")
            if have["pyarrow"]:
                out.append("arrow")
    return tuple(out)


class NotByValue(TypeError):
    """The value is not plain data (and pickle was not allowed)."""


class TooLarge(ValueError):
    """The value is over the size guard."""


class _Budget:
    """The size guard of one value, and how its arrays and frames travel."""

    __slots__ = ("accept", "allow_pickle", "inline_max", "left", "limit", "stream")

    def __init__(self, limit: int, allow_pickle: bool = False, accept: tuple[str, ...] = (),
                 stream: Callable[[memoryview], str] | None = None,
                 inline_max: int = INLINE_MAX) -> None:
        self.limit = limit
        self.left = limit
        self.allow_pickle = allow_pickle
        self.accept = accept
        self.stream = stream
        self.inline_max = inline_max

    def spend(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise TooLarge(f"the value is larger than the size guard ({self.limit:,} bytes)")


def _scalar_size(value: Any) -> int:
    t = type(value)
    if t is str or t is bytes:
        return len(value) + 5
    if t is int:
        return value.bit_length() // 3 + 2
    return 9


def pack(obj: Any, *, max_bytes: int = DEFAULT_MAX_BYTES, allow_pickle: bool = False,
         max_depth: int = MAX_DEPTH, accept: tuple[str, ...] = (),
         stream: Callable[[memoryview], str] | None = None,
         inline_max: int = INLINE_MAX) -> Any:
    """``obj`` as brine-able data; raises :class:`NotByValue` or :class:`TooLarge`.

    With ``allow_pickle`` a value that is not plain data is pickled instead
    (the receiver decides whether to unpickle it). ``accept``: the :data:`KINDS`
    the receiver builds; ``stream`` (e.g. :meth:`Outbox.add`) keeps buffers over
    ``inline_max`` bytes for the receiver to read in chunks.
    """
    budget = _Budget(max_bytes, bool(allow_pickle), tuple(accept), stream, inline_max)
    allow_pickle = budget.allow_pickle
    try:
        return _pack(obj, budget, allow_pickle, max_depth, set())
    except RecursionError:
        raise NotByValue("the value is nested too deeply") from None


def _pack(obj: Any, budget: _Budget, allow_pickle: bool, depth: int, active: set[int]) -> Any:
    t = type(obj)
    if t in _SCALARS:
        budget.spend(_scalar_size(obj))
        return obj
    tag = _SEQUENCE_TAGS.get(t)
    if tag is not None or t is dict:
        if depth <= 0:
            return _fallback(obj, budget, allow_pickle, "it is nested too deeply")
        key = id(obj)
        if key in active:
            return _fallback(obj, budget, allow_pickle, "it contains itself")
        active.add(key)
        try:
            budget.spend(4)
            if t is dict:
                pairs = tuple((_pack(k, budget, allow_pickle, depth - 1, active),
                               _pack(v, budget, allow_pickle, depth - 1, active))
                              for k, v in obj.items())
                return ("dict", pairs)
            return (tag, tuple(_pack(item, budget, allow_pickle, depth - 1, active)
                               for item in obj))
        finally:
            active.discard(key)
    if t is bytearray:
        budget.spend(len(obj) + 5)
        return ("bytearray", bytes(obj))
    if t is range:
        budget.spend(30)
        return ("range", (obj.start, obj.stop, obj.step))
    data = _pack_data(obj, budget)
    if data is not None:
        return data
    why = f"{t.__module__}.{t.__qualname__} is not plain data"
    return _fallback(obj, budget, allow_pickle, why)


def _pack_data(obj: Any, budget: _Budget) -> Any:
    """A numpy or pandas value in its typed form, or ``None`` for anything else."""
    if _arrays.is_ndarray(obj) or _arrays.is_numpy_scalar(obj):
        kind, tag = "ndarray", "ndarray" if _arrays.is_ndarray(obj) else "npscalar"
    elif _frames.is_frame(obj):
        kind, tag = "pandas", _frames.tag_of(obj)
    else:
        return None
    name = f"{type(obj).__module__}.{type(obj).__qualname__}"
    if kind not in budget.accept:
        if budget.allow_pickle:
            return None  # the caller pickles it
        raise NotByValue(f"cannot send a {name} by value: the receiving side has no "
                         f"{'numpy' if kind == 'ndarray' else 'pandas'} ({DATA_EXTRA} there)"
                         ", or allow pickle on both sides")
    try:
        if kind == "ndarray":
            return (tag, pack_array(obj, budget))
        return (tag, _frames.pack_frame(obj, lambda a: pack_array(a, budget),
                                        lambda b: pack_buffer(b, budget),
                                        lambda v: _pack(v, budget, False, 4, set()),
                                        "arrow" in budget.accept))
    except DataCodecError as exc:
        if budget.allow_pickle:
            return None
        raise NotByValue(f"cannot send a {name} by value: {exc}") from None


def pack_array(arr: Any, budget: _Budget) -> tuple[bytes, Any]:
    """``(npy header, buffer)`` of an array (see :func:`pack_buffer`)."""
    if arr.nbytes > budget.left:  # before encode() copies a strided array
        budget.spend(arr.nbytes)
    header, view = _arrays.encode(arr)
    budget.spend(len(header))
    return header, pack_buffer(view, budget)


def pack_buffer(view: memoryview, budget: _Budget) -> Any:
    """Bytes inline, or ``("stream", token, nbytes)`` over ``inline_max`` with a stream."""
    n = view.nbytes
    budget.spend(n + 5)
    if budget.stream is not None and n > budget.inline_max:
        return ("stream", budget.stream(view), n)
    return view.tobytes()


def _fallback(obj: Any, budget: _Budget, allow_pickle: bool, why: str) -> Any:
    if not allow_pickle:
        raise NotByValue(f"cannot send by value: {why} (pickle is not allowed): convert it to "
                         "builtins, numpy or pandas, use it where it is as a remote object, "
                         "or allow pickle on both sides")
    try:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise NotByValue(f"cannot send by value: {why}, and pickling failed: {exc}") from None
    budget.spend(len(data) + 5)
    return ("pickle", data)


class _Unpacking:
    """What :func:`unpack` needs beyond the value: pickle, the size guard, the reader."""

    __slots__ = ("allow_pickle", "left", "limit", "read")

    def __init__(self, allow_pickle: bool, limit: int, read: Reader | None) -> None:
        self.allow_pickle = allow_pickle
        self.limit = limit
        self.left = limit
        self.read = read

    def take(self, nbytes: int) -> None:
        self.left -= nbytes
        if self.left < 0:
            raise DataCodecError(f"the value declares more than the size limit of "
                                 f"{self.limit:,} bytes")


def unpack(packed: Any, *, allow_pickle: bool = False, max_bytes: int = DEFAULT_MAX_BYTES,
           read: Reader | None = None) -> Any:
    """Rebuild a value made by :func:`pack`; ``ValueError`` on a malformed input.

    A ``"pickle"`` part is loaded only with ``allow_pickle`` (it runs code the
    sender chose); otherwise :class:`NotByValue` is raised. Arrays and frames are
    checked against ``max_bytes`` (:class:`DataCodecError`) before anything is
    allocated; ``read(token, nbytes)`` yields the chunks of a streamed buffer.
    """
    return _unpack(packed, _Unpacking(allow_pickle, max_bytes, read))


def _unpack(packed: Any, ctx: _Unpacking) -> Any:
    allow_pickle = ctx.allow_pickle
    t = type(packed)
    if t in _SCALARS:
        return packed
    if t is not tuple or len(packed) != 2 or type(packed[0]) is not str:
        raise ValueError("malformed packed value")
    tag, payload = packed
    builder = _BUILDERS.get(tag)
    if builder is not None:
        if type(payload) is not tuple:
            raise ValueError(f"malformed packed {tag}")
        items = [_unpack(item, ctx) for item in payload]
        if tag in _HASHED:
            _check_spread(items, f"packed {tag}")
        return builder(items)
    if tag == "dict":
        if type(payload) is not tuple:
            raise ValueError("malformed packed dict")
        keys, values = [], []
        for pair in payload:
            if type(pair) is not tuple or len(pair) != 2:
                raise ValueError("malformed packed dict item")
            keys.append(_unpack(pair[0], ctx))
            values.append(_unpack(pair[1], ctx))
        _check_spread(keys, "packed dict")
        return dict(zip(keys, values, strict=True))
    if tag == "bytearray" and type(payload) is bytes:
        return bytearray(payload)
    if tag == "range" and type(payload) is tuple and len(payload) == 3 \
            and all(type(x) is int for x in payload):
        return range(*payload)
    if tag == "pickle" and type(payload) is bytes:
        if not allow_pickle:
            raise NotByValue("the value was pickled by the peer, and pickle is not allowed here")
        return pickle.loads(payload)
    if tag in ("ndarray", "npscalar"):
        arr = unpack_array(payload, ctx)
        return arr[()] if tag == "npscalar" else arr
    if tag in _frames.TAGS:
        try:
            return _frames.unpack_frame(tag, payload, lambda p: unpack_array(p, ctx),
                                        lambda b: unpack_buffer(b, ctx),
                                        lambda v: _unpack(v, ctx))
        except DataCodecError:
            raise
        except (OverflowError, ValueError, TypeError, IndexError) as exc:  # pandas refused
            raise DataCodecError(f"malformed packed {tag}: {exc}") from None
    raise ValueError(f"unknown packed tag {tag!r}")


def unpack_array(payload: Any, ctx: _Unpacking) -> Any:
    """An array from ``(header, buffer)``: the header is checked against what is left
    of the size limit before the array is allocated."""
    if type(payload) is not tuple or len(payload) != 2 or type(payload[0]) is not bytes:
        raise DataCodecError("malformed packed array")
    header, buf = payload
    spec = _arrays.parse_header(header, max_bytes=ctx.left)
    _check_buffer(buf, spec.nbytes)
    ctx.take(spec.nbytes)
    arr, into = _arrays.allocate(spec)
    _fill(buf, into, ctx)
    return arr


def unpack_buffer(buf: Any, ctx: _Unpacking) -> bytes | bytearray:
    """The bytes of a packed buffer (a streamed one is read into a fresh bytearray)."""
    if type(buf) is bytes:
        ctx.take(len(buf))
        return buf
    if type(buf) is not tuple or len(buf) != 3 or type(buf[2]) is not int or buf[2] < 0:
        raise DataCodecError("malformed packed buffer")
    ctx.take(buf[2])
    out = bytearray(buf[2])
    _fill(buf, memoryview(out), ctx)
    return out


def _check_buffer(buf: Any, nbytes: int) -> None:
    """A buffer's own size must be what the header declares (checked before allocating)."""
    if type(buf) is bytes:
        size = len(buf)
    elif type(buf) is tuple and len(buf) == 3 and buf[0] == "stream" and type(buf[1]) is str \
            and type(buf[2]) is int:
        size = buf[2]
    else:
        raise DataCodecError("malformed packed buffer")
    if size != nbytes:
        raise DataCodecError(f"the array declares {nbytes:,} bytes but its buffer has {size:,}")


def _fill(buf: Any, into: memoryview, ctx: _Unpacking) -> None:
    """Copy inline bytes, or the chunks of a stream, into ``into`` (its exact size)."""
    if type(buf) is bytes:
        into[:] = buf
        return
    _, token, nbytes = buf
    if ctx.read is None:
        raise DataCodecError("the value streams in chunks, and this side cannot read them")
    done = 0
    chunks = ctx.read(token, nbytes)
    try:
        for chunk in chunks:  # bounded: every chunk advances or the stream is refused
            n = len(chunk) if type(chunk) in (bytes, bytearray, memoryview) else -1
            if n <= 0 or done + n > nbytes:
                raise DataCodecError(f"the stream sent a chunk that does not fit: "
                                     f"{done:,} of {nbytes:,} bytes filled")
            into[done:done + n] = chunk
            done += n
            if done == nbytes:
                break
    finally:
        chunks.close()  # the reader lets the sender forget an unfinished stream
    if done != nbytes:
        raise DataCodecError(f"the stream ended after {done:,} of {nbytes:,} bytes")


def chunk_reader(read_chunk: Callable[[str, int, int], bytes],
                 chunk: int = CHUNK) -> Reader:
    """A :data:`Reader` that asks ``read_chunk(token, offset, length)`` for one chunk at
    a time (the push side: the server reads the client's outbox)."""

    def read(token: str, nbytes: int) -> Generator[bytes, None, None]:
        for offset in range(0, nbytes, chunk):
            yield read_chunk(token, offset, min(chunk, nbytes - offset))

    return read


class _Stream:
    __slots__ = ("left", "view")

    def __init__(self, view: memoryview) -> None:
        self.view = view
        self.left = view.nbytes  # bytes not yet served


class Outbox:
    """Buffers being read in chunks by the other side, by token (the sending end of a
    stream). The oldest are dropped beyond ``max_streams``; a stream is forgotten
    once as many bytes as it holds were served (chunk requests may be served out of
    order, on several threads), or on :meth:`release`."""

    def __init__(self, max_streams: int = 64) -> None:
        self.max_streams = max_streams
        #: the bytes of every stream added so far
        self.added = 0
        self._streams: dict[str, _Stream] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._streams)

    def add(self, view: memoryview) -> str:
        token = secrets.token_hex(8)
        with self._lock:
            self._streams[token] = _Stream(view)
            self.added += view.nbytes
            while len(self._streams) > self.max_streams:
                self._streams.pop(next(iter(self._streams)))
        return token

    def read(self, token: str, offset: int, length: int) -> bytes:
        """``length`` bytes (fewer at the end) of a stream from ``offset``."""
        if type(token) is not str or type(offset) is not int or type(length) is not int \
                or offset < 0 or length <= 0 or length > 4 * CHUNK:
            raise ValueError("read(token, offset, length) takes a token and two ints, "
                             f"0 < length <= {4 * CHUNK}")
        with self._lock:
            stream = self._streams.get(token)
        if stream is None:
            raise ValueError("no such stream (it ended, or too many streams were opened)")
        data = stream.view[offset:offset + length].tobytes()
        with self._lock:
            stream.left -= len(data)
            if stream.left <= 0:
                self._streams.pop(token, None)
        return data

    def release(self, token: str) -> None:
        with self._lock:
            self._streams.pop(token, None)


def _check_spread(items: list[Any], what: str) -> None:
    """Refuse ``items`` before they go in a set or dict if more than
    MAX_HASH_COLLISIONS share a hash value, or two holding frozensets do: the
    rule of rpyc_ipy.protocol.hashing (hash flooding makes building them quadratic),
    repeated here because this module is standard library only."""
    if len(items) < 2:
        return
    try:
        hashes = list(map(hash, items))
    except TypeError as exc:  # a set of lists: what building it would say
        raise ValueError(f"malformed {what}: {exc}") from None
    if len(set(hashes)) == len(hashes):
        return
    counts = Counter(hashes)
    if max(counts.values()) > MAX_HASH_COLLISIONS:
        raise ValueError(f"{what} has more than {MAX_HASH_COLLISIONS} members with one "
                         "hash value: refused as hash flooding")
    shared = {value for value, count in counts.items() if count > 1}
    nested = Counter(value for value, item in zip(hashes, items, strict=True)
                     if value in shared and _holds_set(item))
    if nested and max(nested.values()) > 1:
        raise ValueError(f"{what} has two members holding sets with one hash value: "
                         "refused as hash flooding")


def _holds_set(value: Any) -> bool:
    t = type(value)
    if t is frozenset:
        return True
    if t is tuple:
        return any(map(_holds_set, value))
    return False


def pack_mapping(mapping: dict[str, Any] | None, **kwargs: Any) -> tuple[tuple[str, Any], ...]:
    """A str-keyed dict as ``((key, packed), ...)`` pairs."""
    if not mapping:
        return ()
    return tuple((str(k), pack(v, **kwargs)) for k, v in mapping.items())


def unpack_mapping(pairs: Any, *, allow_pickle: bool = False) -> dict[str, Any]:
    """The inverse of :func:`pack_mapping`; malformed pairs raise ``ValueError``."""
    if type(pairs) is not tuple:
        raise ValueError("malformed packed mapping")
    out: dict[str, Any] = {}
    for pair in pairs:
        if type(pair) is not tuple or len(pair) != 2 or type(pair[0]) is not str:
            raise ValueError("malformed packed mapping item")
        out[pair[0]] = unpack(pair[1], allow_pickle=allow_pickle)
    return out
