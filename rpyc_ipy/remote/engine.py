"""The interpreter side of one session: a namespace and the cells run in it.

An :class:`Engine` runs code with IPython's cell semantics (the last expression
is the result, a trailing ``;`` silences it, top-level ``await`` works,
``display()`` is a builtin), streams output while the code runs, and stops it
on request. :class:`~rpyc_ipy.remote.service.ExecutionService` exposes one per
connection; on a classic server the client ships this package by source and
builds one there (:mod:`rpyc_ipy.remote.bootstrap`).

::

    engine = Engine()
    outcome = engine.execute("print(1)\\n6 * 7", emit=None, options=())
    # ("ok", 1, (("text/plain", "42"),), metadata), (("stream", "stdout", "1\\n"),), None, "", None)

Every request and reply is brine-able (str, bytes, numbers, tuples). The
outcome of :meth:`Engine.execute` is the tuple
``(status, execution_count, result_bundle, events, error, note, value)``:

* ``status``: ``"ok"``, ``"error"`` or ``"cancelled"``;
* ``result_bundle``: ``(data_pairs, packed_metadata)`` of the last expression, or ``None``;
* ``events``: output not yet sent through ``emit`` (all of it, for a quick cell);
* ``error``: ``(ename, evalue, traceback_text)`` or ``None``;
* ``note``: how a cancel ended, for the user;
* ``value``: with ``want_value``, ``("value", packed)`` or ``("ref", obj)``, else ``None``.

Pure standard library: also shipped by source to classic peers.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import inspect
import itertools
import linecache
import os
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from . import bundle as _bundle
from . import capture as _capture
from . import introspect as _introspect
from . import values as _values
from .cancel import ABANDON, INTERRUPT, LEVEL_NAMES, Cancellation, UserCodeGate

__all__ = ["ENGINE_VERSION", "FEATURES", "Engine", "NamespaceView"]

ENGINE_VERSION = "1"
FEATURES = ("execute", "start", "cancel", "complete", "inspect", "describe", "push", "pull",
            "mimebundle", "stream", "display")
MAX_TRACEBACK = 64_000
MAX_CELLS_IN_LINECACHE = 200
_TOP_LEVEL_AWAIT = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)

Emit = Callable[[tuple[Any, ...]], Any]

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
}
_DEFAULTS: dict[str, Any] = {
    "silent": False, "store_history": True, "want_value": False, "include": None,
    "max_bundle_bytes": _bundle.DEFAULT_MAX_BYTES, "max_value_bytes": _values.DEFAULT_MAX_BYTES,
    "stream_interval": 0.05, "capture_fd": True, "grace": 0.25, "exec_id": None,
}


# dunders a NamespaceView answers for itself (the rest of its names are the namespace's)
_VIEW_DUNDERS = frozenset({"__len__", "__iter__", "__contains__", "__getitem__", "__setitem__",
                           "__delitem__", "__repr__", "__str__", "__dir__"})


class NamespaceView:
    """The session namespace as an object: ``sess.ns.x`` is the remote ``x``.

    Attribute access reads and writes namespace entries; ``dir()`` lists them;
    ``keys()``, ``len()``, ``in`` and ``[...]`` work as on a dict.
    """

    __slots__ = ("_namespace",)

    def __init__(self, namespace: dict[str, Any]) -> None:
        self._namespace = namespace

    def _rpyc_getattr(self, name: str) -> Any:
        if name in _VIEW_DUNDERS or name == "keys":
            return getattr(self, name)
        try:
            return self._namespace[name]
        except KeyError:
            raise AttributeError(f"the remote namespace has no {name!r}") from None

    def _rpyc_setattr(self, name: str, value: Any) -> None:
        if not name.isidentifier() or name.startswith("__"):
            raise AttributeError(f"cannot bind {name!r}")
        self._namespace[name] = value

    def _rpyc_delattr(self, name: str) -> None:
        try:
            del self._namespace[name]
        except KeyError:
            raise AttributeError(name) from None

    def keys(self) -> tuple[str, ...]:
        return tuple(k for k in self._namespace if k != "__builtins__")

    def __dir__(self) -> list[str]:
        return sorted(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __contains__(self, name: object) -> bool:
        return name in self._namespace and name != "__builtins__"

    def __getitem__(self, name: str) -> Any:
        if name == "__builtins__":
            raise KeyError(name)
        return self._namespace[name]

    def __setitem__(self, name: str, value: Any) -> None:
        self._rpyc_setattr(name, value)

    def __delitem__(self, name: str) -> None:
        del self._namespace[name]

    def __repr__(self) -> str:
        return f"<remote namespace: {len(self)} names>"

    __str__ = __repr__


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


class _Execution:
    """One cell's run: its thread, sink, cancel state and outcome."""

    def __init__(self, exec_id: str, count: int, options: dict[str, Any]) -> None:
        self.exec_id = exec_id
        self.count = count
        self.options = options
        self.sink = _capture.OutputSink()
        self.cancel = Cancellation(options["grace"])
        self.gate = UserCodeGate()
        self.done = threading.Event()
        self.outcome: tuple[Any, ...] | None = None
        self.thread: threading.Thread | None = None
        self.fd_capture: _capture.FdCapture | None = None
        self.started = time.monotonic()


