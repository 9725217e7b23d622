"""vinegar: exceptions on the wire, as RPyC 6.0.2 sends them (wire spec §9).

An exception travels as plain data, brine-encoded with no boxing::

    1                                              exactly StopIteration
    ((module, name), args, attrs, traceback_text)  everything else

:func:`dump` builds that payload from a local exception (bounded: at most
``MAX_ATTRS`` attributes, reprs cut at ``MAX_REPR`` characters). Encode it with
:func:`rpyc_ipy.protocol.brine.dump`.

:func:`load` rebuilds an exception from a payload that brine decoded. By
default only builtin exception classes are rebuilt (as a subclass that mixes in
:class:`~rpyc_ipy.errors.RemoteExceptionMixin`, so ``except KeyError`` still
works); everything else becomes :class:`~rpyc_ipy.errors.RemoteError`. The
peer's extra attributes are never set on the exception: they are in its
read-only ``remote_attrs``. Loading never imports a module by itself, never
calls code the peer names (no custom ``__new__``/``__init__``, no module
``__getattr__``), and caches rebuilt classes by *local* class only. A payload
of the wrong shape raises :class:`~rpyc_ipy.errors.CodecError`.

Sans-I/O: no sockets, threads or clocks here.
"""

from __future__ import annotations

import builtins
import sys
import traceback
from collections.abc import Callable
from types import BuiltinFunctionType, MappingProxyType, ModuleType, WrapperDescriptorType
from typing import Any

from rpyc_ipy.errors import CodecError, RemoteError, RemoteExceptionMixin
from rpyc_ipy.protocol import brine
from rpyc_ipy.protocol.consts import STOP_ITERATION_PAYLOAD

__all__ = [
    "MAX_ARG_SIZE",
    "MAX_ATTRS",
    "MAX_ATTR_SIZE",
    "MAX_REPR",
    "MAX_TRACEBACK",
    "REMOTE_VERSION",
    "dump",
    "load",
]

#: the version we send as ``_remote_version``; peers compare its major number with theirs
REMOTE_VERSION = "6.0.2"
_LOCAL_MAJOR = REMOTE_VERSION.split(".")[0]
VERSION_DENIED = "<version denied>"
TRACEBACK_DENIED = "<traceback denied>"

#: attributes sent by :func:`dump` and kept by :func:`load`, at most
MAX_ATTRS = 64
#: characters of one repr sent by :func:`dump`
MAX_REPR = 4096
#: bytes of one attribute value kept by :func:`load` (its brine size)
MAX_ATTR_SIZE = 4096
#: characters of traceback text sent or kept
MAX_TRACEBACK = 1 << 20
#: how much of each exception argument we keep from the peer
MAX_ARG_SIZE = 64 * 1024
#: module and class names longer than this are not names
_MAX_NAME = 512
_MAX_VERSION = 64

_SKIPPED_ATTRS = frozenset({"args", "with_traceback", "_remote_tb"})


# ---------------------------------------------------------------------------
# dump


def _cut(text: str, limit: int) -> str:
    """``text`` shortened to ``limit`` characters, keeping its end (where the error is)."""
    if len(text) <= limit:
        return text
    marker = f"[... {len(text) - limit} characters cut ...]\n"
    return marker + text[len(text) - limit + len(marker):]


def _safe_repr(value: object) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not stop the error report
        t = type(value)
        return f"<{t.__module__}.{t.__qualname__} object, repr() raised {type(exc).__name__}>"
    if type(text) is not str:  # repr() guarantees a str, but not an exact one
        text = str.__str__(text)
    return text if len(text) <= MAX_REPR else text[:MAX_REPR - 3] + "..."


def _wire_value(value: object) -> object:
    return value if brine.dumpable(value) else _safe_repr(value)


def dump(exc: BaseException, *, include_traceback: bool = True,
         include_version: bool = True) -> object:
    """The vinegar payload for ``exc``; pass it to :func:`brine.dump`.

    ``include_traceback=False`` sends ``<traceback denied>`` instead of the
    formatted traceback, ``include_version=False`` sends ``<version denied>``.
    """
    typ = type(exc)
    if typ is StopIteration:
        return STOP_ITERATION_PAYLOAD
    module, name = _wire_type(exc)
    args = tuple(_wire_value(arg) for arg in exc.args)
    attrs: list[tuple[str, object]] = []
    try:
        names = dir(exc)
    except Exception:  # a broken __dir__: send no attributes
        names = []
    for attr in names:
        if type(attr) is not str or attr.startswith("_") or attr in _SKIPPED_ATTRS:
            continue
        if len(attrs) >= MAX_ATTRS:
            break
        try:
            value = getattr(exc, attr)
        except Exception:  # e.g. OSError.characters_written raises AttributeError
            continue
        attrs.append((attr, _wire_value(value)))
    attrs.append(("_remote_version", REMOTE_VERSION if include_version else VERSION_DENIED))
    if include_traceback:
        text = "".join(traceback.format_exception(typ, exc, exc.__traceback__))
        text = _cut(text, MAX_TRACEBACK)
    else:
        text = TRACEBACK_DENIED
    return (module, name), args, tuple(attrs), text


