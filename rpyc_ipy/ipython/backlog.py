"""The events of running cells, waiting to be shown: a queue with a size bound.

Connection threads put a cell's events here as they arrive; the notebook's thread
takes them (see :mod:`.execution`). A server can send output faster than a notebook
shows it, so the output held here is bounded: past ``limit`` characters, output
events are dropped until the notebook has caught up to half the bound, and then one
note on the cell's stderr says how much was dropped. Once the cell is abandoned
(:meth:`EventBacklog.close`: the notebook stopped waiting for it) nothing more is
accepted::

    events = EventBacklog(limit=32 << 20)
    run = session.start(code, events)
    outcomes = wait_all([run], events, handler)   # closes it when it returns
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from rpyc_ipy.remote.joblog import event_size

__all__ = ["DEFAULT_LIMIT", "EventBacklog", "cut_note", "dropped_note", "output_size"]

#: characters of output held by default (``RPyCPolicy.max_output_backlog``)
DEFAULT_LIMIT = 32 << 20
_OUTPUT = ("stream", "display")


def output_size(event: tuple[Any, ...]) -> int:
    """About how many characters of output an event holds (0: not output)."""
    return event_size(event) if event and event[0] in _OUTPUT else 0


def dropped_note(chars: int, limit: int, setting: str = "RPyCPolicy.max_output_backlog"
                 ) -> str:
    """The line a cell shows where its output was dropped."""
    return (f"[rpyc_ipy] {_size(chars)} of output dropped here: it came faster than the "
            f"notebook shows it (at most {_size(limit)} is held: {setting})\n")


def cut_note(chars: int, limit: int) -> str:
    """The line a cell ends with when it showed all the output it may."""
    return (f"[rpyc_ipy] {_size(chars)} more output not shown: a cell shows at most "
            f"{_size(limit)} (RPyCPolicy.max_cell_output)\n")


class EventBacklog:
    """``(execution, event)`` pairs on their way to the notebook; see the module
    docstring. ``put`` and ``get`` as a ``queue.SimpleQueue``."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self._queue: queue.SimpleQueue[tuple[Any, int]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._dropping: dict[Any, int] = {}  # execution -> characters dropped, not told
        self._closed = False
        #: characters of output held now, and the most ever held
        self.held = 0
        self.peak = 0
        #: characters of output dropped in all
        self.dropped = 0
        #: events refused because the backlog was closed
        self.refused = 0

    @property
    def closed(self) -> bool:
        return self._closed

    def refuses(self) -> bool:
        """Whether it is closed; a batch refused for that is counted in :attr:`refused`."""
        with self._lock:
            if self._closed:
                self.refused += 1
            return self._closed

    def put(self, item: tuple[Any, tuple[Any, ...]]) -> None:
        """Queue one ``(execution, event)``: output past the bound is dropped."""
        execution, event = item
        size = output_size(event)
        with self._lock:
            if self._closed:
                self.refused += 1
                return
            owed = self._dropping.get(execution)
            resume_at = self.limit // 2 if owed is not None else self.limit
            if size and self.held + size > resume_at:
                self._dropping[execution] = (owed or 0) + size
                self.dropped += size
                return
            if owed is not None:  # caught up (or the cell ended): say what was lost
                del self._dropping[execution]
                if owed:
                    note = ("stream", "stderr", dropped_note(owed, self.limit))
                    self._queue.put(((execution, note), 0))
            self.held += size
            self.peak = max(self.peak, self.held)
            self._queue.put((item, size))

    def get(self, timeout: float | None = None) -> tuple[Any, tuple[Any, ...]]:
        """The next ``(execution, event)``; ``queue.Empty`` after ``timeout`` seconds."""
        item, size = self._queue.get(timeout=timeout)
        if size:
            with self._lock:
                self.held -= size
        return item

    def close(self) -> None:
        """Accept nothing more, and let go of what is held (the cell was abandoned)."""
        with self._lock:
            self._closed = True
            self._dropping.clear()
            self.held = 0
            while True:  # bounded: nothing is added once closed
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n:.1f} GiB"