class Engine:
    """A namespace plus the machinery to run cells in it; see the module docstring.

    ``capture_fd`` enables file-descriptor capture (C-level output) for the
    executions that ask for it. ``allow_pickle`` lets push/pull fall back to
    pickle when the client asks for it too.
    """

    def __init__(self, namespace: dict[str, Any] | None = None, *, capture_fd: bool = True,
                 allow_pickle: bool = False, info: Mapping[str, Any] | None = None) -> None:
        self.namespace: dict[str, Any] = {} if namespace is None else namespace
        self.capture_fd = capture_fd
        self.allow_pickle = allow_pickle
        self.info = dict(info or {})
        self.execution_count = 0
        self._lock = threading.Lock()
        self._running: dict[str, _Execution] = {}
        self._cell_files: list[str] = []
        self._ids = itertools.count(1)
        self._closed = False
        self._install_builtins()

    # -- namespace ------------------------------------------------------------------

    def _install_builtins(self) -> None:
        ns = self.namespace
        ns.setdefault("__name__", "__main__")
        current = ns.get("__builtins__", builtins)
        table = dict(current if isinstance(current, dict) else vars(current))
        table["display"] = self.display
        table["clear_output"] = self.clear_output
        ns["__builtins__"] = table

    def display(self, *objs: Any, include: Any = None, exclude: Any = None,
                metadata: dict[str, Any] | None = None, display_id: Any = None,
                raw: bool = False, update: bool = False, **_: Any) -> Any:
        """Show objects in the client's cell (by value), like IPython's ``display``."""
        sink = _capture.current_sink()
        for obj in objs:
            if raw and isinstance(obj, dict):
                data = tuple((k, v) for k, v in obj.items()
                             if type(k) is str and type(v) in (str, bytes))
                md = _values.pack(metadata or {}, max_bytes=1 << 20)
            else:
                data, md = _bundle.mimebundle(obj, include=tuple(include) if include else None)
            if sink is None:  # not in a cell: behave like print
                text = dict(data).get("text/plain", "")
                print(text)
                continue
            did = None if display_id in (None, False) else str(display_id)
            sink.display(data, md, did, update)
        return None

    def clear_output(self, wait: bool = False) -> None:
        """Clear the client's cell output (``wait``: when new output arrives)."""
        sink = _capture.current_sink()
        if sink is not None:
            sink.clear(wait)

    def hello(self) -> tuple[tuple[str, Any], ...]:
        """What this engine is: version, features, interpreter, host, and ``info``."""
        out = {"engine": ENGINE_VERSION, "features": FEATURES,
               "python": sys.version.split()[0], "implementation": sys.implementation.name,
               "host": socket.gethostname(), "pid": os.getpid(), "cwd": _safe_cwd(),
               "allow_pickle": self.allow_pickle, "capture_fd": self.capture_fd}
        out.update(self.info)
        return tuple((k, v) for k, v in out.items())

    # -- running cells ------------------------------------------------------------------

    def execute(self, code: str, emit: Emit | None = None, options: Any = ()) -> tuple[Any, ...]:
        """Run ``code``; block until done, cancelled, or abandoned; return the outcome.

        ``emit(events)`` is called from this thread with batches of output
        events while the code runs (none for a cell that finishes within one
        ``stream_interval``: its output rides in the outcome).
        """
        if type(code) is not str:
            raise TypeError("code must be a str")
        execution = self._begin(code, options)
        return self._supervise(execution, emit)

    def start(self, code: str, emit: Emit, options: Any = ()) -> str:
        """Run ``code`` without blocking the request: returns the execution id at once.

        Output goes through ``emit``, and the outcome last, as ``(("done", outcome),)``.
        Used where the server serves one request at a time (classic RPyC servers).
        """
        if type(code) is not str:
            raise TypeError("code must be a str")
        execution = self._begin(code, options)

        def supervise() -> None:
            outcome = self._supervise(execution, emit)
            try:
                emit((("done", outcome),))
            except Exception:
                pass

        threading.Thread(target=supervise, name=f"rpyc_ipy-engine-{execution.exec_id}",
                         daemon=True).start()
        return execution.exec_id

    def cancel(self, exec_id: str | None = None, force: bool = False) -> str:
        """Stop one execution (or every running one): ``"cancelling"`` or ``"not running"``."""
        with self._lock:
            targets = [e for e in self._running.values() if exec_id in (None, e.exec_id)]
        for execution in targets:
            execution.cancel.request(bool(force))
            execution.sink.cancel()
        return "cancelling" if targets else "not running"

    def running(self) -> tuple[str, ...]:
        """Ids of the executions still running."""
        with self._lock:
            return tuple(self._running)

    def shutdown(self) -> None:
        """Cancel everything (the client went away)."""
        self._closed = True
        self.cancel(None, force=True)

    def _begin(self, code: str, options: Any) -> _Execution:
        if self._closed:
            raise RuntimeError("the engine is shut down")
        opts = options_dict(options)
        with self._lock:
            if not opts["silent"] and opts["store_history"]:
                self.execution_count += 1
            exec_id = opts["exec_id"] or f"x{next(self._ids)}"
            if exec_id in self._running:
                raise ValueError(f"execution {exec_id!r} is already running")
            execution = _Execution(exec_id, self.execution_count, opts)
            self._running[exec_id] = execution
        thread = threading.Thread(target=self._worker, args=(execution, code),
                                  name=f"rpyc_ipy-cell-{exec_id}", daemon=True)
        execution.thread = thread
        thread.start()
        return execution

    def _supervise(self, execution: _Execution, emit: Emit | None) -> tuple[Any, ...]:
        interval = execution.options["stream_interval"]
        sink = execution.sink
        try:
            while not execution.done.is_set():
                timeout = interval
                pending = execution.cancel.next_deadline()
                if pending is not None:
                    timeout = min(timeout, pending)
                sink.wait_for_data(timeout, execution.done)
                if execution.done.is_set():
                    break
                level = execution.cancel.step(execution.gate)
                if level >= ABANDON and execution.done.wait(0.02) is False:
                    return self._abandon(execution)
                if emit is not None:
                    events = sink.take()
                    if events:
                        try:
                            emit(events)
                        except Exception:
                            emit = None  # the client is gone or refuses: keep it in the outcome
                            execution.cancel.request(force=True)
            assert execution.outcome is not None
            return execution.outcome
        finally:
            with self._lock:
                self._running.pop(execution.exec_id, None)

    def _abandon(self, execution: _Execution) -> tuple[Any, ...]:
        sink = execution.sink
        if execution.fd_capture is not None:
            execution.fd_capture.stop()  # fds 1/2 go back to the process at once
        events = sink.take()
        sink.close()
        elapsed = time.monotonic() - (execution.cancel.requested_at or execution.started)
        note = (f"abandoned the cell's thread after {elapsed:.2f} s: it is blocked outside "
                "Python (a sleep, a lock, I/O) and stops when it returns to Python; its "
                "later output is dropped")
        error = ("KeyboardInterrupt", "the execution was cancelled", "")
        return ("cancelled", execution.count, None, events, error, note, None)

    def _worker(self, execution: _Execution, code: str) -> None:
        me = threading.get_ident()
        execution.sink.owner = me
        execution.cancel.bind(me)
        outcome: tuple[Any, ...] | None = None
        try:
            outcome = self._run_cell(execution, code)
        except BaseException:  # an asynchronous exception that landed outside the user code
            outcome = outcome or self._cancelled_outcome(execution, "")
        finally:
            while True:
                try:
                    execution.gate.leave()
                    break
                except BaseException:  # the async exception lands at most once: this ends
                    continue
            execution.cancel.unbind(me)
            events = execution.sink.take()
            execution.sink.close()
            if outcome is None:
                outcome = self._cancelled_outcome(execution, "")
            execution.outcome = (*outcome[:3], events, *outcome[4:])
            execution.done.set()
            execution.sink.wake()

    def _cancelled_outcome(self, execution: _Execution, tb: str) -> tuple[Any, ...]:
        level = execution.cancel.level
        how = "by the asynchronous KeyboardInterrupt" if level >= INTERRUPT else "cooperatively"
        elapsed = time.monotonic() - (execution.cancel.requested_at or execution.started)
        note = f"stopped {how} after {elapsed:.2f} s ({LEVEL_NAMES.get(level, '?')})"
        return ("cancelled", execution.count, None, (), ("KeyboardInterrupt", "", tb), note, None)

    def _run_cell(self, execution: _Execution, code: str) -> tuple[Any, ...]:
        opts = execution.options
        filename = self._cell_file(execution, code)
        try:
            body, last, silent = _split_cell(code, filename)
        except SyntaxError as exc:
            text = "".join(traceback.format_exception_only(type(exc), exc))
            return ("error", execution.count, None, (), ("SyntaxError", str(exc.msg), text), "",
                    None)
        silent = silent or opts["silent"]
        result: Any = None
        has_result = False
        capture_fd = opts["capture_fd"] and self.capture_fd
        execution.fd_capture = _capture.FdCapture(execution.sink, capture_fd)
        with _capture.routed(execution.sink), execution.fd_capture:
            try:
                with execution.gate:
                    if body is not None:
                        _run_code(body, self.namespace)
                    if last is not None:
                        result = _run_code(last, self.namespace)
                        has_result = True
            except KeyboardInterrupt:
                if execution.cancel.requested:
                    return self._cancelled_outcome(execution, self._format_tb())
                return self._error(execution)
            except BaseException:  # SystemExit included: a cell never stops the server
                return self._error(execution)
        bundle = None
        value = None
        if has_result and result is not None and not silent:
            self.namespace["_"] = result
            try:
                bundle = _bundle.mimebundle(result, include=opts["include"],
                                            max_bytes=opts["max_bundle_bytes"])
            except Exception as exc:
                bundle = ((("text/plain", f"<display failed: {type(exc).__name__}: {exc}>"),),
                          _values.pack({}))
        if has_result and opts["want_value"]:
            value = self._value_of(result, opts["max_value_bytes"])
        return ("ok", execution.count, bundle, (), None, "", value)

    def _value_of(self, result: Any, max_bytes: int) -> tuple[str, Any]:
        try:
            return ("value", _values.pack(result, max_bytes=max_bytes))
        except (_values.NotByValue, _values.TooLarge):
            return ("ref", result)

    def _error(self, execution: _Execution) -> tuple[Any, ...]:
        exc = sys.exc_info()[1]
        assert exc is not None
        try:
            evalue = str(exc)
        except Exception:
            evalue = "<unprintable>"
        ename = type(exc).__qualname__
        return ("error", execution.count, None, (), (ename, evalue[:4096],
                                                     self._format_tb()), "", None)

    def _format_tb(self) -> str:
        """The traceback without the engine's own frames, cut to a bounded size."""
        exc = sys.exc_info()[1]
        try:
            assert exc is not None
            te = traceback.TracebackException.from_exception(exc, limit=200)
            te.stack = traceback.StackSummary.from_list(
                [frame for frame in te.stack if frame.filename not in _OWN_FILES])
            text = "".join(te.format())
        except Exception as failure:
            text = f"<cannot format the traceback: {failure!r}>"
        if len(text) > MAX_TRACEBACK:
            text = text[: MAX_TRACEBACK // 4] + "\n…\n" + text[-MAX_TRACEBACK // 2:]
        return text

    def _cell_file(self, execution: _Execution, code: str) -> str:
        filename = f"<remote-cell-{execution.count}-{execution.exec_id}>"
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        self._cell_files.append(filename)
        while len(self._cell_files) > MAX_CELLS_IN_LINECACHE:
            linecache.cache.pop(self._cell_files.pop(0), None)
        return filename

    # -- looking around -------------------------------------------------------------------

    def complete(self, code: str, cursor_pos: int | None = None, limit: int = 1000
                 ) -> tuple[Any, ...]:
        """``(matches, cursor_start, cursor_end, types)``; runs no user code."""
        return _introspect.complete(self.namespace, str(code), cursor_pos, int(limit))

    def inspect(self, code: str, cursor_pos: int | None = None, detail_level: int = 0
                ) -> tuple[tuple[str, Any], ...]:
        """IPython ``?`` info pairs for the name at the cursor, ``()`` if not found."""
        return _introspect.inspect_code(self.namespace, str(code), cursor_pos, int(detail_level))

    def inspect_object(self, obj: Any, oname: str = "", detail_level: int = 0
                       ) -> tuple[tuple[str, Any], ...]:
        """Info pairs for an object the client holds a reference to."""
        return _introspect.info_pairs(obj, str(oname), int(detail_level))

    def describe(self, paths: tuple[str, ...], max_items: int = 50, private: bool = False,
                 root: Any = None) -> tuple[Any, ...]:
        """Bounded summaries of objects by path, for browsing (``this`` names ``root``)."""
        if type(paths) is not tuple:
            raise TypeError("paths must be a tuple of str")
        namespace: Mapping[str, Any] = self.namespace if root is None else {"this": root}
        return _introspect.describe(namespace, paths, min(int(max_items), 1000), bool(private))

    def repr_text(self, obj: Any, max_chars: int = 10_000) -> str:
        """``repr(obj)`` cut to ``max_chars`` here, so a huge repr never crosses the wire."""
        try:
            text = repr(obj)
        except Exception as exc:
            return f"<repr failed: {type(exc).__name__}: {exc}>"[:max(int(max_chars), 80)]
        if type(text) is not str:
            return f"<repr of {type(obj).__name__} is not a str>"
        limit = max(int(max_chars), 1)
        return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit:,} more)"

    def mimebundle(self, obj: Any, include: tuple[str, ...] | None = None,
                   max_bytes: int = _bundle.DEFAULT_MAX_BYTES) -> tuple[Any, ...]:
        """The display bundle of an object the client holds a reference to."""
        return _bundle.mimebundle(obj, include=include, max_bytes=int(max_bytes))

    def namespace_view(self) -> NamespaceView:
        """The namespace as an object (a netref on the client: ``sess.ns``)."""
        return NamespaceView(self.namespace)

    # -- moving values ---------------------------------------------------------------------

    def push(self, items: tuple[tuple[str, Any], ...], allow_pickle: bool = False
             ) -> tuple[str, ...]:
        """Bind ``(name, packed)`` pairs in the namespace; returns the names bound."""
        use_pickle = bool(allow_pickle) and self.allow_pickle
        bound = []
        for name, packed in _pairs(items):
            if not name.isidentifier():
                raise ValueError(f"{name!r} is not a valid name")
            self.namespace[name] = _values.unpack(packed, allow_pickle=use_pickle)
            bound.append(name)
        return tuple(bound)

    def pull(self, names: tuple[str, ...], allow_pickle: bool = False,
             max_bytes: int = _values.DEFAULT_MAX_BYTES) -> tuple[tuple[str, str, Any], ...]:
        """``(name, "ok", packed)`` or ``(name, "error", message)`` for each name."""
        use_pickle = bool(allow_pickle) and self.allow_pickle
        out: list[tuple[str, str, Any]] = []
        budget = int(max_bytes)
        for name in names:
            if type(name) is not str:
                raise TypeError("names must be str")
            try:
                value = _introspect.resolve(name, self.namespace)
                packed = _values.pack(value, max_bytes=budget, allow_pickle=use_pickle)
            except (_introspect.Refused, _values.NotByValue, _values.TooLarge) as exc:
                out.append((name, "error", str(exc)))
                continue
            out.append((name, "ok", packed))
        return tuple(out)


_OWN_FILES = frozenset(getattr(module, "__file__", None) for module in
                       (sys.modules[__name__], _capture, _bundle, _introspect, _values))


def _pairs(items: Any) -> list[tuple[str, Any]]:
    if type(items) is not tuple:
        raise TypeError("items must be a tuple of (name, value) pairs")
    out = []
    for pair in items:
        if type(pair) is not tuple or len(pair) != 2 or type(pair[0]) is not str:
            raise TypeError("items must be a tuple of (name, value) pairs")
        out.append(pair)
    return out


def _safe_cwd() -> str:
    try:
        return os.getcwd()
    except OSError:
        return "?"


def _split_cell(code: str, filename: str) -> tuple[Any, Any, bool]:
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


def _run_code(code: Any, namespace: dict[str, Any]) -> Any:
    result = eval(code, namespace)
    if code.co_flags & inspect.CO_COROUTINE:
        result = asyncio.run(_await(result))
    return result


async def _await(awaitable: Any) -> Any:
    return await awaitable