def _wire_type(exc: BaseException) -> tuple[str, str]:
    """The (module, name) we send for ``exc``.

    Our own errors travel as their first builtin base (SecurityError as
    AttributeError, CodecError as ValueError...), so any peer, RPyC included,
    rebuilds something that ``except`` and ``hasattr`` understand; an error
    rebuilt from a peer keeps the type name it came with when forwarded.
    """
    typ = type(exc)
    if isinstance(exc, RemoteError) and "." in exc.remote_type:
        module, _, name = exc.remote_type.rpartition(".")
        return module, name
    if typ.__module__.startswith("rpyc_ipy."):
        for base in typ.__mro__:
            if base.__module__ == "builtins":
                return "builtins", base.__name__
    return typ.__module__, typ.__name__


# ---------------------------------------------------------------------------
# load

# class -> its rebuilt subclass (or None if it cannot be subclassed); keyed by
# local classes only, so it is bounded by the classes this process has
_rebuilt: dict[type, type | None] = {}
# the module's own namespace, read without any module __getattr__ on the way
_module_dict: Callable[[object], dict[str, Any]] = vars(ModuleType)["__dict__"].__get__
_args_setter = BaseException.__dict__["args"].__set__


def _malformed(message: str) -> CodecError:
    return CodecError(f"vinegar: {message}")


def _find_class(namespace: object, name: str) -> type[BaseException] | None:
    if not issubclass(type(namespace), ModuleType):  # sys.modules may hold anything
        return None
    candidate: Any = _module_dict(namespace).get(name)
    # type() and issubclass() on types: no __class__ or __instancecheck__ of the peer's choice
    if issubclass(type(candidate), type) and issubclass(candidate, BaseException):
        return candidate
    return None


def _choose_class(module: str, name: str, instantiate_custom: bool,
                  import_module: Callable[[str], object] | None) -> type[BaseException] | None:
    if instantiate_custom:
        if import_module is not None and module not in sys.modules:
            try:
                import_module(module)
            except Exception:  # RPyC ignores a failed import too
                pass
        return _find_class(sys.modules.get(module), name)
    if module == "builtins":
        return _find_class(builtins, name)
    return None


def _rebuilt_class(cls: type[BaseException]) -> type | None:
    """The cached subclass of ``cls`` that carries RemoteExceptionMixin."""
    try:
        return _rebuilt[cls]
    except KeyError:
        pass
    derived: type | None
    if issubclass(cls, RemoteExceptionMixin):
        derived = cls
    else:
        try:
            derived = type(cls.__name__, (RemoteExceptionMixin, cls), {
                "__module__": cls.__module__,
                "__qualname__": cls.__qualname__,
                "__doc__": cls.__doc__,
            })
        except Exception:  # a final class, a layout or metaclass conflict
            derived = None
    return _rebuilt.setdefault(cls, derived)


def _builtin_slot(cls: type, name: str, kinds: tuple[type, ...], first_only: bool
                  ) -> Any:
    """The C implementation of ``name`` that ``cls`` uses, or None if it is Python code.

    With ``first_only`` false, Python-level overrides are skipped and the next
    C implementation up the MRO is used (for ``__new__``, which must run).
    """
    for klass in cls.__mro__:
        slot = klass.__dict__.get(name)
        if slot is None:
            continue
        if type(slot) in kinds:
            return slot
        if first_only:
            return None
    return None


def _instantiate(cls: type[BaseException], rebuilt: type, args: tuple[Any, ...]
                 ) -> BaseException | None:
    """An instance of ``rebuilt`` made by C code only; None if that fails."""
    new = _builtin_slot(cls, "__new__", (BuiltinFunctionType,), first_only=False)
    if new is None:
        return None
    try:
        exc = new(rebuilt, *args)
    except Exception:
        return None
    init = _builtin_slot(cls, "__init__", (WrapperDescriptorType,), first_only=True)
    if init is not None:
        # builtin __init__ fills SystemExit.code, StopIteration.value, OSError.errno...
        try:
            init(exc, *args)
        except Exception:  # e.g. UnicodeDecodeError needs five typed args
            pass
    try:
        _args_setter(exc, args)
    except Exception:
        return None
    return exc


