"""Capture what a running cell writes: ``sys.stdout``/``sys.stderr``, ``display()``, and
(where possible) the process's file descriptors 1 and 2.

One :class:`OutputSink` per execution buffers events; the engine's supervisor
drains it every few milliseconds and sends the batch to the client::

    sink = OutputSink()
    with routed(sink), FdCapture(sink):   # this thread's prints, and C-level output
        exec(code, namespace)
    sink.take()      # -> (("stream", "stdout", "..."), ("display", ...), ...)

Events are brine-able tuples: ``("stream", name, text)``, ``("display", data_pairs,
metadata, display_id, update)``, ``("clear", wait)``.

Python-level writes are routed by thread: :class:`StreamRouter` replaces
``sys.stdout``/``sys.stderr`` once and sends each write to the sink bound to the
writing thread (a thread with no sink writes to the original stream; while
exactly one execution runs, threads it started are routed to it).
File-descriptor capture is process-wide, so only one execution holds it at a
time; C-level output of every thread lands in that execution's stream.

Pure standard library: also shipped by source to classic peers.
"""

from __future__ import annotations

import codecs
import ctypes
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

__all__ = ["FdCapture", "OutputSink", "StreamRouter", "current_sink", "install_routers", "routed"]

#: a sink holding more than this many characters makes writers wait for a drain
MAX_BUFFERED = 4 << 20
#: a sink holding more than this asks the supervisor to drain early
EAGER_DRAIN = 64 << 10


class OutputSink:
    """The events of one execution, buffered until :meth:`take`.

    Adjacent writes to the same stream are merged. Writers block (bounded waits)
    while more than :data:`MAX_BUFFERED` characters are pending, which gives
    back-pressure from a slow client to a chatty cell. Once :meth:`cancel` was
    called, a write from the execution's own thread raises ``KeyboardInterrupt``:
    the cooperative stop for loops that print.
    """

    def __init__(self, owner: int | None = None) -> None:
        self._events: list[Any] = []
        self._size = 0
        self._cond = threading.Condition()
        self._closed = False
        self._cancelled = False
        self.owner = owner  # the thread running the cell
        self.dropped = 0  # characters written after close

    # -- writers ------------------------------------------------------------------

    def write(self, name: str, text: str) -> None:
        if not text:
            return
        if self._cancelled and threading.get_ident() == self.owner:
            raise KeyboardInterrupt("the execution was cancelled")
        with self._cond:
            if self._closed:
                self.dropped += len(text)
                return
            deadline = time.monotonic() + 5.0
            while self._size > MAX_BUFFERED and not self._closed and time.monotonic() < deadline:
                self._cond.wait(0.05)
            events = self._events
            if events and events[-1][0] == "stream" and events[-1][1] == name:
                events[-1] = ("stream", name, events[-1][2] + text)
            else:
                events.append(("stream", name, text))
            self._size += len(text)
            if self._size > EAGER_DRAIN:
                self._cond.notify_all()

    def display(self, data: tuple[tuple[str, Any], ...], metadata: Any = (),
                display_id: str | None = None, update: bool = False) -> None:
        with self._cond:
            if self._closed:
                return
            self._events.append(("display", data, metadata, display_id, bool(update)))
            self._size += sum(len(v) for _, v in data if isinstance(v, (str, bytes)))
            self._cond.notify_all()

    def clear(self, wait: bool = False) -> None:
        with self._cond:
            if not self._closed:
                self._events.append(("clear", bool(wait)))

    # -- the supervisor -------------------------------------------------------------

    def take(self) -> tuple[Any, ...]:
        """Every pending event, oldest first; the buffer is emptied."""
        with self._cond:
            events, self._events = self._events, []
            self._size = 0
            self._cond.notify_all()
        return tuple(events)

    def wait_for_data(self, timeout: float, done: threading.Event | None = None) -> None:
        """Sleep until the buffer is big enough to drain early, ``done`` is set (the
        setter must call :meth:`wake` after setting it), or ``timeout`` passes."""
        with self._cond:
            if self._size <= EAGER_DRAIN and not (done is not None and done.is_set()):
                self._cond.wait(timeout)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def cancel(self) -> None:
        self._cancelled = True
        self.wake()

    def close(self) -> None:
        """Refuse further events (late writes of an abandoned thread are dropped)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def cancelled(self) -> bool:
        return self._cancelled


# -- sys.stdout / sys.stderr routing ------------------------------------------------

_bindings: dict[int, OutputSink] = {}
_bindings_lock = threading.Lock()


def current_sink() -> OutputSink | None:
    """The sink the calling thread's output belongs to, if any."""
    sink = _bindings.get(threading.get_ident())
    if sink is None and len(_bindings) == 1:
        thread = threading.current_thread()
        # probably a thread the running cell started: not ours, not the main thread
        if thread is not threading.main_thread() and not thread.name.startswith("rpyc_ipy"):
            for only in list(_bindings.values()):
                return only
    return sink


