"""Netrefs: the holder's side of a capability.

A netref stands for one object on the peer. Every use of it is a request on its
connection (wire spec §10.2); the peer's policy decides what is allowed. What a netref
never does, whatever the peer claims:

* run I/O in ``__del__``: the release is queued on the connection and flushed later;
* unpickle anything unless the *local* policy has ``allow_pickle``: ``pickle``,
  ``copy.copy``, ``copy.deepcopy`` and numpy's ``__array__`` all refuse;
* answer IPython's display probes (``_repr_*_``, ``_ipython_*``) by asking the peer:
  display of remote objects is the notebook layer's explicit decision.

Proxy classes are built from the peer's INSPECT reply (the method names its
object supports) and cached per remote class; builtin types need no INSPECT.
"""

from __future__ import annotations

import inspect
import pickle
import sys
import types
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from rpyc_ipy.errors import PickleDisabledError
from rpyc_ipy.protocol import consts
from rpyc_ipy.protocol.objects import IdPack

if TYPE_CHECKING:
    from rpyc_ipy.core.policy import SecurityPolicy

__all__ = [
    "LOCAL_ATTRS",
    "RPYC_LOCAL_ATTRS",
    "BaseNetref",
    "NetrefOwner",
    "RemoteMethod",
    "builtin_proxy_class",
    "class_methods",
    "make_proxy_class",
    "method_target",
    "resolve_local_class",
    "resolve_method",
]

#: RPyC 6.0.2's local attribute names (wire spec §10.1); INSPECT replies leave them out
RPYC_LOCAL_ATTRS = frozenset("""
    ____conn__ ____id_pack__ ____refcount__ ____boxed__ __class__ __cmp__ __del__ __delattr__
    __dir__
    __doc__ __getattr__ __getattribute__ __hash__ __instancecheck__ __init__ __metaclass__
    __module__ __new__ __reduce__ __reduce_ex__ __repr__ __setattr__ __slots__ __str__
    __weakref__ __dict__ __methods__ __exit__ __eq__ __ne__ __lt__ __gt__ __le__ __ge__
    __array_struct__ __array_interface__
""".split())
#: names a netref answers itself, never with a GETATTR: RPyC's plus copying and numpy hooks
LOCAL_ATTRS = RPYC_LOCAL_ATTRS | frozenset("""
    __copy__ __deepcopy__ __getstate__ __setstate__
    __sizeof__ __init_subclass__ __subclasshook__ __class_getitem__ __array__
    __array_priority__ __array_ufunc__ __array_function__ __array_wrap__ __array_finalize__
    __array_prepare__ __dlpack__ __dlpack_device__ __fspath__
""".split())
# answered locally with AttributeError: asking the peer would cost a round trip
# and could run code the peer chose in a renderer or in numpy
_REFUSED_LOCALLY = frozenset("""
    __array_struct__ __array_interface__ __array_priority__ __array_ufunc__
    __array_function__ __array_wrap__ __array_finalize__ __array_prepare__ __dlpack__
    __dlpack_device__ __getstate__ __setstate__ __fspath__ __dict__ __methods__
    __metaclass__ __slots__
""".split())
_REFUSED_PREFIXES = ("_repr_", "_ipython_")
# dunders of the remote method list that must not become proxy-class methods
_NOT_INSTALLED = LOCAL_ATTRS | {"__getattribute__", "__setattr__", "__delattr__", "__init__",
                                "__new__", "__del__", "__reduce__", "__reduce_ex__", "__class__"}

#: name_packs of the functions a module's netref learns to call with one CALLATTR
_FUNCTION_TYPES = frozenset({"builtins.function", "builtins.builtin_function_or_method",
                             "builtins.method"})
#: how many such names one netref remembers (a module has many functions; memory stays small)
MAX_LEARNED_CALLABLES = 256

_get = object.__getattribute__
_set = object.__setattr__


class NetrefOwner(Protocol):
    """What a netref asks of the connection it came from (``core.connection.Connection``)."""

    @property
    def policy(self) -> SecurityPolicy:
        """What this side grants the peer (``allow_pickle`` gates pickling netrefs)."""

    def sync_request(self, handler: int, *args: Any) -> Any:
        """Send a request and wait for its reply."""

    def netref_getattr(self, proxy: BaseNetref, name: str) -> Any:
        """``proxy.name``, asked of the peer."""

    def netref_instancecheck(self, cls_proxy: BaseNetref, other: Any) -> bool:
        """``isinstance(other, cls_proxy)`` for a netref to a remote class."""

    def queue_release(self, id_pack: IdPack, count: int) -> None:
        """Note that ``count`` references to ``id_pack`` were dropped (from ``__del__``:
        no lock, no I/O)."""