def _bounded_args(args: tuple[Any, ...], max_args: int, max_size: int) -> tuple[Any, ...]:
    """At most ``max_args`` args, each str/bytes cut to ``max_size`` and each
    container over it replaced by a note: str() of the exception stays bounded."""
    return tuple(_bounded_value(value, max_size) for value in args[:max_args])


def _bounded_value(value: Any, max_size: int) -> Any:
    """``value`` cut to ``max_size`` (str/bytes), or a note instead of a bigger container."""
    t = type(value)
    if t is str or t is bytes:
        return value[:max_size]
    if (t is tuple or t is frozenset or t is slice) and len(brine.dump(value)) > max_size:
        return f"<{t.__name__} of more than {max_size} bytes, dropped>"
    return value


def _remote_attrs(attrs: tuple[Any, ...], max_attrs: int, max_attr_size: int
                  ) -> tuple[dict[str, Any], str | None]:
    kept: dict[str, Any] = {}
    version: str | None = None
    for entry in attrs:
        if type(entry) is not tuple or len(entry) != 2 or type(entry[0]) is not str:
            raise _malformed("every attribute must be a (str, value) pair")
        name, value = entry
        if name == "_remote_version":
            if type(value) is not str:
                raise _malformed("_remote_version must be a str")
            version = value[:_MAX_VERSION]
            continue
        if len(kept) >= max_attrs or name in kept:
            continue
        kept[name[:_MAX_NAME]] = _bounded_value(value, max_attr_size)
    return kept, version


def load(payload: object, *, instantiate_custom: bool = False,
         import_module: Callable[[str], object] | None = None,
         max_traceback: int = MAX_TRACEBACK, max_attrs: int = MAX_ATTRS,
         max_attr_size: int = MAX_ATTR_SIZE) -> BaseException:
    """Rebuild the exception described by a decoded vinegar payload; raise it yourself.

    ``instantiate_custom`` (RPyC's ``instantiate_custom_exceptions``) also
    rebuilds exception classes of modules that are already loaded here.
    ``import_module`` (pass it only if the policy has
    ``import_custom_exceptions``) is called to load such a module first; it is
    used only together with ``instantiate_custom``, the only case where the
    module could matter. Raises :class:`~rpyc_ipy.errors.CodecError` if the
    payload does not have the shape of wire spec §9.1.
    """
    if type(payload) is int and payload == STOP_ITERATION_PAYLOAD:
        return StopIteration()
    if type(payload) is str:  # legacy string exception
        return _finish(RemoteError.__new__(RemoteError, _cut(payload, max_traceback)),
                       "<legacy>", "", {}, None)
    if type(payload) is not tuple or len(payload) != 4:
        raise _malformed("payload must be 1, a str or a 4-tuple")
    names, args, attrs, text = payload
    if type(names) is not tuple or len(names) != 2 or type(names[0]) is not str or \
            type(names[1]) is not str:
        raise _malformed("the first item must be a (module, name) pair of str")
    module, name = names
    if len(module) > _MAX_NAME or len(name) > _MAX_NAME:
        raise _malformed("module or class name too long")
    if type(args) is not tuple:
        raise _malformed("args must be a tuple")
    if type(attrs) is not tuple:
        raise _malformed("attrs must be a tuple")
    if type(text) is not str:
        raise _malformed("the traceback text must be a str")
    kept, version = _remote_attrs(attrs, max_attrs, max_attr_size)
    args = _bounded_args(args, max_attrs, MAX_ARG_SIZE)
    text = _cut(text, max_traceback)
    if version is not None and version != VERSION_DENIED and \
            version.split(".")[0] != _LOCAL_MAJOR:
        text += f"\nWARNING: Remote is on RPyC {version} and local is on RPyC {REMOTE_VERSION}.\n\n"

    exc: BaseException | None = None
    cls = _choose_class(module, name, instantiate_custom, import_module)
    if cls is not None:
        rebuilt = _rebuilt_class(cls)
        if rebuilt is not None:
            exc = _instantiate(cls, rebuilt, args)
    if exc is None:
        exc = RemoteError.__new__(RemoteError, *args)
    return _finish(exc, f"{module}.{name}", text, kept, version)


def _finish(exc: BaseException, remote_type: str, text: str, attrs: dict[str, Any],
            version: str | None) -> BaseException:
    # object.__setattr__: a custom class's __setattr__ must not see these
    object.__setattr__(exc, "remote_type", remote_type)
    object.__setattr__(exc, "remote_traceback", text)
    object.__setattr__(exc, "remote_attrs", MappingProxyType(attrs))
    object.__setattr__(exc, "remote_version", version)
    return exc
