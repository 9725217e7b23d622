"""Move a plain function's code to the peer (classic mode's ``teleport_function``).

The function travels as brine data in RPyC 6.0.2's layout: ``(name, module,
defaults, kwdefaults, code_tuple)`` where ``code_tuple`` lists the code object's
fields (nested code objects are marked with :data:`CODE_MARKER`). Only functions
without closures and with brine-dumpable defaults and constants can travel, and
both sides should run the same Python version.

Rebuilding a function from peer data runs the peer's code: only classic mode
(which already grants ``exec``) calls :func:`import_function`.
"""

from __future__ import annotations

import sys
from types import CodeType, FunctionType
from typing import Any

from rpyc_ipy.errors import UsageError
from rpyc_ipy.protocol import brine

__all__ = ["CODE_MARKER", "export_function", "import_function", "teleport_function"]

#: the marker RPyC uses for a nested code object inside the constants
CODE_MARKER = "MAg1c J0hNNzo0hn ZqhuBP17LQk8"

_FIELDS_311 = ("co_argcount", "co_posonlyargcount", "co_kwonlyargcount", "co_nlocals",
               "co_stacksize", "co_flags", "co_code", "co_consts", "co_names", "co_varnames",
               "co_filename", "co_name", "co_qualname", "co_firstlineno", "co_linetable",
               "co_exceptiontable", "co_freevars", "co_cellvars")


def _export_code(code: CodeType) -> tuple[Any, ...]:
    constants: list[Any] = []
    for const in code.co_consts:
        if isinstance(const, CodeType):
            constants.append((CODE_MARKER, _export_code(const)))
        elif brine.dumpable(const):
            constants.append(const)
        else:
            raise TypeError(f"cannot export a function with the constant {const!r}")
    if sys.version_info < (3, 11):
        raise TypeError("teleporting functions needs Python 3.11 or newer on both sides")
    values = [getattr(code, field) for field in _FIELDS_311]
    values[_FIELDS_311.index("co_consts")] = tuple(constants)
    return tuple(values)


def export_function(func: FunctionType) -> tuple[Any, ...]:
    """The brine-dumpable description of ``func``; ``TypeError`` if it cannot travel."""
    if func.__closure__:
        raise TypeError("cannot export a function that closes over variables")
    kwdefaults = tuple(func.__kwdefaults__.items()) if func.__kwdefaults__ else None
    if not brine.dumpable(func.__defaults__) or not brine.dumpable(kwdefaults):
        raise TypeError("cannot export a function whose defaults are not brine values")
    return (func.__name__, func.__module__, func.__defaults__, kwdefaults,
            _export_code(func.__code__))


def _import_code(fields: tuple[Any, ...]) -> CodeType:
    if len(fields) != len(_FIELDS_311):
        raise TypeError("code data from another Python version")
    values = list(fields)
    index = _FIELDS_311.index("co_consts")
    values[index] = tuple(
        _import_code(c[1]) if type(c) is tuple and len(c) == 2 and c[0] == CODE_MARKER else c
        for c in values[index]
    )
    if sys.version_info < (3, 11):
        raise TypeError("teleporting functions needs Python 3.11 or newer on both sides")
    (argcount, posonly, kwonly, nlocals, stacksize, flags, code, consts, names, varnames,
     filename, name, qualname, firstlineno, linetable, exceptiontable, freevars,
     cellvars) = values
    return CodeType(argcount, posonly, kwonly, nlocals, stacksize, flags, code, consts, names,
                    varnames, filename, name, qualname, firstlineno, linetable,
                    exceptiontable, freevars, cellvars)


def import_function(exported: tuple[Any, ...], globals: dict[str, Any] | None = None,
                    def_: bool = True) -> FunctionType:
    """Rebuild a function from :func:`export_function` data (runs the peer's code!)."""
    name, _module, defaults, kwdefaults, code_fields = exported
    namespace = {} if globals is None else globals
    namespace.setdefault("__builtins__", __builtins__)
    func = FunctionType(_import_code(code_fields), namespace, name, defaults)
    if kwdefaults:
        func.__kwdefaults__ = dict(kwdefaults)
    if def_:
        namespace[name] = func
    return func


def teleport_function(conn: Any, func: Any, globals: Any = None, def_: bool = True
                      ) -> Any:
    """Send ``func``'s code to the classic peer and define it there; returns its netref."""
    if globals is None:
        globals = conn.namespace
    exported = export_function(func)
    for module in ("rpyc_ipy.core.teleport", "rpyc.utils.teleportation"):
        try:
            importer = conn.modules[module].import_function
        except ImportError:
            continue
        return importer(exported, globals, def_)
    raise UsageError("the peer has neither rpyc_ipy nor rpyc to rebuild the function")