def _conn(proxy: BaseNetref) -> NetrefOwner:
    return _get(proxy, "____conn__")


class BaseNetref:
    """Base of every proxy class; subclasses add the dunders the remote object has."""

    __slots__ = ("____boxed__", "____callables__", "____conn__", "____id_pack__",
                 "____refcount__", "__weakref__")
    #: names (methods) the remote class has, from INSPECT or the local builtin type
    _rpyc_methods: frozenset[str] = frozenset()
    #: the local class the name_pack resolves to, if any (see wire spec §10.5)
    _rpyc_local_class: type | None = None

    def __init__(self, conn: NetrefOwner, id_pack: IdPack) -> None:
        _set(self, "____conn__", conn)
        _set(self, "____id_pack__", id_pack)
        _set(self, "____refcount__", 1)
        _set(self, "____boxed__", None)  # brine of (LOCAL_REF, id_pack), made on first send
        _set(self, "____callables__", None)  # names seen to be functions (see below)

    def __del__(self) -> None:
        try:
            conn = _get(self, "____conn__")
            conn.queue_release(_get(self, "____id_pack__"), _get(self, "____refcount__"))
        except Exception:  # interpreter shutdown, half-built proxy: nothing to release
            pass

    # -- attributes -------------------------------------------------------------

    def __getattribute__(self, name: str) -> Any:
        if name in LOCAL_ATTRS:
            if name == "__class__":
                local = type(self)._rpyc_local_class
                return local if local is not None else type(self)
            if name == "__doc__":
                return _conn(self).netref_getattr(self, "__doc__")
            if name in _REFUSED_LOCALLY:
                raise AttributeError(name)
            return _get(self, name)
        if name.startswith(_REFUSED_PREFIXES):
            raise AttributeError(name)
        # an exposed method is called with one CALLATTR and no GETATTR first; only
        # exposed names qualify: a peer's INSPECT (RPyC's) may list methods its
        # policy refuses, and hasattr() must stay False for those
        methods = type(self)._rpyc_methods
        if ("exposed_" + name) in methods or (name.startswith("exposed_") and name in methods):
            return RemoteMethod(self, name)
        # a module's name the peer already answered with a function (os.getpid) is
        # called with one CALLATTR too, which looks the name up afresh at call time;
        # any other use resolves it first, and one that finds no function forgets it
        callables = _get(self, "____callables__")
        if callables is not None and name in callables:
            return RemoteMethod(self, name)
        value = _conn(self).netref_getattr(self, name)
        if type(self)._rpyc_local_class is types.ModuleType and _is_function(value):
            if callables is None:
                callables = set()
                _set(self, "____callables__", callables)
            if len(callables) < MAX_LEARNED_CALLABLES:
                callables.add(name)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if name in LOCAL_ATTRS:
            raise AttributeError(f"cannot set {name!r} on a netref")
        _conn(self).sync_request(consts.HANDLE_SETATTR, self, name, value)

    def __delattr__(self, name: str) -> None:
        if name in LOCAL_ATTRS:
            raise AttributeError(f"cannot delete {name!r} on a netref")
        _conn(self).sync_request(consts.HANDLE_DELATTR, self, name)

    def __dir__(self) -> list[str]:
        return list(_conn(self).sync_request(consts.HANDLE_DIR, self))

    # -- identity, comparison, text ---------------------------------------------

    def __hash__(self) -> int:
        return _conn(self).sync_request(consts.HANDLE_HASH, self)

    def __eq__(self, other: object) -> Any:
        return _conn(self).sync_request(consts.HANDLE_CMP, self, other, "__eq__")

    def __ne__(self, other: object) -> Any:
        return _conn(self).sync_request(consts.HANDLE_CMP, self, other, "__ne__")

    def __lt__(self, other: object) -> Any:
        return _conn(self).sync_request(consts.HANDLE_CMP, self, other, "__lt__")

    def __gt__(self, other: object) -> Any:
        return _conn(self).sync_request(consts.HANDLE_CMP, self, other, "__gt__")

    def __le__(self, other: object) -> Any:
        return _conn(self).sync_request(consts.HANDLE_CMP, self, other, "__le__")

    def __ge__(self, other: object) -> Any:
        return _conn(self).sync_request(consts.HANDLE_CMP, self, other, "__ge__")

    def __repr__(self) -> str:
        return _conn(self).sync_request(consts.HANDLE_REPR, self)

    def __str__(self) -> str:
        return _conn(self).sync_request(consts.HANDLE_STR, self)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        return _conn(self).sync_request(consts.HANDLE_CTXEXIT, self, exc_type)

    # -- copying: by value only when the local policy allows pickle -------------

    def __reduce_ex__(self, protocol: Any) -> Any:
        conn = _conn(self)
        if not conn.policy.allow_pickle:
            raise PickleDisabledError(
                "pickling a netref needs allow_pickle in the local config "
                "(it would unpickle bytes chosen by the peer)"
            )
        return pickle.loads, (conn.sync_request(consts.HANDLE_PICKLE, self, protocol),)

    def __copy__(self) -> Any:
        return _obtain_by_pickle(self, "copy.copy")

    def __deepcopy__(self, memo: Any) -> Any:
        return _obtain_by_pickle(self, "copy.deepcopy")


