"""Boxing: values to the protocol's ``(label, payload)`` packages and back, for one connection.

Plain values (None, numbers, strings, bytes, and tuples, frozensets and slices
of them) travel by value; anything else travels by reference: this side exports
it (the connection's :class:`~rpyc_ipy.protocol.objects.ExportTable`) and the
peer gets a netref to it. Unboxing a reference gives one netref per remote
object (the proxy cache), of a proxy class made once per remote class from the
peer's INSPECT reply. A netref that died with its release still queued (not
yet sent) is as good as alive: a new one for the same object takes the release
back (``reclaim``) instead of the peer seeing a DEL and then the same reference
again, which a callback passed on every call would cost otherwise. And the last
few netrefs stay alive for a moment after their last use
(:class:`~rpyc_ipy.core.keepalive.KeptNetrefs`): the same callback sent again finds
its netref still there.

The proxy cache is keyed by the peer's ids mixed with a secret of the connection:
the peer picks those ints, and as plain keys they could all hash alike (a
quadratic flood of the cache from one frame of references).
"""

from __future__ import annotations

import secrets
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rpyc_ipy.core.handlers import check_id_pack
from rpyc_ipy.core.keepalive import KeptNetrefs
from rpyc_ipy.core.netref import (
    BaseNetref,
    RemoteMethod,
    builtin_proxy_class,
    make_proxy_class,
    resolve_method,
)
from rpyc_ipy.errors import CodecError
from rpyc_ipy.protocol import brine, consts
from rpyc_ipy.protocol.objects import ExportTable, IdPack, id_pack_of

if TYPE_CHECKING:
    from rpyc_ipy.core.connection import Connection

__all__ = ["Boxing"]

_SIMPLE_TYPES = frozenset(
    {type(None), bool, int, float, complex, bytes, str, type(NotImplemented), type(Ellipsis)}
)
_get = object.__getattribute__


