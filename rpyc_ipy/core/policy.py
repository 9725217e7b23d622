"""The security policy of one connection side, and the one gate every handler calls.

A peer reaches our objects only through requests, and every request handler that
touches an object asks :func:`authorize` first. The policy is a frozen
:class:`SecurityPolicy` built from RPyC-style config keys (``DEFAULT_CONFIG``
holds RPyC 6.0.2's keys with their restrictive defaults)::

    policy = SecurityPolicy.from_config({"allow_public_attrs": True})
    name = authorize(policy, Op.GETATTR, obj, "size")   # -> "size", or raises
    value = get_attribute(policy, obj, "size")          # the same, plus the access

Rules for attribute names (RPyC semantics, wire spec §8): names with the exposed prefix
pass, as do the names in ``safe_attrs``; public names need ``allow_public_attrs``;
everything needs ``allow_all_attrs`` (classic mode). An object that defines
``_rpyc_getattr``/``_rpyc_setattr``/``_rpyc_delattr`` on its type decides for itself.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from rpyc_ipy.errors import ConfigError, PickleDisabledError, SecurityError

__all__ = [
    "DEFAULT_CONFIG",
    "SAFE_ATTRS",
    "Op",
    "SecurityPolicy",
    "authorize",
    "del_attribute",
    "get_attribute",
    "set_attribute",
    "visible_names",
]

SAFE_ATTRS = frozenset("""
    __abs__ __add__ __and__ __bool__ __cmp__ __contains__ __delitem__ __delslice__ __div__
    __divmod__ __doc__ __enter__ __eq__ __exit__ __float__ __floordiv__ __format__ __ge__
    __getitem__ __getslice__ __gt__ __hash__ __hex__ __iadd__ __iand__ __idiv__ __ifloordiv__
    __ilshift__ __imod__ __imul__ __index__ __int__ __invert__ __ior__ __ipow__ __irshift__
    __isub__ __iter__ __itruediv__ __ixor__ __le__ __len__ __length_hint__ __long__ __lshift__
    __lt__ __mod__ __mul__ __ne__ __neg__ __new__ __next__ __nonzero__ __oct__ __or__ __pos__
    __pow__ __radd__ __rand__ __rdiv__ __rdivmod__ __repr__ __rfloordiv__ __rlshift__ __rmod__
    __rmul__ __ror__ __rpow__ __rrshift__ __rshift__ __rsub__ __rtruediv__ __rxor__ __setitem__
    __setslice__ __str__ __sub__ __truediv__ __xor__ next
