"""One cell: how it is given to a runner or a shell, its options, and how plain Python
runs it.

The :class:`~rpyc_ipy.remote.engine.Engine` takes a :class:`CellRunner` (where
foreground cells run: the worker's main thread) and a :class:`CellShell` (what runs
them: IPython in a session worker); without a shell, :func:`run_plain` runs a cell
compiled by :func:`split_cell` with IPython's semantics (the last expression is the
result, ``;`` silences it, top-level ``await`` works). :func:`options_dict` checks a
request's execute options.

Pure standard library: also shipped by source to classic peers.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

from . import bundle as _bundle
from . import values as _values

__all__ = ["MAX_TRACEBACK", "NOT_IN_BACKGROUND", "NO_SHELL", "CellRun", "CellRunner",
           "CellShell", "bound_traceback", "options_dict", "run_plain", "shell_syntax",
           "split_cell"]

MAX_TRACEBACK = 64_000
_TOP_LEVEL_AWAIT = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
#: the error of a ``!cmd`` or ``%magic`` line in a cell run as plain Python
NO_SHELL = ("this session runs cells as plain Python, without IPython: `!cmd` and %magics "
            "need IPython in the server's Python (`pip install ipython` there); plain Python "
            "runs as usual")
NOT_IN_BACKGROUND = ("`!cmd` and %magics run in foreground cells only: a background job runs "
                     "plain Python (use subprocess.run(...) for commands)")
# a line IPython would take for a shell command or a magic (``x = !ls`` too)
_SHELL_SYNTAX = re.compile(r"\s*(?:[\w.]+\s*=\s*)?[!%]")


def shell_syntax(line: str) -> bool:
    """True for a line IPython would run as ``!cmd`` or ``%magic`` (``x = !ls`` too)."""
    return _SHELL_SYNTAX.match(line) is not None



class CellRunner(Protocol):
    """Where cells run when not on a thread of their own (the worker's main thread)."""

    def submit(self, run: Callable[[], None]) -> None:
        """Run ``run`` soon, after the cells submitted before it."""

    def signal_thread(self, ident: int) -> bool:
        """Interrupt the running cell in thread ``ident`` (a SIGINT); True if sent."""


class CellRun(NamedTuple):
    """How a cell went in a :class:`CellShell`."""

    has_result: bool  # the cell ended with an expression, whose value is ``result``
    result: Any
    silenced: bool  # ... and a ";"
    error: BaseException | None  # what stopped the cell (the shell caught it)
    traceback: str  # ``error``'s traceback as plain text


class CellShell(Protocol):
    """Runs the foreground cells instead of plain Python: the session worker's IPython
    (:class:`rpyc_ipy.remote.ipyshell.IPythonCells`), on the engine's namespace."""

    #: what :meth:`Engine.hello` reports as ``shell``, e.g. ``"ipython 9.1.0"``
    name: str

    @property
    def hidden(self) -> Mapping[str, Any]:
        """The names the shell put in the namespace itself (``In``, ``exit``...), with
        their values: the namespace view leaves them out while they are unchanged."""

    def run_cell(self, code: str, *, count: int, store_history: bool, silent: bool
                 ) -> CellRun:
        """Run ``code`` as cell number ``count``; the cell's own errors are returned
        (:attr:`CellRun.error`), not raised."""


_OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "silent": (bool,),
    "store_history": (bool,),
    "want_value": (bool,),
    "include": (tuple, type(None)),
    "max_bundle_bytes": (int,),
    "max_value_bytes": (int,),
    "stream_interval": (int, float),
    "capture_fd": (bool,),
    "grace": (int, float),
    "exec_id": (str, type(None)),
    "background": (bool,),
    "accept": (tuple,),
}
_DEFAULTS: dict[str, Any] = {
    "silent": False, "store_history": True, "want_value": False, "include": None,
    "max_bundle_bytes": _bundle.DEFAULT_MAX_BYTES, "max_value_bytes": _values.DEFAULT_MAX_BYTES,
    "stream_interval": 0.05, "capture_fd": True, "grace": 0.25, "exec_id": None,
    "background": False, "accept": (),
}


def options_dict(options: Any) -> dict[str, Any]:
    """Validated execute options from ``((key, value), ...)``; unknown keys are ignored."""
    out = dict(_DEFAULTS)
    if options is None:
        return out
    if type(options) is not tuple:
        raise TypeError("options must be a tuple of (key, value) pairs")
    for pair in options:
        if type(pair) is not tuple or len(pair) != 2 or type(pair[0]) is not str:
            raise TypeError("options must be a tuple of (key, value) pairs")
        key, value = pair
        kinds = _OPTION_TYPES.get(key)
        if kinds is None:
            continue
        if type(value) not in kinds:
            raise TypeError(f"option {key!r} has the wrong type {type(value).__name__}")
        out[key] = value
    out["stream_interval"] = min(max(float(out["stream_interval"]), 0.005), 5.0)
    out["grace"] = min(max(float(out["grace"]), 0.05), 30.0)
    return out


def split_cell(code: str, filename: str) -> tuple[Any, Any, bool]:
    """Compile a cell: (body code or None, last-expression code or None, silenced)."""
    tree = ast.parse(code, filename=filename, mode="exec")
    silent = code.rstrip().endswith(";")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        expr = ast.Expression(tree.body[-1].value)
        del tree.body[-1]
        last = compile(expr, filename, "eval", flags=_TOP_LEVEL_AWAIT, dont_inherit=True)
    body = compile(tree, filename, "exec", flags=_TOP_LEVEL_AWAIT, dont_inherit=True) \
        if tree.body else None
    return body, last, silent


def bound_traceback(text: str) -> str:
    """``text`` cut to :data:`MAX_TRACEBACK` characters (its start and its end kept)."""
    if len(text) > MAX_TRACEBACK:
        return text[: MAX_TRACEBACK // 4] + "\n…\n" + text[-MAX_TRACEBACK // 2:]
    return text


def run_plain(body: Any, last: Any, silenced: bool, namespace: dict[str, Any]) -> CellRun:
    """Run a cell compiled by :func:`split_cell`; its errors propagate."""
    if body is not None:
        _run_code(body, namespace)
    if last is None:
        return CellRun(False, None, silenced, None, "")
    return CellRun(True, _run_code(last, namespace), silenced, None, "")


def _run_code(code: Any, namespace: dict[str, Any]) -> Any:
    result = eval(code, namespace)
    if code.co_flags & inspect.CO_COROUTINE:
        result = asyncio.run(_await(result))
    return result


async def _await(awaitable: Any) -> Any:
    return await awaitable
