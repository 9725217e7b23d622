"""vinegar: exceptions as data on the RPyC 6.0.2 wire (spec §9).

:func:`dump` turns a caught exception into the payload of an EXCEPTION message::

    1                                            a bare StopIteration
    ((module, name), args, attrs, traceback)     everything else

:func:`load` turns a payload back into an exception object to raise. By default
only builtin exception classes are rebuilt (as a subclass that also carries the
remote traceback); everything else becomes :class:`~rpyc_ipy.errors.RemoteError`
keeping the remote type name, args and traceback text. Decoding never imports a
module (the caller may pass ``import_module`` when its policy says so), never
sets peer-chosen attributes on a live exception (they go to a read-only
``remote_attrs`` mapping), and its only cache is keyed by local classes.
"""

from __future__ import annotations

import builtins
import sys
import traceback
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from ..errors import CodecError, RemoteError, RemoteExceptionMixin
from . import brine
from .consts import STOP_ITERATION_PAYLOAD

__all__ = ["REMOTE_VERSION", "dump", "load"]

#: what we send as ``_remote_version``: RPyC checks only the major number
REMOTE_VERSION = "6.0.2"
VERSION_DENIED = "<version denied>"
TRACEBACK_DENIED = "<traceback denied>"
MAX_ATTRS = 64
MAX_REPR = 4096
MAX_TRACEBACK = 1 << 20
_SKIPPED_ATTRS = frozenset({"args", "with_traceback", "_remote_tb"})
_WRAPPERS: dict[type, type] = {}  # local exception class -> its remote-aware subclass


def _safe_repr(value: object) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<unrepresentable {type(value).__name__}>"
    return text if len(text) <= MAX_REPR else text[:MAX_REPR] + "..."


def _as_brine(value: object) -> object:
    return value if brine.dumpable(value) else _safe_repr(value)


def dump(exc: BaseException, *, include_traceback: bool = True,
         include_version: bool = True) -> object:
    """The vinegar payload for ``exc`` (spec §9.1)."""
    cls = type(exc)
    if cls is StopIteration:
        return STOP_ITERATION_PAYLOAD
    wire_cls: type = cls
    if cls.__module__.startswith("rpyc_ipy."):
        # our own errors travel as their builtin base (SecurityError -> AttributeError),
        # so any peer, RPyC included, rebuilds something ``except``/``hasattr`` understand
        wire_cls = next(base for base in cls.__mro__ if base.__module__ == "builtins")
    args = tuple(_as_brine(arg) for arg in exc.args)
    attrs: list[tuple[str, object]] = []
    for name in dir(exc):
        if name.startswith("_") or name in _SKIPPED_ATTRS:
            continue
        if len(attrs) >= MAX_ATTRS:
            break
        try:
            value = getattr(exc, name)
        except AttributeError:
            continue
        except Exception:  # a property that fails is not worth failing the reply
            continue
        attrs.append((name, _as_brine(value)))
    attrs.append(("_remote_version", REMOTE_VERSION if include_version else VERSION_DENIED))
    if include_traceback:
        text = "".join(traceback.format_exception(cls, exc, exc.__traceback__))
    else:
        text = TRACEBACK_DENIED
    return ((wire_cls.__module__, wire_cls.__name__), args, tuple(attrs), text)


def _wrapper_for(cls: type[BaseException]) -> type:
    """A cached subclass of ``cls`` that renders the remote traceback."""
    wrapper = _WRAPPERS.get(cls)
    if wrapper is None:
        try:
            wrapper = type(cls.__name__, (RemoteExceptionMixin, cls), {
                "__module__": cls.__module__,
                "__qualname__": cls.__qualname__,
            })
        except TypeError:  # a class that cannot be subclassed: report it generically
            return RemoteError
        _WRAPPERS[cls] = wrapper
    return wrapper


def _find_class(module: str, name: str, instantiate_custom: bool,
                import_module: Callable[[str], object] | None) -> type[BaseException] | None:
    if module == "builtins":
        candidate = builtins.__dict__.get(name)
    else:
        if not instantiate_custom:
            return None
        if import_module is not None and module not in sys.modules:
            try:
                import_module(module)
            except Exception:
                return None
        loaded = sys.modules.get(module)
        candidate = None if loaded is None else loaded.__dict__.get(name)
    if isinstance(candidate, type) and issubclass(candidate, BaseException):
        return candidate
    return None


def _build(cls: type, args: tuple[Any, ...]) -> BaseException:
    try:
        # BaseException.__new__ stores args (and OSError derives errno/strerror from
        # them) without running a custom __init__ of the remote's choosing
        exc: BaseException = cls.__new__(cls, *args)
    except Exception:
        exc = cls.__new__(cls)
    exc.args = args
    return exc


def load(payload: object, *, instantiate_custom: bool = False,
         import_module: Callable[[str], object] | None = None) -> BaseException:
    """The exception to raise for a received payload.

    ``instantiate_custom``: also rebuild exception classes found in modules this
    process has already loaded. ``import_module``: called for a module that is not
    loaded yet (only pass it when the local policy has ``import_custom_exceptions``).
    Any malformed payload raises :class:`~rpyc_ipy.errors.CodecError`.
    """
    if payload == STOP_ITERATION_PAYLOAD and type(payload) is int:
        return StopIteration()
    if type(payload) is str:
        return _remote_error("<legacy>", (payload,), (), "")
    if type(payload) is not tuple or len(payload) != 4:
        raise CodecError("vinegar: payload must be a 4-tuple")
    head, args, attrs, text = payload
    if (type(head) is not tuple or len(head) != 2 or type(head[0]) is not str
            or type(head[1]) is not str):
        raise CodecError("vinegar: the exception type must be a (module, name) pair of str")
    if type(args) is not tuple or type(attrs) is not tuple or type(text) is not str:
        raise CodecError("vinegar: malformed args, attrs or traceback")
    clean_attrs: list[tuple[str, object]] = []
    for item in attrs:
        if type(item) is not tuple or len(item) != 2 or type(item[0]) is not str:
            raise CodecError("vinegar: each attribute must be a (name, value) pair")
        clean_attrs.append(item)
    module, name = head
    cls = _find_class(module, name, instantiate_custom, import_module)
    return _rebuild(cls, f"{module}.{name}", args, tuple(clean_attrs), text)


def _remote_error(remote_type: str, args: tuple[Any, ...], attrs: tuple[tuple[str, object], ...],
                  text: str) -> BaseException:
    return _rebuild(None, remote_type, args, attrs, text)


def _rebuild(cls: type[BaseException] | None, remote_type: str, args: tuple[Any, ...],
             attrs: tuple[tuple[str, object], ...], text: str) -> BaseException:
    wrapper = RemoteError if cls is None else _wrapper_for(cls)
    exc = _build(wrapper, args)
    limited = dict(attrs[:MAX_ATTRS])
    version = limited.get("_remote_version")
    if len(text) > MAX_TRACEBACK:
        text = text[:MAX_TRACEBACK] + "\n<traceback truncated>\n"
    if isinstance(version, str) and version != VERSION_DENIED and \
            version.split(".")[0] != REMOTE_VERSION.split(".")[0]:
        text += f"\nWARNING: Remote is on RPyC {version} and local is on RPyC {REMOTE_VERSION}.\n\n"
    state = exc.__dict__ if hasattr(exc, "__dict__") else None
    if state is not None:
        # our own attribute names only; the peer's names stay in remote_attrs
        state["remote_type"] = remote_type
        state["remote_traceback"] = text
        state["remote_attrs"] = MappingProxyType(limited)
        state["remote_version"] = version if isinstance(version, str) else None
    return exc
