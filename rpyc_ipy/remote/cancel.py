"""Stopping a running cell: cooperative first, then an asynchronous exception, then
abandoning the thread.

The engine's supervisor calls :meth:`Cancellation.step` while it waits::

    cancel = Cancellation(grace=0.25)
    cancel.request()                   # from the peer's cancel request
    level = cancel.step(worker)        # escalates with time; returns the current level

Levels:

1. *cooperative*: the sink raises ``KeyboardInterrupt`` on the cell's next
   write, and :func:`cancelled` turns true for code that polls it;
2. *interrupt*: ``KeyboardInterrupt`` is raised asynchronously in the worker
   thread (``PyThreadState_SetAsyncExc``); it lands at the next bytecode, so a
   thread blocked in C (``time.sleep``, a socket read) only sees it on return;
3. *abandon*: the execution is reported as cancelled and the session moves on;
   the thread stops by itself once it returns to Python, and its late output is
   dropped.

A cell that runs on a process's main thread (the session worker,
:mod:`rpyc_ipy.remote.worker`) is interrupted with a real ``SIGINT`` instead,
which also ends a ``time.sleep`` or a blocking read, and is never abandoned: the
main thread cannot be given up, so the supervisor outside the process escalates.

An asynchronous exception is only ever sent while the worker is inside user
code (:class:`UserCodeGate`), and a pending one is cleared when the user code
ends, so it cannot hit the engine's own bookkeeping.

Pure standard library: also shipped by source to classic peers.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable

__all__ = ["Cancellation", "UserCodeGate", "cancelled", "raise_in_thread"]

NONE, COOPERATIVE, INTERRUPT, ABANDON = 0, 1, 2, 3

_current: dict[int, Cancellation] = {}


def raise_in_thread(ident: int, exc_type: type[BaseException] | None) -> bool:
    """Schedule ``exc_type`` in thread ``ident`` (``None`` clears a pending one)."""
    exc = ctypes.py_object(exc_type) if exc_type is not None else None
    count = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), exc)
    if count > 1:  # cannot happen for a valid ident; undo rather than hit other threads
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), None)
        return False
    return count == 1


def cancelled() -> bool:
    """True in a cell whose execution was asked to stop: poll it in long loops."""
    cancel = _current.get(threading.get_ident())
    return cancel is not None and cancel.requested


class UserCodeGate:
    """Marks the stretch of a worker thread that runs user code.

    ``with gate:`` around the user code; :meth:`interrupt` sends the asynchronous
    exception only inside that stretch, or calls ``signal_thread(ident)`` instead
    when given one (a ``SIGINT`` to the main thread, see the module docstring).
    """

    def __init__(self, signal_thread: Callable[[int], bool] | None = None) -> None:
        self._signal_thread = signal_thread
        self._lock = threading.Lock()
        self._ident: int | None = None
        self._sent = False
        self._interrupt_on_entry = False

    def __enter__(self) -> UserCodeGate:
        with self._lock:
            self._ident = threading.get_ident()
        if self._interrupt_on_entry:  # a SIGINT came before the user code began
            self._interrupt_on_entry = False
            raise KeyboardInterrupt
        return self

    def interrupt_on_entry(self) -> None:
        """Raise ``KeyboardInterrupt`` as the user code begins: for a signal handler
        (it takes no lock) that finds the cell not started yet. A signal after the
        entry is raised by the handler itself (see ``in_user_code_on`` in engine.py)."""
        self._interrupt_on_entry = True

    def __exit__(self, *exc: object) -> None:
        self.leave()

    @property
    def thread(self) -> int | None:
        """The thread inside the user code now, if any."""
        return self._ident

    def leave(self) -> None:
        """End the stretch; clears an asynchronous exception that did not land yet.

        Safe to call again if an exception landed inside it (the exception is
        sent at most once, so a retry loop ends).
        """
        with self._lock:
            ident, self._ident = self._ident, None
            if ident is not None and self._sent:
                raise_in_thread(ident, None)

    def interrupt(self) -> bool:
        """Raise ``KeyboardInterrupt`` in the worker if it is in user code."""
        with self._lock:
            if self._ident is None or self._sent:
                return False
            if self._signal_thread is not None:
                # not marked as sent: a signal leaves nothing pending to clear, and a
                # cell that caught the first KeyboardInterrupt may get another one
                return self._signal_thread(self._ident)
            self._sent = raise_in_thread(self._ident, KeyboardInterrupt)
            return self._sent


class Cancellation:
    """The cancel state of one execution; escalates by :meth:`step`."""

    def __init__(self, grace: float = 0.25, can_abandon: bool = True) -> None:
        self.grace = grace
        self.can_abandon = can_abandon
        self.level = NONE
        self.requested_at: float | None = None
        self.force = False
        self._lock = threading.Lock()

    @property
    def requested(self) -> bool:
        return self.requested_at is not None

    def request(self, force: bool = False) -> None:
        """Ask to stop; ``force`` skips the waiting between levels."""
        with self._lock:
            if self.requested_at is None:
                self.requested_at = time.monotonic()
            self.force = self.force or force

    def bind(self, ident: int) -> None:
        _current[ident] = self

    def unbind(self, ident: int) -> None:
        if _current.get(ident) is self:
            del _current[ident]

    def step(self, gate: UserCodeGate, on_cooperative: object = None) -> int:
        """Escalate as far as the elapsed time allows; returns the level reached."""
        if self.requested_at is None:
            return self.level
        elapsed = time.monotonic() - self.requested_at
        grace = 0.05 if self.force else self.grace
        if self.level < COOPERATIVE:
            self.level = COOPERATIVE
            if callable(on_cooperative):
                on_cooperative()
        if self.level < INTERRUPT and elapsed >= grace:
            self.level = INTERRUPT
            gate.interrupt()
        if self.can_abandon and self.level < ABANDON and elapsed >= 2 * grace:
            self.level = ABANDON
        return self.level

    def next_deadline(self) -> float | None:
        """Seconds until the next escalation, or ``None`` when nothing is pending."""
        if self.requested_at is None or self.level >= ABANDON or \
                (self.level >= INTERRUPT and not self.can_abandon):
            return None
        grace = 0.05 if self.force else self.grace
        step = grace if self.level < INTERRUPT else 2 * grace
        return max(0.0, self.requested_at + step - time.monotonic())
