"""In-memory transports: a connected pair in one process, and pipes to a subprocess.

``memory_pair()`` gives two transports wired to each other, with no socket and
no port: most tests run connections over it. ``PipeTransport`` speaks over a
pair of file descriptors (a subprocess's stdin/stdout).
"""

from __future__ import annotations

import os
import select
import threading
from collections import deque
from collections.abc import Sequence

from rpyc_ipy.core.transport import TransportInfo
from rpyc_ipy.errors import ConnectionClosed, UsageError

__all__ = ["MemoryTransport", "PipeTransport", "memory_pair"]


class _Pipe:
    """One direction: a bounded byte queue with blocking reads."""

    def __init__(self, capacity: int) -> None:
        self.chunks: deque[memoryview] = deque()
        self.size = 0
        self.capacity = capacity
        self.closed = False
        self.cond = threading.Condition()


class _WaitingReads:
    """The capabilities these transports lack, declared: every read may wait, there
    is no busy polling, and a write may hold several frames."""

    supports_nowait = False
    supports_busy_poll = False
    one_frame_per_write = False

    def recv_nowait(self, buffer: memoryview) -> int:
        raise UsageError(f"{type(self).__name__} cannot read without waiting")

    def set_busy_poll(self, window: float) -> None:
        raise UsageError(f"{type(self).__name__} does not busy-poll")


class MemoryTransport(_WaitingReads):
    """One end of :func:`memory_pair`; behaves like a socket transport."""

    info = TransportInfo("memory")

    def __init__(self, incoming: _Pipe, outgoing: _Pipe, poll_interval: float) -> None:
        self._in = incoming
        self._out = outgoing
        self._poll = poll_interval
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def fileno(self) -> None:
        """None: there is no descriptor under an in-process pipe."""
        return None

    def recv_into(self, buffer: memoryview) -> int:
        pipe = self._in
        with pipe.cond:
            if not pipe.chunks and not pipe.closed and not self._closed:
                pipe.cond.wait(self._poll)
                if not pipe.chunks and not pipe.closed and not self._closed:
                    raise TimeoutError("no data")
            if not pipe.chunks:
                return 0
            wanted = len(buffer)
            filled = 0
            while pipe.chunks and filled < wanted:
                chunk = pipe.chunks[0]
                n = min(len(chunk), wanted - filled)
                buffer[filled:filled + n] = chunk[:n]
                filled += n
                if n == len(chunk):
                    pipe.chunks.popleft()
                else:
                    pipe.chunks[0] = chunk[n:]
            pipe.size -= filled
            pipe.cond.notify_all()
            return filled

    def send_parts(self, parts: Sequence[bytes | memoryview]) -> None:
        pipe = self._out
        total = sum(map(len, parts))
        with pipe.cond:
            while pipe.size and pipe.size + total > pipe.capacity and not pipe.closed:
                pipe.cond.wait(self._poll)
            if pipe.closed or self._closed:
                raise ConnectionClosed("the memory transport is closed")
            for part in parts:
                if len(part):
                    pipe.chunks.append(memoryview(bytes(part)))
            pipe.size += total
            pipe.cond.notify_all()

    def close(self) -> None:
        self._closed = True
        for pipe in (self._in, self._out):
            with pipe.cond:
                pipe.closed = True
                pipe.cond.notify_all()


def memory_pair(capacity: int = 64 << 20, poll_interval: float = 0.5
                ) -> tuple[MemoryTransport, MemoryTransport]:
    """Two connected in-process transports (``a`` writes what ``b`` reads, and back)."""
    a_to_b, b_to_a = _Pipe(capacity), _Pipe(capacity)
    return (MemoryTransport(b_to_a, a_to_b, poll_interval),
            MemoryTransport(a_to_b, b_to_a, poll_interval))


class PipeTransport(_WaitingReads):
    """A transport over two file descriptors (read end, write end), e.g. a subprocess's pipes."""

    info = TransportInfo("pipe")

    def __init__(self, read_fd: int, write_fd: int, poll_interval: float = 0.5) -> None:
        self._read_fd = read_fd
        self._write_fd = write_fd
        self._poll = poll_interval
        self._closed = False
        self._lock = threading.Lock()

    @property
    def closed(self) -> bool:
        return self._closed

    def fileno(self) -> int:
        """The read end (what ``select`` waits on)."""
        return self._read_fd

    def recv_into(self, buffer: memoryview) -> int:
        if self._closed:
            return 0
        ready, _, _ = select.select([self._read_fd], [], [], self._poll)
        if not ready:
            raise TimeoutError("no data")
        try:
            return os.readv(self._read_fd, [buffer])
        except OSError:
            if self._closed:
                return 0
            raise

    def send_parts(self, parts: Sequence[bytes | memoryview]) -> None:
        try:
            for part in parts:
                view = memoryview(part)
                while view:
                    view = view[os.write(self._write_fd, view):]
        except OSError as exc:
            raise ConnectionClosed(f"cannot write to the pipe: {exc}") from None

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for fd in {self._read_fd, self._write_fd}:
            try:
                os.close(fd)
            except OSError:
                pass
