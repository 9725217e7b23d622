"""Cells running on sessions: start them, receive their events, wait, cancel.

A :class:`RemoteExecution` is one cell on one session. Its events (output,
display data, and finally ``done``) arrive on connection threads and are put
in a queue; the caller's thread takes them from there with :func:`wait_all`,
which is where the stop button (``KeyboardInterrupt``) and timeouts are
handled::

    events = EventBacklog(limit=32 << 20)
    run = session.start("print(1)", events)
    outcomes = wait_all([run], events, handler, timeout=None, grace=2.0)

The caller's thread never reads a socket or runs a server callback, so a
``KeyboardInterrupt`` can land anywhere in it without hurting a connection.
The queue is bounded (see :mod:`.backlog`); when ``wait_all`` returns or raises, it
is closed: a cell still running there is abandoned, its events are refused, and its
output callback fails, which tells the server to stop sending it.
``RemoteSession.execute`` wraps all of this for one session.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rpyc_ipy.core.helpers import async_
from rpyc_ipy.errors import (
    ConnectionClosed,
    ConnectionLost,
    RemoteExceptionMixin,
    RPyCError,
    UsageError,
)
from rpyc_ipy.ipython.backlog import EventBacklog
from rpyc_ipy.ipython.events import EVENT_KINDS, parse_bundle
from rpyc_ipy.ipython.text import RED, RESET, sanitize_text
from rpyc_ipy.remote.values import DATA_EXTRA, DataCodecError, NotByValue, unpack

if TYPE_CHECKING:
    from rpyc_ipy.ipython.session import RemoteSession

__all__ = [
    "CellInterrupted",
    "ExecutionOutcome",
    "RemoteExecution",
    "RemoteExecutionError",
    "RemoteTimeoutError",
    "wait_all",
]

NO_VALUE = object()


@dataclass
class ExecutionOutcome:
    """How a cell ended: ``status`` is ``"ok"``, ``"error"`` or ``"cancelled"``."""

    session: str
    status: str
    execution_count: int = 0
    data: dict[str, Any] = field(default_factory=dict)  # the last expression's bundle
    metadata: dict[str, Any] = field(default_factory=dict)
    error: tuple[str, str, str] | None = None  # (ename, evalue, traceback text)
    note: str = ""
    value: Any = NO_VALUE  # with want_value: the result by value, or a netref
    elapsed: float = 0.0
    #: one line shown instead of a traceback: the session's worker died
    death: str = ""

    @property
    def has_value(self) -> bool:
        return self.value is not NO_VALUE

    def load_value(self) -> Any:
        """The value, read now if it came as a :class:`DeferredValue` (large arrays
        stream in chunks: call this on a thread that may wait, not a connection's)."""
        if isinstance(self.value, DeferredValue):
            self.value = self.value.load()
        return self.value if self.value is not NO_VALUE else None


class DeferredValue:
    """A by-value result not yet unpacked: its arrays may stream in chunks, which takes
    requests that a connection's own thread must not wait for."""

    def __init__(self, load: Callable[[], Any]) -> None:
        self._load = load

    def load(self) -> Any:
        return self._load()


def one_line(exc: BaseException, name: str = "") -> list[str]:
    """What IPython shows for ``exc`` instead of a traceback: its class and message."""
    return [f"{RED}{name or type(exc).__name__}: {sanitize_text(str(exc))}{RESET}"]


class RemoteExecutionError(RPyCError):
    """A cell failed on one or more sessions; IPython shows the remote tracebacks.

    ``prompt`` is the notebook's execution count of the cell (``In [4]``), which the
    label shows; without it the label names the server's own cell count."""

    def __init__(self, outcomes: list[ExecutionOutcome], prompt: int | None = None) -> None:
        self.outcomes = outcomes
        self.prompt = prompt
        names = ", ".join(o.session for o in outcomes)
        first = outcomes[0].error or ("Error", "", "")
        super().__init__(f"{first[0]}: {first[1]} (on {names})" if len(outcomes) == 1
                         else f"the cell failed on {len(outcomes)} sessions: {names}")

    @property
    def ename(self) -> str:
        return (self.outcomes[0].error or ("Error", "", ""))[0]

    def _render_traceback_(self) -> list[str]:
        lines: list[str] = []
        for outcome in self.outcomes:
            if outcome.death:
                lines.append(f"{RED}{sanitize_text(outcome.death)}{RESET}")
                continue
            ename, evalue, tb = outcome.error or ("Error", "", "")
            where = f"in cell [{self.prompt}]" if self.prompt is not None else \
                f"(remote cell {outcome.execution_count})"
            lines.append(f"{RED}Remote error on session {outcome.session!r} {where}{RESET}")
            text = sanitize_text(tb).rstrip() or sanitize_text(f"{ename}: {evalue}")
            lines.extend(text.splitlines())
        return lines


class RemoteTimeoutError(RPyCError, TimeoutError):
    """A cell ran longer than its timeout and was cancelled; IPython shows one line."""

    def _render_traceback_(self) -> list[str]:
        return one_line(self)


class CellInterrupted(KeyboardInterrupt):
    """The stop button (or Ctrl-C) ended a remote cell, or the wait for it.

    A ``KeyboardInterrupt``, so "run all" stops after it; IPython shows its one-line
    message (what happened, what to do) rather than a traceback of the wait."""

    def _render_traceback_(self) -> list[str]:
        return one_line(self, "KeyboardInterrupt")


def _new_id() -> str:
    return uuid.uuid4().hex[:16]


class RemoteExecution:
    """One cell on one session; see the module docstring.

    Made by :meth:`RemoteSession.start`. Events go to ``events`` as
    ``(execution, event)`` pairs, the last one being ``("done", outcome)``.
    """

    def __init__(self, session: RemoteSession, events: EventBacklog,
                 options: dict[str, Any], on_finish: Callable[[], Any] | None = None,
                 exec_id: str | None = None) -> None:
        self.session = session
        self._on_finish = on_finish
        self.events = events
        self.options = options
        self.exec_id = exec_id or _new_id()
        self.started = time.monotonic()
        self.outcome: ExecutionOutcome | None = None
        self._finished = threading.Event()
        self._finish_lock = threading.Lock()
        self._cancels = 0
        #: the number of the last output batch received: a re-attach resumes after it
        self.last_mark = 0
        #: set when the session's worker is being restarted (no re-attach then)
        self.restarting = False
        #: set while the execution re-attaches after a dropped connection
        self.reattaching = False

    def __repr__(self) -> str:
        state = self.outcome.status if self.outcome else "running"
        return f"<RemoteExecution {self.exec_id} on {self.session.name!r}: {state}>"

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    # -- called by the session -----------------------------------------------------------

    def wire_options(self) -> tuple[tuple[str, Any], ...]:
        return (("exec_id", self.exec_id), *self.options.items())

    def launch(self, code: str) -> None:
        backend = self.session.backend
        if self.session.blocking_execute:
            result = async_(backend.execute)(code, self._on_events, self.wire_options())
            result.add_callback(self._on_reply)
        else:  # the server serves one request at a time: start, the outcome comes as an event
            result = async_(backend.start)(code, self._on_events, self.wire_options())
            result.add_callback(self._on_start_reply)

    def resume(self) -> None:
        """Follow the execution on the server from the last batch received."""
        result = async_(self.session.backend.resume)(self.exec_id, self._on_events,
                                                     self.last_mark)
        result.add_callback(self._on_reply)

    # -- called on connection threads ----------------------------------------------------

    def _on_events(self, batch: Any) -> None:
        """The server's callback: a tuple of events (validated here, by exact types).
        Once the cell is abandoned it fails, so the server stops sending."""
        if self.events.refuses():
            raise BrokenPipeError("the notebook stopped following this cell: send no more "
                                  "of its output")
        if type(batch) is not tuple:
            return
        for event in batch:
            if type(event) is tuple and len(event) == 2 and event[0] == "mark" and \
                    type(event[1]) is int:
                self.last_mark = max(self.last_mark, event[1])
                continue
            if type(event) is not tuple or not event or event[0] not in EVENT_KINDS:
                continue
            if event[0] == "done":
                if len(event) == 2:
                    self._finish_raw(event[1])
            else:
                self.events.put((self, event))

    def _on_reply(self, result: Any) -> None:
        if not result.error:
            self._finish_raw(result.value)
        elif self.restarting:
            self.finish(ExecutionOutcome(
                self.session.name, "cancelled",
                error=("KeyboardInterrupt", "the cell did not stop: its worker was restarted",
                       ""),
                note="the cell did not stop after the interrupt: the session's worker was "
                     "restarted and its namespace is gone"))
        elif isinstance(result.exception, ConnectionClosed) and self.session.has_worker and \
                not self.done:
            # the network dropped, not the cell: it runs on in its worker
            threading.Thread(target=self._reattach, name=f"rpyc_ipy-reattach-{self.exec_id}",
                             daemon=True).start()
        elif self.session.has_worker and isinstance(result.exception, RemoteExceptionMixin):
            # the server refused the request: if it is because the worker died, say so
            threading.Thread(target=self._failed_or_died, args=(result.exception,),
                             name=f"rpyc_ipy-status-{self.exec_id}", daemon=True).start()
        else:
            self.finish_failure(result.exception)

    def _reattach(self) -> None:
        name = self.session.name
        self.reattaching = True
        try:
            facts = self._reconnect()
        except Exception as exc:
            self.reattaching = False
            self.finish_failure(ConnectionLost(
                f"lost the connection to session {name!r} and could not re-attach "
                f"({type(exc).__name__}: {exc}); the cell may still run there: "
                f"%rpyc_connect {name}=HOST:PORT re-attaches to it"))
            return
        self.reattaching = False
        if facts.get("died"):  # the worker died, not the network: say only that
            self._finish_death(facts["died"])
            return
        if not facts.get("reattached"):  # the server restarted: the cell is gone with it
            self.finish_failure(ConnectionLost(
                f"the server of session {name!r} restarted while the cell ran: the cell and "
                "its namespace are gone; the session now starts afresh"))
            return
        self._say(f"the connection to session {name!r} dropped; re-attached (worker "
                  f"{facts.get('pid')}): the cell's output resumes")
        try:
            self.resume()
        except Exception as exc:
            self.finish_failure(exc)

    def _reconnect(self) -> dict[str, Any]:
        """Re-attach at once; if that fails, say so and keep trying for a while."""
        try:
            return self.session.reconnect()
        except (OSError, RPyCError):
            self._say(f"the connection to session {self.session.name!r} was lost; "
                      "re-attaching…")
            return self.session.reattach(give_up=self._finished)

    def _failed_or_died(self, exc: BaseException) -> None:
        try:
            died = self.session.status().get("died")
        except Exception:
            died = None
        if died:
            self._finish_death(died)
        else:
            self.finish_failure(exc)

    def _finish_death(self, died: Any) -> None:
        name = self.session.name
        report = (f"the worker of session {name!r} {died}; its namespace is gone: "
                  f"%rpyc_restart {name} starts a fresh one")
        self.finish(ExecutionOutcome(name, "error", error=("WorkerError", report, ""),
                                      death=report))

    def _say(self, text: str) -> None:
        self.events.put((self, ("stream", "stderr", f"[rpyc_ipy] {text}\n")))

    def _on_start_reply(self, result: Any) -> None:
        if result.error:
            self.finish_failure(result.exception)

    def finish_failure(self, exc: BaseException) -> None:
        summary = f"{type(exc).__name__}: {exc}"
        outcome = ExecutionOutcome(self.session.name, "error",
                                   error=(type(exc).__name__, str(exc)[:4096], summary))
        self.finish(outcome)

    def _finish_raw(self, raw: Any) -> None:
        try:
            outcome, trailing = self._parse(raw)
        except Exception as exc:  # a malformed reply is the server's fault, shown as such
            outcome, trailing = ExecutionOutcome(
                self.session.name, "error",
                error=("ProtocolError", f"malformed outcome: {exc}", "")), ()
        for event in trailing:
            if type(event) is tuple and event and event[0] in EVENT_KINDS and \
                    event[0] != "done":
                self.events.put((self, event))
        self.finish(outcome)

    def finish(self, outcome: ExecutionOutcome) -> None:
        with self._finish_lock:
            if self._finished.is_set():
                return
            self._finished.set()
        outcome.elapsed = time.monotonic() - self.started
        self.outcome = outcome
        if self._on_finish is not None:
            self._on_finish()
        self.events.put((self, ("done", outcome)))

    def _parse(self, raw: Any) -> tuple[ExecutionOutcome, tuple[Any, ...]]:
        if type(raw) is not tuple or len(raw) != 7:
            raise ValueError("an outcome is a 7-tuple")
        status, count, bundle, events, error, note, value = raw
        if status not in ("ok", "error", "cancelled") or type(status) is not str:
            raise ValueError(f"unknown status {status!r}")
        outcome = ExecutionOutcome(self.session.name, status,
                                   execution_count=count if type(count) is int else 0,
                                   note=note if type(note) is str else "")
        if bundle is not None:
            outcome.data, outcome.metadata = parse_bundle(bundle)
        if error is not None:
            if type(error) is not tuple or len(error) != 3 or \
                    not all(type(part) is str for part in error):
                raise ValueError("malformed error")
            outcome.error = error
        if value is not None:
            outcome.value = self._parse_value(value)
        return outcome, events if type(events) is tuple else ()

    def _parse_value(self, value: Any) -> Any:
        if type(value) is not tuple or len(value) != 2:
            return NO_VALUE
        kind, payload = value
        if kind == "value":  # -o has no --pickle: a value that is not plain data is a netref
            if type(payload) is tuple:  # a container, array or frame: unpacked when stored
                return DeferredValue(lambda: self._unpack_value(payload))
            try:
                return unpack(payload, allow_pickle=False)
            except (NotByValue, ValueError, TypeError):
                return NO_VALUE
        if kind == "ref":
            return payload  # a netref (or a plain value the server chose to send)
        return NO_VALUE

    def _unpack_value(self, payload: Any) -> Any:
        session = self.session
        try:
            return unpack(payload, allow_pickle=session.unpickles(False),
                          max_bytes=int(self.options.get("max_value_bytes", 64 << 20)),
                          read=session.stream_reader())
        except ImportError as exc:
            raise UsageError(f"the result needs {exc.name} here: {DATA_EXTRA}") from None
        except DataCodecError as exc:  # refused before anything was allocated
            raise UsageError(f"cannot take the result of session {session.name!r} by "
                             f"value: {exc}") from None
        except (NotByValue, ValueError, TypeError):
            return None

    # -- control -----------------------------------------------------------------------------

    def cancel(self, force: bool = False) -> None:
        """Ask the server to stop this cell (fire and forget; escalates on the server)."""
        if self.done:
            return
        self._cancels += 1
        try:
            result = async_(self.session.backend.cancel)(self.exec_id, bool(force))
            result.add_callback(lambda _: None)
        except Exception:
            pass  # the connection is gone: nothing left to stop


Handler = Callable[[RemoteExecution, tuple[Any, ...]], None]


def _drain(pending: set[RemoteExecution], events: EventBacklog, handler: Handler,
           deadline: float | None) -> None:
    """Dispatch events until every execution in ``pending`` is done or the deadline passes."""
    while pending:
        timeout = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
        if timeout <= 0:
            return
        try:
            execution, event = events.get(timeout=timeout)
        except queue.Empty:
            for run in list(pending):
                # a cell started without a pending request (classic servers) ends with its
                # connection, unless it is re-attaching to its worker
                if run.session.closed and not run.done and not run.reattaching:
                    run.finish_failure(ConnectionLost(
                        f"the connection of session {run.session.name!r} was lost"))
            continue
        if event[0] == "done":
            pending.discard(execution)
        handler(execution, event)


def wait_all(executions: Iterable[RemoteExecution], events: EventBacklog, handler: Handler, *,
             timeout: float | None = None, grace: float = 2.0,
             notify: Callable[[str], None] | None = None,
             stop_cancels: bool = True) -> list[ExecutionOutcome]:
    """Dispatch events to ``handler`` until all executions are done; return their outcomes.

    On ``KeyboardInterrupt``: cancel every running execution, keep showing
    output for up to ``grace`` seconds while the servers confirm (a second
    interrupt forces the cancel and stops waiting sooner), then re-raise
    ``KeyboardInterrupt`` so "run all" stops; without ``stop_cancels`` (following
    a background job) it only stops waiting. After ``timeout`` seconds: the same
    cancel, then :class:`RemoteTimeoutError`. Either way ``events`` is closed at the
    end: what is still running is abandoned (see the module docstring).
    """
    runs = list(executions)
    pending = set(runs)
    say = notify or (lambda text: None)
    deadline = None if not timeout else time.monotonic() + timeout
    try:
        try:
            _drain(pending, events, handler, deadline)
        except KeyboardInterrupt:
            if not stop_cancels:
                raise CellInterrupted("stopped waiting") from None
            _stop(pending, events, handler, grace, say, "interrupted")
            raise CellInterrupted(_interrupted(runs, pending)) from None
        if pending:
            _stop(pending, events, handler, grace, say, f"timed out after {timeout:g} s")
            names = ", ".join(sorted(run.session.name for run in runs if run.outcome is None
                                     or run.outcome.status == "cancelled"))
            raise RemoteTimeoutError(f"the cell ran longer than {timeout:g} s on {names}; "
                                     "it was cancelled")
        return [run.outcome for run in runs if run.outcome is not None]
    finally:
        events.close()


def _interrupted(runs: list[RemoteExecution], pending: set[RemoteExecution]) -> str:
    """The one line that ends an interrupted cell: where it stopped, or may still run."""
    names = ", ".join(sorted({run.session.name for run in runs}))
    restarted = sorted({run.session.name for run in runs if run.restarting})
    if not pending and restarted:
        return (f"the cell on {names} was stopped; {', '.join(restarted)} got a fresh worker "
                "(its namespace is gone)")
    if not pending:
        return f"the cell on {names} was stopped; the session is ready for the next cell"
    still = sorted({run.session.name for run in pending})
    workers = sorted({run.session.name for run in pending if run.session.has_worker})
    hint = (f": %rpyc_restart {workers[0]} stops it (its namespace is lost)" if workers
            else "")
    return (f"the cell on {names} was interrupted but may still be running on "
            f"{', '.join(still)}{hint}")


def _stop(pending: set[RemoteExecution], events: EventBacklog, handler: Handler, grace: float,
          say: Callable[[str], None], why: str) -> None:
    """Interrupt; a cell that does not stop within ``grace`` (or at a second stop) has its
    worker restarted where sessions have workers, each step told through ``say``."""
    names = ", ".join(sorted(run.session.name for run in pending))
    say(f"{why}: interrupting the cell on {names}…")
    for run in pending:
        run.cancel()
    forced = False
    try:
        _drain(pending, events, handler, time.monotonic() + grace)
    except KeyboardInterrupt:  # pressed again: escalate now
        forced = True
    stubborn = [run for run in pending if run.session.has_worker]
    for run in stubborn:
        name = run.session.name
        when = "at the second stop" if forced else f"within {grace:g} s"
        say(f"the cell on {name} did not stop {when}: restarting its worker (the session's "
            "namespace is lost)…")
        run.restarting = True
        try:
            facts = run.session.restart()
        except Exception as exc:
            say(f"cannot restart the worker of {name}: {type(exc).__name__}: {exc}")
            continue
        say(f"session {name} restarted: a fresh worker (pid {facts.get('pid')}) runs it")
    if stubborn:
        _drain(pending, events, handler, time.monotonic() + 10.0)  # the restart ends them
    elif forced:
        for run in pending:
            run.cancel(force=True)
        _drain(pending, events, handler, time.monotonic() + min(grace, 0.5))
    if pending:
        say(f"no confirmation from {', '.join(sorted(r.session.name for r in pending))} "
            f"within {grace:g} s: the cell may still be running there")
