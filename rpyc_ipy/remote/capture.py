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
import itertools
import os
import re
import select
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

_libc: Any = None


def _fflush_all() -> None:
    """Flush C stdio buffers (``printf`` output sits there while fd 1 is a pipe)."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None)
        _libc.fflush(None)
    except Exception:
        pass


class _FdPump:
    """The pipes and the reader thread behind :class:`FdCapture`, made once per process.

    A capture is then two ``dup2`` calls per fd; its end writes a unique marker
    into each pipe and waits until the reader has routed everything before it
    (no thread or pipe is made per cell).
    """

    _instance: _FdPump | None = None
    _create = threading.Lock()

    @classmethod
    def get(cls) -> _FdPump:
        with cls._create:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def __init__(self) -> None:
        self.sink: OutputSink | None = None
        self.fallback = {fd: os.dup(fd) for fd in (1, 2)}  # where stray late bytes go
        self.pipes = {fd: os.pipe() for fd in (1, 2)}  # fd -> (read end, write end)
        self._marks: dict[int, threading.Event] = {}
        self._serial = itertools.count()
        threading.Thread(target=self._run, name="rpyc_ipy-fd-pump", daemon=True).start()

    def drain(self, timeout: float = 1.0) -> None:
        """Wait until everything written to both pipes so far has been routed."""
        waits = []
        try:
            for fd in (1, 2):
                serial = next(self._serial)
                done = self._marks[serial] = threading.Event()
                waits.append((serial, done))
                os.write(self.pipes[fd][1], _MARK % serial)
            for _, done in waits:
                done.wait(timeout)
        finally:
            for serial, _ in waits:
                self._marks.pop(serial, None)

    def _run(self) -> None:
        names = {self.pipes[fd][0]: ("stdout" if fd == 1 else "stderr", fd) for fd in (1, 2)}
        decoders = {r: codecs.getincrementaldecoder("utf-8")("replace") for r in names}
        pending = dict.fromkeys(names, b"")
        while True:
            try:
                readable, _, _ = select.select(list(names), [], [])
            except InterruptedError:
                continue
            for r in readable:
                buffer = pending[r] + os.read(r, 65536)
                name, fd = names[r]
                while True:
                    found = _MARK_RE.search(buffer)
                    if found is None:
                        break
                    self._route(name, fd, decoders[r], buffer[: found.start()])
                    buffer = buffer[found.end():]
                    event = self._marks.get(int(found.group(1)))
                    if event is not None:
                        event.set()
                keep = _partial_mark(buffer)  # a marker may be split across two reads
                self._route(name, fd, decoders[r], buffer[: len(buffer) - keep])
                pending[r] = buffer[len(buffer) - keep:]

    def _route(self, name: str, fd: int, decoder: Any, data: bytes) -> None:
        if not data:
            return
        sink = self.sink
        if sink is None:
            os.write(self.fallback[fd], data)
            return
        text = decoder.decode(data)
        if text:
            sink.write(name, text)


_MARK = b"\x00\x1drpyc_ipy-fd-mark-%d\x1d\x00"
_MARK_RE = re.compile(rb"\x00\x1drpyc_ipy-fd-mark-(\d+)\x1d\x00")
_MARK_PREFIX = b"\x00\x1drpyc_ipy-fd-mark-"


def _partial_mark(data: bytes) -> int:
    """How many trailing bytes of ``data`` may be the start of a marker."""
    start = data.rfind(b"\x00", max(0, len(data) - 48))
    if start == -1:
        return 0
    tail = data[start:]
    if len(tail) <= len(_MARK_PREFIX):
        return len(tail) if _MARK_PREFIX.startswith(tail) else 0
    if tail.startswith(_MARK_PREFIX) and b"\x1d\x00" not in tail[len(_MARK_PREFIX):]:
        return len(tail)
    return 0


class FdCapture:
    """Redirect file descriptors 1 and 2 into ``sink`` for the ``with`` block.

    Process-wide, so one holder at a time: when another execution holds it,
    this one runs without fd capture (:attr:`active` is False). POSIX only
    (elsewhere it stays inactive).
    """

    _holder = threading.Lock()

    def __init__(self, sink: OutputSink, enabled: bool = True) -> None:
        self.sink = sink
        self.enabled = enabled and os.name == "posix"
        self.active = False
        self._saved: list[tuple[int, int]] = []
        self._stop_lock = threading.Lock()

    def __enter__(self) -> FdCapture:
        if not self.enabled or not FdCapture._holder.acquire(blocking=False):
            return self
        try:
            pump = _FdPump.get()
            _flush_std()
            pump.sink = self.sink
            for fd in (1, 2):
                saved = os.dup(fd)
                self._saved.append((fd, saved))
                os.dup2(pump.pipes[fd][1], fd)
            self.active = True
        except OSError:
            self._restore()
            if _FdPump._instance is not None:
                _FdPump._instance.sink = None
            FdCapture._holder.release()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        """Restore fds 1 and 2 and route what the cell wrote (idempotent; another thread
        may call it for an abandoned execution, whose thread then finds nothing to do)."""
        with self._stop_lock:
            if not self.active:
                return
            self.active = False
            pump = _FdPump.get()
            try:
                _flush_std()
                self._restore()
                pump.drain()
            finally:
                pump.sink = None
                FdCapture._holder.release()

    def _restore(self) -> None:
        for fd, saved in self._saved:
            try:
                os.dup2(saved, fd)
            finally:
                os.close(saved)
        self._saved = []


def _flush_std() -> None:
    for stream in (sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass
    _fflush_all()
