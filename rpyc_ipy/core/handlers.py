"""The request handlers: what this side does for each request the peer sends.

:class:`RequestHandlers` is mixed into :class:`~rpyc_ipy.core.connection.Connection`.
Every handler goes through :func:`rpyc_ipy.core.policy.authorize` (directly, or inside
``get_attribute``/``set_attribute``/``del_attribute``); ``tests/core/test_gate.py``
walks the table to prove it.
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Callable
from itertools import islice
from typing import TYPE_CHECKING, Any, ClassVar

from rpyc_ipy.core.netref import class_methods, resolve_local_class
from rpyc_ipy.core.policy import (
    Op,
    SecurityPolicy,
    authorize,
    del_attribute,
    get_attribute,
    set_attribute,
    visible_names,
)
from rpyc_ipy.errors import CodecError
from rpyc_ipy.protocol import consts
from rpyc_ipy.protocol.hashing import check_spread
from rpyc_ipy.protocol.objects import ExportTable, IdPack, id_pack_of

if TYPE_CHECKING:
    import threading

__all__ = ["CloseRequested", "RequestHandlers", "check_id_pack"]


class CloseRequested(Exception):
    """Raised by the CLOSE handler: tear down, send no reply."""


def check_id_pack(value: Any) -> IdPack:
    """``value`` if it has the shape of an id_pack ``(str, int, int)`` whose ints are
    ids (0 to 2**64 - 1, what ``id()`` gives), else CodecError."""
    if (type(value) is not tuple or len(value) != 3 or type(value[0]) is not str
            or type(value[1]) is not int or type(value[2]) is not int
            or not 0 <= value[1] < _ID_END or not 0 <= value[2] < _ID_END):
        raise CodecError("an id_pack must be a (str, int, int) tuple of ids below 2**64")
    return value


_ID_END = 1 << 64


class RequestHandlers:
    """The handler table and the handlers; needs the connection's policy, export
    table, lock, config and root object."""

    _policy: SecurityPolicy
    _exports: ExportTable
    _lock: threading.Lock
    _config: dict[str, Any]
    _local_root: Any

    #: handler id -> its function, resolved once per class (overrides included) and
    #: shared by every connection of the class: called as ``handler(conn, *args)``
    _handlers: ClassVar[dict[int, Callable[..., Any]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # HANDLE_GETATTR is served by _handle_getattr, and so on for every handler id
        cls._handlers = {handler: getattr(cls, "_handle_" + name.lower())
                         for handler, name in consts.HANDLER_NAMES.items()}

    def _handle_ping(self, data: Any) -> Any:
        authorize(self._policy, Op.PING)
        return data

    def _handle_close(self) -> None:
        authorize(self._policy, Op.CLOSE)
        raise CloseRequested

    def _handle_getroot(self) -> Any:
        authorize(self._policy, Op.GETROOT)
        return self._local_root

    def _handle_getattr(self, obj: Any, name: Any) -> Any:
        return get_attribute(self._policy, obj, name)

    def _handle_delattr(self, obj: Any, name: Any) -> None:
        del_attribute(self._policy, obj, name)

    def _handle_setattr(self, obj: Any, name: Any, value: Any) -> None:
        set_attribute(self._policy, obj, name, value)

    def _handle_call(self, obj: Any, args: Any = (), kwargs: Any = ()) -> Any:
        authorize(self._policy, Op.CALL, obj)
        return obj(*args, **self._keywords(kwargs))

    def _handle_callattr(self, obj: Any, name: Any, args: Any = (), kwargs: Any = ()) -> Any:
        method = get_attribute(self._policy, obj, name, Op.CALLATTR)
        return method(*args, **self._keywords(kwargs))

    def _keywords(self, kwargs: Any) -> dict[str, Any]:
        """The peer's ``((name, value), ...)`` as a dict, refused before it is built
        if its names would flood it (rpyc_ipy.protocol.hashing)."""
        if type(kwargs) is tuple and len(kwargs) > 1:
            check_spread([pair[0] for pair in kwargs if type(pair) is tuple and len(pair) == 2],
                         self._config["limits"].max_hash_collisions, "keyword arguments")
        return dict(kwargs)

    def _handle_repr(self, obj: Any) -> str:
        authorize(self._policy, Op.REPR, obj)
        return repr(obj)

    def _handle_str(self, obj: Any) -> str:
        authorize(self._policy, Op.STR, obj)
        return str(obj)

    def _handle_cmp(self, obj: Any, other: Any, op: Any = "__cmp__") -> Any:
        method = get_attribute(self._policy, type(obj), op, Op.CMP)
        return method(obj, other)

    def _handle_hash(self, obj: Any) -> int:
        authorize(self._policy, Op.HASH, obj)
        return hash(obj)

    def _handle_dir(self, obj: Any) -> tuple[str, ...]:
        authorize(self._policy, Op.DIR, obj)
        return tuple(visible_names(self._policy, obj, dir(obj)))

    def _handle_pickle(self, obj: Any, proto: Any) -> bytes:
        authorize(self._policy, Op.PICKLE, obj)
        return bytes(pickle.dumps(obj, proto))

    def _handle_del(self, obj: Any, count: Any = 1) -> None:
        authorize(self._policy, Op.DEL, obj)
        if type(count) is not int or count < 1:
            raise ValueError("DEL count must be a positive int")
        with self._lock:
            self._exports.release(id_pack_of(obj), count)

    def _handle_inspect(self, id_pack: Any) -> tuple[tuple[str, str | None], ...]:
        authorize(self._policy, Op.INSPECT)
        with self._lock:
            obj = self._exports.lookup(id_pack)
        is_class = isinstance(obj, type)
        methods = class_methods(obj if is_class else type(obj), for_class=is_class)
        policy = self._policy
        return tuple((name, doc) for name, doc in methods
                     if name == "__call__" or policy.name_passes(name))

    def _handle_buffiter(self, obj: Any, count: Any) -> tuple[Any, ...]:
        authorize(self._policy, Op.BUFFITER, obj)
        if type(count) is not int or count < 0:
            raise ValueError("BUFFITER count must be a non-negative int")
        return tuple(islice(obj, min(count, self._config["max_buffiter_chunk"])))

    def _handle_oldslicing(self, obj: Any, attempt: Any, fallback: Any, start: Any, stop: Any,
                           args: Any = ()) -> Any:
        try:
            method = get_attribute(self._policy, obj, attempt, Op.OLDSLICING)
            return method(slice(start, stop), *args)
        except Exception:
            method = get_attribute(self._policy, obj, fallback, Op.OLDSLICING)
            return method(start, sys.maxsize if stop is None else stop, *args)

    def _handle_ctxexit(self, obj: Any, exc: Any) -> Any:
        method = get_attribute(self._policy, obj, "__exit__", Op.CTXEXIT)
        if exc is None:
            return method(None, None, None)
        try:
            raise exc
        except BaseException:
            exc_type, value, tb = sys.exc_info()
        return method(exc_type, value, tb)

    def _handle_instancecheck(self, obj: Any, other_id_pack: Any) -> bool:
        authorize(self._policy, Op.INSTANCECHECK, obj)
        name_pack, _, instance_id = check_id_pack(other_id_pack)
        local = resolve_local_class(name_pack, False)
        if local is None:
            return False
        try:
            if isinstance(obj, type):
                return issubclass(local, obj) if instance_id else isinstance(local, obj)
            return bool(isinstance(local, type) and obj.__instancecheck__(local))
        except Exception:
            return False
