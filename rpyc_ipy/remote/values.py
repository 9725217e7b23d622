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

Pure standard library: this module is also shipped by source to classic peers
(see :mod:`rpyc_ipy.remote.bootstrap`).
"""

from __future__ import annotations

import pickle
from collections import Counter
from typing import Any

__all__ = [
    "DEFAULT_MAX_BYTES",
    "MAX_DEPTH",
    "MAX_HASH_COLLISIONS",
    "NotByValue",
    "TooLarge",
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


class NotByValue(TypeError):
    """The value is not plain data (and pickle was not allowed)."""


class TooLarge(ValueError):
    """The value is over the size guard."""


class _Budget:
    __slots__ = ("left", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

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
         max_depth: int = MAX_DEPTH) -> Any:
    """``obj`` as brine-able data; raises :class:`NotByValue` or :class:`TooLarge`.

    With ``allow_pickle`` a value that is not plain data is pickled instead
    (the receiver decides whether to unpickle it).
    """
    budget = _Budget(max_bytes)
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
    why = f"{t.__module__}.{t.__qualname__} is not plain data"
    return _fallback(obj, budget, allow_pickle, why)


def _fallback(obj: Any, budget: _Budget, allow_pickle: bool, why: str) -> Any:
    if not allow_pickle:
        raise NotByValue(f"cannot send by value: {why} (pickle is not allowed)")
    try:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise NotByValue(f"cannot send by value: {why}, and pickling failed: {exc}") from None
    budget.spend(len(data) + 5)
    return ("pickle", data)


def unpack(packed: Any, *, allow_pickle: bool = False) -> Any:
    """Rebuild a value made by :func:`pack`; ``ValueError`` on a malformed input.

    A ``"pickle"`` part is loaded only with ``allow_pickle`` (it runs code the
    sender chose); otherwise :class:`NotByValue` is raised.
    """
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
        items = [unpack(item, allow_pickle=allow_pickle) for item in payload]
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
            keys.append(unpack(pair[0], allow_pickle=allow_pickle))
            values.append(unpack(pair[1], allow_pickle=allow_pickle))
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
    raise ValueError(f"unknown packed tag {tag!r}")


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
