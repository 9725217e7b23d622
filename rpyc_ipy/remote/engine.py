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

In a session worker the engine is given a :class:`CellShell` (IPython, from
:mod:`rpyc_ipy.remote.ipyshell`) and runs its foreground cells through it, so
``!cmd`` and ``%magics`` work; background jobs, and engines without a shell (a
classic server's), run cells as plain Python, where such a line gets one clear
error.

Pure standard library: also shipped by source to classic peers. Why it is
over 600 lines: it is the execution state machine (begin, run, stream, cancel,
abandon, retire, follow); the parts with a job of their own are already modules
beside it (values, capture, cancel, joblog, bundle, introspect, cells, namespace).
"""

from __future__ import annotations

import builtins
import itertools
import linecache
import os
import socket
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from . import bundle as _bundle
from . import cancel as _cancel
from . import capture as _capture
from . import cells as _cells
from . import introspect as _introspect
from . import values as _values
from .cancel import ABANDON, INTERRUPT, Cancellation, UserCodeGate
from .cells import (
    NO_SHELL,
    NOT_IN_BACKGROUND,
    CellRunner,
    CellShell,
    bound_traceback,
    options_dict,
    run_plain,
    shell_syntax,
    split_cell,
)
from .files import FileStore
from .joblog import DEFAULT_MAX_CHARS, OutputLog
from .namespace import NamespaceView

__all__ = ["ENGINE_API", "ENGINE_VERSION", "FEATURES", "Engine"]

ENGINE_VERSION = "1"
FEATURES = ("execute", "start", "cancel", "complete", "inspect", "describe", "push", "pull",
            "mimebundle", "stream", "display", "resume", "jobs", "staged_push", "files")
#: the engine methods the worker serves, by the name the client uses
ENGINE_API: dict[str, str] = {
    name: name for name in (
        "hello", "execute", "start", "resume", "jobs", "cancel", "running", "complete",
        "inspect", "inspect_object", "describe", "repr_text", "mimebundle", "push", "stage",
        "push_staged", "pull", "files")
} | {"namespace": "namespace_view"}
#: finished executions kept for ``resume``/``jobs`` (their output within the budget)
KEEP_FINISHED = 32
MAX_CELLS_IN_LINECACHE = 200
Emit = Callable[[tuple[Any, ...]], Any]


class _Execution:
    """One cell's run: its thread, sink, cancel state and outcome."""

    def __init__(self, exec_id: str, count: int, options: dict[str, Any], code: str,
                 runner: CellRunner | None, max_output: int) -> None:
        self.exec_id = exec_id
        self.count = count
        self.options = options
        self.head = code.strip().split("\n", 1)[0][:80]
        self.runner = runner  # None: a thread of its own
        self.sink = _capture.OutputSink()
        self.cancel = Cancellation(options["grace"], can_abandon=runner is None)
        self.gate = UserCodeGate(runner.signal_thread if runner is not None else None)
        self.log = OutputLog(max_output)
        self.follower: _Follower | None = None
        self.done = threading.Event()
        self.outcome: tuple[Any, ...] | None = None
        self.fd_capture: _capture.FdCapture | None = None
        self.begun = False
        self.started = time.monotonic()
        self.started_at = time.time()
        self.ended = 0.0

    @property
    def status(self) -> str:
        if self.outcome is not None:
            return str(self.outcome[0])
        return "running" if self.begun else "queued"


class _Follower:
    """Whoever receives an execution's output as it comes: an ``emit`` callback and
    the number of the last batch it was sent."""

    def __init__(self, emit: Emit | None, sent: int) -> None:
        self.emit = emit
        self.sent = sent
        self.lock = threading.Lock()


class Engine:
    """A namespace plus the machinery to run cells in it; see the module docstring.

    ``capture_fd`` enables file-descriptor capture (C-level output) for the
    executions that ask for it. ``allow_pickle`` lets push/pull fall back to
    pickle when the client asks for it too. ``shell`` (on ``namespace``) runs
    the cells that ``cell_runner`` runs, one at a time; it provides ``display``
    and ``clear_output`` itself. ``file_roots``: the folders :meth:`files` may use
    (``None``: any, as on a classic server, which grants everything anyway).
    """

    def __init__(self, namespace: dict[str, Any] | None = None, *, capture_fd: bool = True,
                 allow_pickle: bool = False, info: Mapping[str, Any] | None = None,
                 cell_runner: CellRunner | None = None,
                 max_buffered_output: int = DEFAULT_MAX_CHARS,
                 shell: CellShell | None = None, file_roots: Any = None) -> None:
        if shell is not None and cell_runner is None:
            raise ValueError("a shell runs one cell at a time: give the engine a cell_runner")
        self.namespace: dict[str, Any] = {} if namespace is None else namespace
        self.capture_fd = capture_fd
        self.allow_pickle = allow_pickle
        self.info = dict(info or {})
        self.execution_count = 0
        self.max_buffered_output = max_buffered_output
        self._cell_runner = cell_runner
        self._shell = shell
        self._lock = threading.Lock()
        self._running: dict[str, _Execution] = {}
        self._finished: dict[str, _Execution] = {}  # oldest first, at most KEEP_FINISHED
        self._cell_files: list[str] = []
        self._staged: dict[str, Any] = {}  # values of a push in several requests, not bound yet
        # a session's cell sources leave linecache when it ends: at shutdown, or when
        # the engine is collected (a classic server's engine, when its client went away)
        weakref.finalize(self, _forget_cells, self._cell_files)
        self._ids = itertools.count(1)
        self._closed = False
        self._files = FileStore(file_roots)
        if shell is None:
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
               "allow_pickle": self.allow_pickle, "capture_fd": self.capture_fd,
               "shell": self._shell.name if self._shell is not None else "python"}
        out.update(self.info)
        return tuple((k, v) for k, v in out.items())

    # -- running cells ------------------------------------------------------------------

    def execute(self, code: str, emit: Emit | None = None, options: Any = ()) -> tuple[Any, ...]:
        """Run ``code``; block until done, cancelled, or abandoned; return the outcome.

        ``emit(events)`` is called from this thread with batches of output
        events while the code runs (none for a cell that finishes within one
        ``stream_interval``: its output rides in the outcome). Each batch ends
        with ``("mark", n)``: after a dropped connection, :meth:`resume` with
        ``after=n`` sends what came later. If ``emit`` fails (the client went
        away) the cell runs on and its output is kept for :meth:`resume`.
        """
        if type(code) is not str:
            raise TypeError("code must be a str")
        execution = self._begin(code, options)
        return self._supervise(execution, _Follower(emit, 0))

    def start(self, code: str, emit: Emit | None, options: Any = ()) -> str:
        """Run ``code`` without blocking the request: returns the execution id at once.

        Output goes through ``emit``, and the outcome last, as ``(("done", outcome),)``.
        Used where the server serves one request at a time (classic RPyC servers),
        and for background jobs (option ``background``; ``emit`` may be ``None``:
        follow the job later with :meth:`resume`).
        """
        if type(code) is not str:
            raise TypeError("code must be a str")
        execution = self._begin(code, options)
        follower = _Follower(emit, 0)

        def supervise() -> None:
            outcome = self._supervise(execution, follower)
            if follower.emit is not None:
                try:
                    follower.emit((("done", outcome),))
                except Exception:
                    pass

        threading.Thread(target=supervise, name=f"rpyc_ipy-engine-{execution.exec_id}",
                         daemon=True).start()
        return execution.exec_id

    def resume(self, exec_id: str, emit: Emit | None = None, after: int = 0,
               wait: bool = True) -> tuple[Any, ...]:
        """Follow an execution again (after a dropped connection, or a background job):
        its output after batch ``after`` goes to ``emit`` and then everything it
        prints; returns its outcome once it is done. With ``wait=False`` it returns
        at once: for a running execution the status is ``"running"`` and the
        events are the output so far. The previous follower gets nothing more.
        """
        if type(exec_id) is not str or type(after) is not int:
            raise TypeError("resume(exec_id: str, emit, after: int)")
        with self._lock:
            execution = self._running.get(exec_id) or self._finished.get(exec_id)
        if execution is None:
            raise LookupError(f"no execution {exec_id!r} here (finished ones are kept: "
                              f"the last {KEEP_FINISHED})")
        if execution.done.is_set() or not wait:
            events, last = execution.log.since(after)
            if execution.done.is_set():
                assert execution.outcome is not None
                return (*execution.outcome[:3], (*events, ("mark", last)),
                        *execution.outcome[4:])
            return ("running", execution.count, None, (*events, ("mark", last)), None, "", None)
        follower = _Follower(emit, after)
        execution.follower = follower
        self._deliver(execution)
        execution.done.wait()
        return self._outcome_for(execution, follower)

    def jobs(self) -> tuple[tuple[tuple[str, Any], ...], ...]:
        """Every execution still running or kept, oldest first, as field pairs:
        id, status, count, background, started (epoch seconds), elapsed, first line."""
        with self._lock:
            executions = [*self._finished.values(), *self._running.values()]
        now = time.monotonic()
        out = []
        for e in sorted(executions, key=lambda e: e.started):
            elapsed = (e.ended or now) - e.started
            out.append((("id", e.exec_id), ("status", e.status), ("count", e.count),
                        ("background", bool(e.options["background"])),
                        ("started", e.started_at), ("elapsed", round(elapsed, 3)),
                        ("code", e.head)))
        return tuple(out)

    def cancel(self, exec_id: str | None = None, force: bool = False) -> str:
        """Stop one execution (or every running one): ``"cancelling"`` or ``"not running"``."""
        with self._lock:
            targets = [e for e in self._running.values() if exec_id in (None, e.exec_id)]
        for execution in targets:
            # a cell on the main thread gets its SIGINT at once: it also ends a sleep
            execution.cancel.request(bool(force) or execution.runner is not None)
            execution.sink.cancel()
        return "cancelling" if targets else "not running"

    def running(self) -> tuple[str, ...]:
        """Ids of the executions still running."""
        with self._lock:
            return tuple(self._running)

    def in_user_code_on(self, ident: int | None) -> bool:
        """True while thread ``ident`` runs a cell's own code (not the engine's).

        Called from a signal handler, which may interrupt a holder of the engine's
        lock: it takes no lock (copying the values is one step under the GIL)."""
        return any(e.gate.thread == ident for e in tuple(self._running.values()))

    def interrupt_before_user_code(self) -> None:
        """From the ``SIGINT`` handler when no cell is in its user code: the first
        main-thread cell still to start stops as it starts, so a stop pressed just
        after a cell was sent is not lost. Takes no lock, as :meth:`in_user_code_on`."""
        for execution in tuple(self._running.values()):
            if execution.runner is not None and not execution.done.is_set():
                execution.gate.interrupt_on_entry()
                return

    def shutdown(self) -> None:
        """Cancel everything (the client went away); the cells' sources leave linecache."""
        self._closed = True
        self.cancel(None, force=True)
        self._files.close_all()
        _forget_cells(self._cell_files)

    def _begin(self, code: str, options: Any) -> _Execution:
        if self._closed:
            raise RuntimeError("the engine is shut down")
        opts = options_dict(options)
        runner = None if opts["background"] else self._cell_runner
        with self._lock:
            if not opts["silent"] and opts["store_history"]:
                self.execution_count += 1
            exec_id = opts["exec_id"] or f"x{next(self._ids)}"
            if exec_id in self._running or exec_id in self._finished:
                raise ValueError(f"execution {exec_id!r} is already running")
            execution = _Execution(exec_id, self.execution_count, opts, code, runner,
                                   self.max_buffered_output)
            self._running[exec_id] = execution
        if runner is None:
            threading.Thread(target=self._worker, args=(execution, code),
                             name=f"rpyc_ipy-cell-{exec_id}", daemon=True).start()
        else:
            runner.submit(lambda: self._worker(execution, code))
        return execution

    def _supervise(self, execution: _Execution, follower: _Follower) -> tuple[Any, ...]:
        interval = execution.options["stream_interval"]
        sink = execution.sink
        execution.follower = follower
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
                    return self._abandon(execution, follower)
                events = sink.take()
                if events:
                    execution.log.append(events)
                    if execution.follower is not None and execution.follower.emit is not None:
                        self._deliver(execution)
            return self._outcome_for(execution, follower)
        finally:
            self._retire(execution)

    def _deliver(self, execution: _Execution) -> None:
        """Send the current follower what it has not been sent yet; a follower whose
        ``emit`` fails is dropped (the output stays in the log)."""
        follower = execution.follower
        if follower is None or follower.emit is None:
            return
        with follower.lock:
            events, last = execution.log.since(follower.sent)
            if not events:
                return
            try:
                follower.emit((*events, ("mark", last)))
            except Exception:
                if execution.follower is follower:
                    execution.follower = None
                return
            follower.sent = last

    def _outcome_for(self, execution: _Execution, follower: _Follower) -> tuple[Any, ...]:
        """The outcome, carrying the output ``follower`` was not sent."""
        assert execution.outcome is not None
        with follower.lock:
            events, last = execution.log.since(follower.sent)
            follower.sent = last
        return (*execution.outcome[:3], (*events, ("mark", last)), *execution.outcome[4:])

    def _retire(self, execution: _Execution) -> None:
        """Move a done execution to the kept ones, within the count and output budget."""
        with self._lock:
            if self._running.pop(execution.exec_id, None) is None:
                return
            self._finished[execution.exec_id] = execution
            kept = list(self._finished.values())
            chars = sum(e.log.chars for e in kept)
            for old in kept:
                if len(self._finished) <= KEEP_FINISHED and chars <= self.max_buffered_output:
                    break
                del self._finished[old.exec_id]
                chars -= old.log.chars

    def _abandon(self, execution: _Execution, follower: _Follower) -> tuple[Any, ...]:
        sink = execution.sink
        if execution.fd_capture is not None:
            execution.fd_capture.stop()  # fds 1/2 go back to the process at once
        events = sink.take()
        sink.close()
        if events:
            execution.log.append(events)
        elapsed = time.monotonic() - (execution.cancel.requested_at or execution.started)
        note = (f"abandoned after {elapsed:.2f} s: the cell is blocked outside Python (a "
                "sleep, a lock, I/O); it ends when it returns, and its later output is dropped")
        error = ("KeyboardInterrupt", "the execution was cancelled", "")
        execution.outcome = ("cancelled", execution.count, None, (), error, note, None)
        execution.ended = time.monotonic()
        return self._outcome_for(execution, follower)

    def _worker(self, execution: _Execution, code: str) -> None:
        me = threading.get_ident()
        execution.begun = True
        execution.sink.owner = me
        execution.cancel.bind(me)
        outcome: tuple[Any, ...] | None = None
        try:
            if execution.cancel.requested:  # cancelled while it waited for its turn
                outcome = self._cancelled_outcome(execution, "")
            else:
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
            if events and execution.outcome is None:  # not abandoned meanwhile
                execution.log.append(events)
            if outcome is None:
                outcome = self._cancelled_outcome(execution, "")
            if execution.outcome is None:
                execution.outcome = (*outcome[:3], (), *outcome[4:])
                execution.ended = time.monotonic()
            execution.done.set()
            execution.sink.wake()

    def _cancelled_outcome(self, execution: _Execution, tb: str) -> tuple[Any, ...]:
        if execution.cancel.level < INTERRUPT:
            how = "at its next output"  # the sink raised on the cell's write
        elif execution.runner is not None:
            how = "by an interrupt (SIGINT)"  # a cell on the worker's main thread
        else:
            how = "by an asynchronous KeyboardInterrupt"
        elapsed = time.monotonic() - (execution.cancel.requested_at or execution.started)
        note = f"stopped {how} after {elapsed:.2f} s"
        return ("cancelled", execution.count, None, (), ("KeyboardInterrupt", "", tb), note, None)

    def _run_cell(self, execution: _Execution, code: str) -> tuple[Any, ...]:
        opts = execution.options
        # background jobs run as plain Python, on threads of their own, next to the
        # shell's one cell at a time (see rpyc_ipy.remote.ipyshell)
        shell = self._shell if execution.runner is not None else None
        plain: tuple[Any, Any, bool] = (None, None, False)
        if shell is None:
            filename = self._cell_file(execution, code)
            try:
                plain = split_cell(code, filename)
            except SyntaxError as exc:
                return ("error", execution.count, None, (), self._syntax_error(exc), "", None)
        capture_fd = opts["capture_fd"] and self.capture_fd
        execution.fd_capture = _capture.FdCapture(execution.sink, capture_fd)
        with _capture.routed(execution.sink), execution.fd_capture:
            try:
                with execution.gate:
                    if shell is not None:
                        ran = shell.run_cell(code, count=execution.count,
                                             store_history=opts["store_history"]
                                             and not opts["silent"], silent=opts["silent"])
                    else:
                        ran = run_plain(*plain, self.namespace)
            except KeyboardInterrupt:
                if execution.cancel.requested:
                    return self._cancelled_outcome(execution, self._format_tb())
                return self._error(execution)
            except BaseException:  # SystemExit included: a cell never stops the server
                return self._error(execution)
        if ran.error is not None:
            if isinstance(ran.error, KeyboardInterrupt) and execution.cancel.requested:
                return self._cancelled_outcome(execution, ran.traceback)
            return self._error_outcome(execution, ran.error, ran.traceback)
        result = ran.result
        bundle = None
        value = None
        if ran.has_result and result is not None and not (ran.silenced or opts["silent"]):
            if shell is None:  # the shell's own displayhook keeps _, __, Out
                self.namespace["_"] = result
            try:
                bundle = _bundle.mimebundle(result, include=opts["include"],
                                            max_bytes=opts["max_bundle_bytes"])
            except Exception as exc:
                bundle = ((("text/plain", f"<display failed: {type(exc).__name__}: {exc}>"),),
                          _values.pack({}))
        if ran.has_result and opts["want_value"]:
            value = self._value_of(result, opts["max_value_bytes"])
        return ("ok", execution.count, bundle, (), None, "", value)

    def _syntax_error(self, exc: SyntaxError) -> tuple[str, str, str]:
        """The error of a cell that does not compile: a ``!cmd`` or ``%magic`` line
        says what it needs (not the SyntaxError it is to plain Python)."""
        if exc.text is not None and shell_syntax(exc.text):
            message = NO_SHELL if self._shell is None else NOT_IN_BACKGROUND
            return ("UsageError", message, f"UsageError: {message}\n")
        text = "".join(traceback.format_exception_only(type(exc), exc))
        return ("SyntaxError", str(exc.msg), text)

    def _value_of(self, result: Any, max_bytes: int) -> tuple[str, Any]:
        try:
            return ("value", _values.pack(result, max_bytes=max_bytes))
        except (_values.NotByValue, _values.TooLarge):
            return ("ref", result)

    def _error(self, execution: _Execution) -> tuple[Any, ...]:
        exc = sys.exc_info()[1]
        assert exc is not None
        return self._error_outcome(execution, exc, self._format_tb())

    def _error_outcome(self, execution: _Execution, exc: BaseException, tb: str
                       ) -> tuple[Any, ...]:
        try:
            # a SyntaxError's str() names the compiler's file: its message says it all
            evalue = str(exc.msg) if isinstance(exc, SyntaxError) else str(exc)
        except Exception:
            evalue = "<unprintable>"
        ename = type(exc).__qualname__
        return ("error", execution.count, None, (), (ename, evalue[:4096], tb), "", None)

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
        return bound_traceback(text)

    def _cell_file(self, execution: _Execution, code: str) -> str:
        if self._closed:  # shut down while this cell started: keep nothing
            return f"<remote-cell-{execution.count}-{execution.exec_id}>"
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

    def files(self) -> FileStore:
        """The session's file transfers, inside the server's ``file_roots``
        (:mod:`rpyc_ipy.remote.files`)."""
        return self._files

    def namespace_view(self) -> NamespaceView:
        """The namespace as an object (a netref on the client: ``sess.ns``)."""
        return NamespaceView(self.namespace,
                             self._shell.hidden if self._shell is not None else {})

    # -- moving values ---------------------------------------------------------------------

    def push(self, items: tuple[tuple[str, Any], ...], allow_pickle: bool = False
             ) -> tuple[str, ...]:
        """Bind ``(name, packed)`` pairs in the namespace, all or none; returns the names
        bound (what an unfinished staged push held is dropped)."""
        values = self._unpack_items(items, allow_pickle)
        self._staged = {}
        self.namespace.update(values)
        return tuple(values)

    def push_staged(self, items: tuple[tuple[str, Any], ...], allow_pickle: bool = False
                    ) -> tuple[str, ...]:
        """The last request of a push in several: bind what :meth:`stage` holds and
        ``items``, in one step; returns the names bound."""
        values = self._unpack_items(items, allow_pickle)
        held, self._staged = self._staged, {}
        held.update(values)
        self.namespace.update(held)
        return tuple(held)

    def stage(self, items: tuple[tuple[str, Any], ...], allow_pickle: bool = False,
              first: bool = False) -> int:
        """Hold ``(name, packed)`` pairs for the closing :meth:`push_staged`: a push sent
        in several requests binds nothing until its last one, so a stopped push leaves
        the namespace as it was. ``first`` drops what an unfinished push held."""
        if first:
            self._staged = {}
        self._staged.update(self._unpack_items(items, allow_pickle))
        return len(self._staged)

    def _unpack_items(self, items: Any, allow_pickle: Any) -> dict[str, Any]:
        use_pickle = bool(allow_pickle) and self.allow_pickle
        values: dict[str, Any] = {}
        for name, packed in _pairs(items):
            if not name.isidentifier():
                raise ValueError(f"{name!r} is not a valid name")
            values[name] = _values.unpack(packed, allow_pickle=use_pickle)
        return values

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
                       (sys.modules[__name__], _cancel, _capture, _bundle, _introspect, _values,
                        _cells))


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


def _forget_cells(files: list[str]) -> None:
    """Take the cells' sources out of linecache (``files`` is emptied)."""
    while files:  # bounded: nothing is added once the engine is closed
        linecache.cache.pop(files.pop(), None)