""".split())

#: RPyC 6.0.2's configuration keys and defaults (wire spec §14.1). Pass a dict of
#: overrides wherever a ``config`` is taken; unknown keys are refused.
DEFAULT_CONFIG: dict[str, Any] = {
    "allow_safe_attrs": True,
    "allow_exposed_attrs": True,
    "allow_public_attrs": False,
    "allow_all_attrs": False,
    "safe_attrs": set(SAFE_ATTRS),
    "exposed_prefix": "exposed_",
    "allow_getattr": True,
    "allow_setattr": False,
    "allow_delattr": False,
    "include_local_traceback": True,
    "include_local_version": True,
    "instantiate_custom_exceptions": False,
    "import_custom_exceptions": False,
    "instantiate_oldstyle_exceptions": False,
    "propagate_SystemExit_locally": False,
    "propagate_KeyboardInterrupt_locally": True,
    "log_exceptions": True,
    "allow_pickle": False,
    "connid": None,
    "credentials": None,
    "endpoints": None,
    "logger": None,
    "sync_request_timeout": 30,
    "before_closed": None,
    "close_catchall": False,
    "bind_threads": os.environ.get("RPYC_BIND_THREADS", "false").lower() == "true",
}

#: what ``SlaveService``/``ClassicService`` grant the peer (wire spec §14.2): everything.
CLASSIC_OVERRIDES: dict[str, Any] = {
    "allow_all_attrs": True,
    "allow_pickle": True,
    "allow_getattr": True,
    "allow_setattr": True,
    "allow_delattr": True,
    "allow_exposed_attrs": False,
    "import_custom_exceptions": True,
    "instantiate_custom_exceptions": True,
}


class Op:
    """What a request wants to do with an object; each handler names one.

    Plain str constants rather than an Enum: the gate runs on every request and
    an Enum member hashes through Python code.
    """

    PING = "ping"
    CLOSE = "close"
    GETROOT = "getroot"
    GETATTR = "getattr"
    SETATTR = "setattr"
    DELATTR = "delattr"
    CALL = "call"
    CALLATTR = "callattr"
    REPR = "repr"
    STR = "str"
    CMP = "cmp"
    HASH = "hash"
    DIR = "dir"
    PICKLE = "pickle"
    DEL = "del"
    INSPECT = "inspect"
    BUFFITER = "buffiter"
    OLDSLICING = "oldslicing"
    CTXEXIT = "ctxexit"
    INSTANCECHECK = "instancecheck"


# which permission key and hook an attribute operation goes through
_ATTR_OPS: dict[str, tuple[str, str]] = {
    Op.GETATTR: ("allow_getattr", "_rpyc_getattr"),
    Op.CALLATTR: ("allow_getattr", "_rpyc_getattr"),
    Op.CMP: ("allow_getattr", "_rpyc_getattr"),
    Op.CTXEXIT: ("allow_getattr", "_rpyc_getattr"),
    Op.OLDSLICING: ("allow_getattr", "_rpyc_getattr"),
    Op.SETATTR: ("allow_setattr", "_rpyc_setattr"),
    Op.DELATTR: ("allow_delattr", "_rpyc_delattr"),
}
# operations that run a fixed special method: the method must pass the name rules
_SPECIAL_OPS: dict[str, str] = {
    Op.REPR: "__repr__",
    Op.STR: "__str__",
    Op.HASH: "__hash__",
    Op.BUFFITER: "__iter__",
}
# operations that need no name: holding the reference is the capability
_REFERENCE_OPS = frozenset({
    Op.PING, Op.CLOSE, Op.GETROOT, Op.CALL, Op.DIR, Op.DEL, Op.INSPECT, Op.INSTANCECHECK,
})


@dataclass(frozen=True, slots=True)
class SecurityPolicy:
    """What the peer may do with this side's objects; immutable.

    Build it with :meth:`from_config` (RPyC-style keys) and derive variants with
    :meth:`with_overrides`. Hand it to :func:`authorize`.
    """

    allow_safe_attrs: bool = True
    allow_exposed_attrs: bool = True
    allow_public_attrs: bool = False
    allow_all_attrs: bool = False
    safe_attrs: frozenset[str] = SAFE_ATTRS
    exposed_prefix: str = "exposed_"
    allow_getattr: bool = True
    allow_setattr: bool = False
    allow_delattr: bool = False
    allow_pickle: bool = False
    include_local_traceback: bool = True
    include_local_version: bool = True
    instantiate_custom_exceptions: bool = False
    import_custom_exceptions: bool = False
    propagate_SystemExit_locally: bool = False
    propagate_KeyboardInterrupt_locally: bool = True

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name == "safe_attrs":
                if not isinstance(value, frozenset) or not all(isinstance(n, str) for n in value):
                    raise ConfigError("safe_attrs must be a set of str")
            elif field.name == "exposed_prefix":
                if not isinstance(value, str):
                    raise ConfigError("exposed_prefix must be a str")
            elif type(value) is not bool:
                raise ConfigError(f"{field.name} must be a bool, not {value!r}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None = None) -> SecurityPolicy:
        """Build the policy from an RPyC-style config dict.

        Missing keys take their defaults; keys that are not policy keys (timeouts,
        ``credentials``, ...) are ignored here and validated by the connection.
        """
        config = dict(config or {})
        own = {f.name for f in fields(cls)}
        values = {k: v for k, v in config.items() if k in own}
        if "safe_attrs" in values:
            safe = frozenset(values["safe_attrs"])
            # every connection with the default names shares one set (a copy is 4 KiB)
            values["safe_attrs"] = SAFE_ATTRS if safe == SAFE_ATTRS else safe
        return _shared(cls(**values))

    def with_overrides(self, **changes: Any) -> SecurityPolicy:
        """A copy with some keys changed; keys that are not policy keys are ignored."""
        own = {f.name for f in fields(self)}
        values = {k: v for k, v in changes.items() if k in own}
        if "safe_attrs" in values:
            values["safe_attrs"] = frozenset(values["safe_attrs"])
        return replace(self, **values)

    def name_passes(self, name: str) -> bool:
        """True if ``name`` itself is one the peer may use (before prefix mapping)."""
        if self.allow_all_attrs:
            return True
        if self.allow_exposed_attrs and name.startswith(self.exposed_prefix):
            return True
        if self.allow_safe_attrs and name in self.safe_attrs:
            return True
        return self.allow_public_attrs and not name.startswith("_")

    def describe(self) -> dict[str, Any]:
        """The policy as a plain dict, for display."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["safe_attrs"] = len(self.safe_attrs)
        return out