def _obtain_by_pickle(proxy: BaseNetref, what: str) -> Any:
    conn = _conn(proxy)
    if not conn.policy.allow_pickle:
        raise PickleDisabledError(f"{what} of a netref needs allow_pickle in the local config")
    data = conn.sync_request(consts.HANDLE_PICKLE, proxy, pickle.HIGHEST_PROTOCOL)
    return pickle.loads(data)


def _array(self: BaseNetref, *args: Any, **kwargs: Any) -> Any:
    # numpy calls __array__ implicitly: only the local pickle permission lets it through
    value = _obtain_by_pickle(self, "numpy's __array__")
    return value.__array__(*args, **kwargs)


class RemoteMethod:
    """``netref.name`` for a name the remote class lists as a method.

    Calling it costs one CALLATTR round trip; anything else (``repr``, attributes,
    passing it as an argument) fetches the real bound-method netref first.
    """

    __slots__ = ("_name", "_owner", "_resolved")

    def __init__(self, owner: BaseNetref, name: str) -> None:
        self._owner = owner
        self._name = name
        self._resolved: BaseNetref | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        owner = self._owner
        return _get(owner, "____conn__").sync_request(
            consts.HANDLE_CALLATTR, owner, self._name, args, tuple(kwargs.items())
        )

    def __getattr__(self, name: str) -> Any:
        if name.startswith(_REFUSED_PREFIXES) or name in _REFUSED_LOCALLY:
            raise AttributeError(name)
        return getattr(resolve_method(self), name)

    def __repr__(self) -> str:
        return repr(resolve_method(self))

    def __str__(self) -> str:
        return str(resolve_method(self))

    def __dir__(self) -> list[str]:
        return dir(resolve_method(self))

    def __reduce_ex__(self, protocol: Any) -> Any:
        return resolve_method(self).__reduce_ex__(protocol)


# -- proxy classes ------------------------------------------------------------


def _callattr_method(name: str) -> Callable[..., Any]:
    def method(self: BaseNetref, *args: Any, **kwargs: Any) -> Any:
        return _conn(self).sync_request(consts.HANDLE_CALLATTR, self, name, args,
                                        tuple(kwargs.items()))
    method.__name__ = name
    return method


def _call(self: BaseNetref, *args: Any, **kwargs: Any) -> Any:
    return _conn(self).sync_request(consts.HANDLE_CALL, self, args, tuple(kwargs.items()))


def _oldslicing_method(name: str) -> Callable[..., Any]:
    attempt = {"__getslice__": "__getitem__", "__setslice__": "__setitem__",
               "__delslice__": "__delitem__"}[name]

    def method(self: BaseNetref, start: Any, stop: Any, *args: Any) -> Any:
        return _conn(self).sync_request(consts.HANDLE_OLDSLICING, self, attempt, name, start,
                                        stop, args)
    method.__name__ = name
    return method


def _is_function(value: Any) -> bool:
    """Whether ``value`` is a netref to a function or method on the peer."""
    return isinstance(value, BaseNetref) and _get(value, "____id_pack__")[0] in _FUNCTION_TYPES


def resolve_method(method: RemoteMethod) -> BaseNetref:
    """The bound-method netref a :class:`RemoteMethod` stands for (one GETATTR, once)."""
    resolved = method._resolved
    if resolved is None:
        owner = method._owner
        resolved = method._resolved = _conn(owner).netref_getattr(owner, method._name)
        callables = _get(owner, "____callables__")
        if callables is not None and not _is_function(resolved):
            callables.discard(method._name)  # rebound to something else on the peer
    return resolved


def method_target(method: RemoteMethod) -> tuple[BaseNetref, str]:
    """The netref and the attribute name a :class:`RemoteMethod` calls (no request)."""
    return method._owner, method._name