class StreamRouter:
    """Stands in for ``sys.stdout``/``sys.stderr``: writes go to the writing thread's sink."""

    def __init__(self, name: str, original: TextIO) -> None:
        self.name = name
        self.original = original

    def _sink(self) -> OutputSink | None:
        return current_sink()

    def write(self, text: str) -> int:
        sink = self._sink()
        if sink is None:
            return self.original.write(text)
        if type(text) is not str:
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        sink.write(self.name, text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._sink() is None:
            self.original.flush()

    def isatty(self) -> bool:
        return False if self._sink() is not None else self.original.isatty()

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return getattr(self.original, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:
        return getattr(self.original, "errors", None)

    def fileno(self) -> int:
        return self.original.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original, name)


def install_routers() -> None:
    """Put routers in ``sys.stdout``/``sys.stderr`` (again, if someone replaced them)."""
    for name in ("stdout", "stderr"):
        current = getattr(sys, name)
        if not isinstance(current, StreamRouter) and current is not None:
            setattr(sys, name, StreamRouter(name, current))


@contextmanager
def routed(sink: OutputSink) -> Iterator[OutputSink]:
    """Route this thread's ``sys.stdout``/``sys.stderr`` writes to ``sink``."""
    install_routers()
    me = threading.get_ident()
    with _bindings_lock:
        _bindings[me] = sink
    try:
        yield sink
    finally:
        with _bindings_lock:
            if _bindings.get(me) is sink:
                del _bindings[me]


# -- file descriptors 1 and 2 ------------------------------------------------------------

def _fflush_all() -> None:
    """Flush C stdio buffers (``printf`` output sits there while fd 1 is a pipe)."""
    try:
        ctypes.CDLL(None).fflush(None)
    except Exception:
        pass


class FdCapture:
    """Redirect file descriptors 1 and 2 into ``sink`` for the ``with`` block.

    Process-wide, so one holder at a time: when another execution holds it,
    this one runs without fd capture (:attr:`active` is False). Not available
    on platforms without ``os.dup2`` pipes semantics (it then stays inactive).
    """

    _holder = threading.Lock()

    def __init__(self, sink: OutputSink, enabled: bool = True) -> None:
        self.sink = sink
        self.enabled = enabled and os.name == "posix"
        self.active = False
        self._saved: list[tuple[int, int]] = []
        self._readers: list[threading.Thread] = []
        self._stop_lock = threading.Lock()

    def __enter__(self) -> FdCapture:
        if not self.enabled or not FdCapture._holder.acquire(blocking=False):
            return self
        try:
            for stream in (sys.__stdout__, sys.__stderr__):
                try:
                    if stream is not None:
                        stream.flush()
                except Exception:
                    pass
            _fflush_all()
            for fd, name in ((1, "stdout"), (2, "stderr")):
                saved = os.dup(fd)
                read_end, write_end = os.pipe()
                os.dup2(write_end, fd)
                os.close(write_end)
                self._saved.append((fd, saved))
                reader = threading.Thread(target=self._pump, args=(read_end, name),
                                          name=f"rpyc_ipy-fd{fd}", daemon=True)
                reader.start()
                self._readers.append(reader)
            self.active = True
        except OSError:
            self._restore()
            FdCapture._holder.release()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        """Restore fds 1 and 2 (idempotent; another thread may call it for an
        abandoned execution, whose thread then finds nothing left to do)."""
        with self._stop_lock:
            if not self.active:
                return
            self.active = False
            try:
                _fflush_all()
                self._restore()
                for reader in self._readers:
                    if reader is not threading.current_thread():
                        reader.join(timeout=1.0)  # EOF once fds 1/2 are restored
            finally:
                FdCapture._holder.release()

    def _restore(self) -> None:
        for fd, saved in self._saved:
            try:
                os.dup2(saved, fd)
            finally:
                os.close(saved)
        self._saved = []

    def _pump(self, read_end: int, name: str) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        try:
            while True:
                try:
                    chunk = os.read(read_end, 65536)
                except InterruptedError:
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                text = decoder.decode(chunk)
                if text:
                    self.sink.write(name, text)
            tail = decoder.decode(b"", final=True)
            if tail:
                self.sink.write(name, tail)
        finally:
            os.close(read_end)
