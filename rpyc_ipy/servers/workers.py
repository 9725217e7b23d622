"""Worker processes of a server that serves from several processes (``processes=N``).

The server binds and accepts in its own process, as usual, and hands each
accepted socket to one of N forked workers in turn (the descriptor travels over
a Unix socket pair, ``SCM_RIGHTS``); the worker authenticates and serves that
client for its whole life, so a connection lives in one process. With the work
spread over processes, requests of different clients run on different CPUs
instead of sharing one process's GIL.

A worker stops when its socket pair reaches end of stream: the server closes its
end on :meth:`WorkerPool.stop`, and the kernel closes it when the server's
process dies in any way (even ``SIGKILL``), so no worker outlives the server.
Ctrl-C reaches the whole process group; workers ignore it and stop when the
server does. POSIX only (``os.fork``).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable

from rpyc_ipy.errors import UsageError

__all__ = ["WorkerPool", "check_processes", "receive_socket"]

log = logging.getLogger("rpyc_ipy.server")

#: seconds the workers get to close their clients and exit before they are killed
STOP_GRACE = 5.0
_REAP_STEP = 0.01


def check_processes(processes: object) -> int:
    """``processes`` if it is a whole number >= 1 this system can fork for, else ``UsageError``."""
    if type(processes) is not int or processes < 1:
        raise UsageError(f"processes={processes!r}: give a whole number >= 1")
    if processes > 1 and not (hasattr(os, "fork") and hasattr(socket, "send_fds")):
        raise UsageError(f"processes={processes} needs os.fork and descriptor passing (POSIX); "
                         "this system has neither: use processes=1")
    return processes


class WorkerPool:
    """``count`` forked workers, each running ``serve(channel)`` on its end of a socket
    pair; :meth:`hand_over` sends them accepted sockets in turn."""

    def __init__(self, count: int, serve: Callable[[socket.socket], None],
                 stop_grace: float = STOP_GRACE) -> None:
        self._stop_grace = stop_grace
        self._channels: list[socket.socket] = []
        self._pids: list[int] = []
        self._next = 0
        self._lock = threading.Lock()
        for index in range(count):
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            pid = os.fork()
            if pid == 0:  # the worker: never returns into the server's code
                status = 1
                try:
                    # Ctrl-C reaches the whole group: the server stops us; a SIGTERM of
                    # our own ends us at once (no handler of the server's runs here)
                    signal.signal(signal.SIGINT, signal.SIG_IGN)
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    ours.close()
                    for channel in self._channels:  # the other workers' channels
                        channel.close()
                    serve(theirs)
                    status = 0
                except BaseException:
                    log.exception("worker process %d failed", index)
                finally:
                    os._exit(status)
            theirs.close()
            self._channels.append(ours)
            self._pids.append(pid)

    @property
    def pids(self) -> list[int]:
        return list(self._pids)

    def hand_over(self, sock: socket.socket) -> bool:
        """Send ``sock`` to the next worker that takes it (the caller closes its copy);
        False if no worker is left."""
        with self._lock:
            for _ in range(len(self._channels)):
                if not self._channels:
                    break
                index = self._next % len(self._channels)
                self._next = index + 1
                channel = self._channels[index]
                try:
                    socket.send_fds(channel, [b"c"], [sock.fileno()])
                    return True
                except OSError as exc:  # that worker is gone: leave it out from now on
                    log.warning("worker process %d is gone (%s); serving with the others",
                                self._pids[index], exc)
                    channel.close()
                    del self._channels[index]
                    self._reap(self._pids.pop(index), self._stop_grace)  # it is exiting
            return False

    def stop(self) -> None:
        """Tell every worker to stop (end of stream) and wait for them; a worker still
        there after the grace is killed. Safe to call twice."""
        with self._lock:
            channels, self._channels = self._channels, []
            pids, self._pids = self._pids, []
        for channel in channels:
            channel.close()
        deadline = time.monotonic() + self._stop_grace
        for pid in pids:
            self._reap(pid, max(0.0, deadline - time.monotonic()))

    @staticmethod
    def _reap(pid: int, grace: float) -> None:
        for _ in range(int(grace / _REAP_STEP) + 1):
            try:
                done, _status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return
            if done:
                return
            time.sleep(_REAP_STEP)
        log.warning("worker process %d did not stop within %.1f s: killing it", pid, grace)
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def receive_socket(channel: socket.socket) -> socket.socket | None:
    """The next socket the server handed over on ``channel``, or None at end of stream
    (the server stopped or died)."""
    while True:
        try:
            message, fds, _flags, _address = socket.recv_fds(channel, 16, 1)
        except InterruptedError:
            continue
        except OSError:
            return None
        if not message and not fds:
            return None
        if fds:
            return socket.socket(fileno=fds[0])