def _normalise_name(name: object) -> str:
    if type(name) is str:
        return name
    if type(name) is bytes:
        try:
            return name.decode("utf-8")
        except UnicodeDecodeError:
            pass
    raise SecurityError(f"attribute names must be str, not {type(name).__name__}")


def _has_attribute(obj: object, name: str) -> bool:
    try:
        getattr(obj, name)
    except Exception:
        return False
    return True


def authorize(policy: SecurityPolicy, op: str, obj: object = None, name: object = None
              ) -> str | None:
    """The one gate: may the peer perform ``op`` on ``obj`` (with attribute ``name``)?

    Returns the effective attribute name to use (``foo`` may resolve to
    ``exposed_foo``), or ``None`` when no name is involved or when the object's
    own ``_rpyc_*`` hook decides (call it with the original name). Raises
    :class:`~rpyc_ipy.errors.SecurityError` when the operation is refused.
    """
    if op in _REFERENCE_OPS:
        return None
    if op == Op.PICKLE:
        if not policy.allow_pickle:
            raise PickleDisabledError("pickling is disabled")
        return None
    special = _SPECIAL_OPS.get(op)
    if special is not None:
        if not policy.name_passes(special):
            raise SecurityError(f"cannot access {special!r}")
        return special
    permission, hook = _ATTR_OPS[op]
    text = _normalise_name(name)
    if hasattr(type(obj), hook):
        return None
    if not getattr(policy, permission):
        raise SecurityError(f"cannot access {text!r}")
    plain = policy.name_passes(text)
    prefix = policy.exposed_prefix if policy.allow_exposed_attrs else ""
    exposed = prefix + text if prefix else ""
    has_exposed = bool(prefix) and _has_attribute(obj, exposed)
    if plain and (not has_exposed or _has_attribute(obj, text)):
        return text
    if has_exposed:
        return exposed
    if plain:
        return text
    raise SecurityError(f"cannot access {text!r}")


def get_attribute(policy: SecurityPolicy, obj: object, name: object, op: str = Op.GETATTR) -> Any:
    """``getattr`` through :func:`authorize` (or the object's ``_rpyc_getattr`` hook)."""
    effective = authorize(policy, op, obj, name)
    if effective is None:
        return type(obj)._rpyc_getattr(obj, _normalise_name(name))  # type: ignore[attr-defined]
    return getattr(obj, effective)


def set_attribute(policy: SecurityPolicy, obj: object, name: object, value: object) -> None:
    """``setattr`` through :func:`authorize` (or the object's ``_rpyc_setattr`` hook)."""
    effective = authorize(policy, Op.SETATTR, obj, name)
    if effective is None:
        type(obj)._rpyc_setattr(obj, _normalise_name(name), value)  # type: ignore[attr-defined]
    else:
        setattr(obj, effective, value)


def del_attribute(policy: SecurityPolicy, obj: object, name: object) -> None:
    """``delattr`` through :func:`authorize` (or the object's ``_rpyc_delattr`` hook)."""
    effective = authorize(policy, Op.DELATTR, obj, name)
    if effective is None:
        type(obj)._rpyc_delattr(obj, _normalise_name(name))  # type: ignore[attr-defined]
    else:
        delattr(obj, effective)


def visible_names(policy: SecurityPolicy, obj: object, names: list[str]) -> list[str]:
    """The subset of ``names`` the peer could read on ``obj``, plus unprefixed aliases.

    DIR and INSPECT use it so that listing never reveals what access would refuse.
    """
    if policy.allow_all_attrs:
        return list(names)
    prefix = policy.exposed_prefix if policy.allow_exposed_attrs else ""
    out: dict[str, None] = {}
    for name in names:
        if policy.name_passes(name):
            out[name] = None
            if prefix and name.startswith(prefix) and len(name) > len(prefix):
                out[name[len(prefix):]] = None
    return list(out)


@functools.lru_cache(maxsize=64)
def _shared(policy: SecurityPolicy) -> SecurityPolicy:
    """One instance for equal policies: a server's connections share theirs (it is
    frozen), which saves each idle connection its own copy."""
    return policy