class Boxing:
    """The boxing of one connection: :meth:`box` what to send, :meth:`unbox` what
    arrived. ``inspect(id_pack)`` asks the peer for a remote class's methods (a
    request, so it is only called outside ``lock``). ``reclaim(id_pack)`` takes back
    the queued, unsent release of a dead netref and returns its count (0 if none).
    ``kept``: how many netrefs to keep alive, for how many seconds after their last
    use (:mod:`rpyc_ipy.core.keepalive`)."""

    def __init__(self, owner: Connection, exports: ExportTable, lock: threading.Lock,
                 inspect: Callable[[IdPack], Any], max_proxy_classes: int,
                 reclaim: Callable[[IdPack], int], kept: tuple[int, float]) -> None:
        self._owner = owner
        self._reclaim = reclaim
        self._exports = exports
        self._lock = lock
        self._inspect = inspect
        self._max_proxy_classes = max_proxy_classes
        self._proxies: weakref.WeakValueDictionary[IdPack, BaseNetref] = \
            weakref.WeakValueDictionary()
        self._proxy_classes: dict[tuple[int, bool], type[BaseNetref]] = {}
        # id_pack ints are below 2**64 (check_id_pack), so XOR keeps keys distinct
        self._salt = secrets.randbits(64)
        self._kept = KeptNetrefs(lock, *kept)
        self._keep = self._kept.keep

    def box(self, obj: Any) -> Any:
        t = type(obj)
        if t in _SIMPLE_TYPES:
            return (consts.LABEL_VALUE, obj)
        if t is tuple:
            if brine.dumpable(obj):
                return (consts.LABEL_VALUE, obj)
            return (consts.LABEL_TUPLE, tuple([self.box(item) for item in obj]))
        if (t is frozenset or t is slice) and brine.dumpable(obj):
            return (consts.LABEL_VALUE, obj)
        if t is RemoteMethod:
            obj = resolve_method(obj)
        if isinstance(obj, BaseNetref):
            if _get(obj, "____conn__") is self._owner:
                boxed = _get(obj, "____boxed__")
                if boxed is None:  # encode once: every call on a netref sends it
                    boxed = brine.Encoded(
                        brine.dump((consts.LABEL_LOCAL_REF, _get(obj, "____id_pack__"))))
                    object.__setattr__(obj, "____boxed__", boxed)
                return boxed
            id_pack = _get(obj, "____id_pack__")
        else:
            id_pack = id_pack_of(obj)
        with self._lock:
            self._exports.export(obj, id_pack)
        return (consts.LABEL_REMOTE_REF, id_pack)

    def unbox(self, package: Any) -> Any:
        if type(package) is not tuple or len(package) != 2:
            raise CodecError("a boxed value must be a (label, payload) tuple")
        label, value = package
        if label == consts.LABEL_VALUE:
            return value
        if label == consts.LABEL_TUPLE:
            if type(value) is not tuple:
                raise CodecError("a boxed tuple must hold a tuple")
            items = []
            for item in value:  # values inline: most request arguments are plain values
                if type(item) is tuple and len(item) == 2 and item[0] == consts.LABEL_VALUE:
                    items.append(item[1])
                else:
                    items.append(self.unbox(item))
            return tuple(items)
        if label == consts.LABEL_LOCAL_REF:
            with self._lock:
                return self._exports.lookup(value)
        if label == consts.LABEL_REMOTE_REF:
            return self.proxy_for(check_id_pack(value))
        raise CodecError(f"unknown boxing label {label!r}")

    def proxy_for(self, id_pack: IdPack) -> BaseNetref:
        """The one netref of the remote object ``id_pack`` (its refcount counts
        how many times the peer sent it, released together when it dies)."""
        salt = self._salt
        key = (id_pack[0], id_pack[1] ^ salt, id_pack[2] ^ salt)
        with self._lock:
            proxy = self._proxies.get(key)
            if proxy is not None:
                object.__setattr__(proxy, "____refcount__", _get(proxy, "____refcount__") + 1)
                self._keep(proxy)
                return proxy
        cls = self._proxy_class(id_pack)
        with self._lock:
            proxy = self._proxies.get(key)
            if proxy is not None:  # another thread built it meanwhile
                object.__setattr__(proxy, "____refcount__", _get(proxy, "____refcount__") + 1)
                self._keep(proxy)
                return proxy
            proxy = cls(self._owner, id_pack)
            reclaimed = self._reclaim(id_pack)
            if reclaimed:  # the peer still counts those references: they are ours again
                object.__setattr__(proxy, "____refcount__", 1 + reclaimed)
            self._proxies[key] = proxy
            self._keep(proxy)
            return proxy

    def _proxy_class(self, id_pack: IdPack) -> type[BaseNetref]:
        name_pack, class_id, instance_id = id_pack
        is_class = instance_id == 0
        if not is_class:
            builtin = builtin_proxy_class(name_pack)
            if builtin is not None:
                return builtin
        # one class per remote class: class_id is the id of the remote type, so all
        # instances (and all modules, whose type is the same) share one INSPECT
        key = (class_id ^ self._salt, is_class)
        cls = self._proxy_classes.get(key)
        if cls is not None:
            return cls
        reply = self._inspect(id_pack)
        if type(reply) is not tuple:
            raise CodecError("INSPECT reply must be a tuple")
        names = [item[0] for item in reply
                 if type(item) is tuple and len(item) == 2 and type(item[0]) is str]
        cls = make_proxy_class(name_pack, names, is_class)
        with self._lock:
            if len(self._proxy_classes) >= self._max_proxy_classes:
                self._proxy_classes.pop(next(iter(self._proxy_classes)))
            self._proxy_classes[key] = cls
        return cls

    @property
    def kept_netrefs(self) -> int:
        """How many netrefs are kept alive past their last use now."""
        return len(self._kept)

    def take_kept(self) -> list[BaseNetref]:
        """Stop keeping netrefs alive; returns them, to be dropped outside the lock
        (call with it held)."""
        return self._kept.take_all()

    def forget_classes(self) -> None:
        """Drop the proxy classes (the connection closed; call with the lock held)."""
        self._proxy_classes.clear()