def _instancecheck(self: BaseNetref, other: Any) -> bool:
    return _conn(self).netref_instancecheck(self, other)


def resolve_local_class(name_pack: str, is_class: bool) -> type | None:
    """The local class a name_pack names, looked up without running any code.

    Only module ``__dict__`` entries are consulted (never ``getattr``, which could
    run a module's ``__getattr__`` with a peer-chosen name).
    """
    cls: Any = _BUILTIN_TYPES.get(name_pack)
    if cls is None:
        module_name, _, class_name = name_pack.rpartition(".")
        while module_name:
            module = sys.modules.get(module_name)
            if module is not None:
                candidate = module.__dict__.get(class_name) if class_name else None
                if isinstance(candidate, type):
                    cls = candidate
                elif not class_name or name_pack in sys.modules:
                    cls = types.ModuleType
                break
            module_name, _, head = module_name.rpartition(".")
            class_name = f"{head}.{class_name}" if class_name else head
            if "." in class_name:  # nested classes are not resolved
                break
        if cls is None and name_pack in sys.modules:
            cls = types.ModuleType
    if cls is None:
        return None
    return type(cls) if is_class else cls


def make_proxy_class(name_pack: str, methods: Iterable[str], is_class: bool = False
                     ) -> type[BaseNetref]:
    """Build a proxy class whose implicit dunders forward to the remote object."""
    names = frozenset(methods)
    namespace: dict[str, Any] = {
        "__slots__": (),
        "__module__": "rpyc_ipy.core.netref",
        "_rpyc_methods": names,
        "_rpyc_local_class": resolve_local_class(name_pack, is_class),
    }
    for name in names:
        if not (name.startswith("__") and name.endswith("__")) or name in _NOT_INSTALLED:
            continue
        if name == "__call__":
            namespace[name] = _call
        elif name in ("__getslice__", "__setslice__", "__delslice__"):
            namespace[name] = _oldslicing_method(name)
        else:
            namespace[name] = _callattr_method(name)
    if "__array__" in names:
        namespace["__array__"] = _array
    if is_class:
        namespace["__instancecheck__"] = _instancecheck
    return type(name_pack.rpartition(".")[2] or name_pack, (BaseNetref,), namespace)


def class_methods(cls: type, *, for_class: bool = False) -> list[tuple[str, str | None]]:
    """``(name, doc)`` of the routines a proxy for an instance (or class) of ``cls`` needs.

    Walks the MRO from ``object`` down so that derived definitions win but keep
    the first position, as RPyC's INSPECT reply does (wire spec §10.3).
    """
    mros: list[type] = []
    if for_class:
        mros.extend(reversed(inspect.getmro(type(cls))))
    mros.extend(reversed(inspect.getmro(cls)))
    found: dict[str, str | None] = {}
    for klass in mros:
        for name, value in list(vars(klass).items()):
            if name in RPYC_LOCAL_ATTRS:
                continue
            if inspect.isroutine(value) or isinstance(value, (staticmethod, classmethod)):
                try:
                    doc = inspect.getdoc(value)
                except Exception:
                    doc = None
                found[name] = doc if isinstance(doc, str) else None
    return list(found.items())


_BUILTIN_TYPES: dict[str, type] = {
    f"builtins.{t.__name__}": t
    for t in (type, object, bool, complex, dict, float, int, list, slice, str, tuple, set,
              frozenset, BaseException, Exception, type(None), types.BuiltinFunctionType,
              types.GeneratorType, types.MethodType, types.CodeType, types.FrameType,
              types.TracebackType, types.ModuleType, types.FunctionType,
              types.MappingProxyType, types.WrapperDescriptorType, types.MethodWrapperType,
              type(iter([])), type(iter(())), type(iter(set())), bytes, bytearray,
              type(iter(range(0))), memoryview)
}
# the builtin module is named "builtins" on the wire; keep the table honest
assert all(t.__module__ == "builtins" for t in _BUILTIN_TYPES.values())
_BUILTIN_CLASSES: dict[str, type[BaseNetref]] = {}


def builtin_proxy_class(name_pack: str) -> type[BaseNetref] | None:
    """The shared proxy class for a builtin type's instances, or ``None``."""
    proxy = _BUILTIN_CLASSES.get(name_pack)
    if proxy is None:
        local = _BUILTIN_TYPES.get(name_pack)
        if local is None:
            return None
        methods = [name for name, _ in class_methods(local)]
        proxy = _BUILTIN_CLASSES.setdefault(name_pack, make_proxy_class(name_pack, methods))
    return proxy



