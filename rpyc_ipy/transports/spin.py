"""How long a reader polls a socket before it sleeps in the kernel.

Waking a thread that sleeps in ``recv`` costs tens of microseconds on a
virtual machine (the idle CPU has to be woken by the hypervisor): on the
machines we measure on, a loopback ping-pong between two processes takes about
70 us when both sides block and about 6 us when both poll. A round trip of a
small call is dominated by those two wake-ups, so a reader that expects an
answer soon polls for a short while first.

Polling costs CPU and, in Python, holds the GIL between polls (another thread
of the process that wants the GIL waits for the window to end), so it is
guarded four ways:

* the window adapts per reader, in the manner of the kernel's ``haltpoll``
  governor: it grows when the data arrived just after the window closed and
  shrinks when the wait was long anyway (an idle peer, a slow network);
* a reader polls only while its conversation is the only one the process is
  having: once two readers of the process have received data within the last
  50 ms (a server thread per client, a client process with many connections),
  everyone blocks as usual;
* nobody polls while the machine has more runnable threads than CPUs (read
  from ``/proc/loadavg`` at most ten times a second): then a poller would take
  a CPU from someone who has work, such as the peer;
* at most one thread per process polls at any moment.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["DEFAULT_MAX_SPIN", "SOLO", "SpinPolicy"]

#: the longest a reader polls before blocking (seconds); 0 turns polling off
DEFAULT_MAX_SPIN = 200e-6
_START = 10e-6  # the first window after a short wait
#: seconds one reader must have been the only one receiving before it may poll
SOLO = 0.05
_clock = time.perf_counter

# One poller per process: a second one would only compete for the GIL and a CPU.
_token = threading.Lock()
_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
    (os.cpu_count() or 1)
_LOADAVG = "/proc/loadavg"
_CROWD_CHECK = 0.1  # seconds between readings of the run queue
_crowd: list[float | bool] = [-1.0, False]  # when last read, and whether CPUs were all taken


def _crowded(now: float) -> bool:
    """True if more threads are runnable than there are CPUs (read now and then)."""
    if now - _crowd[0] < _CROWD_CHECK:
        return bool(_crowd[1])
    _crowd[0] = now
    try:
        with open(_LOADAVG, "rb") as stat:  # "0.52 0.58 0.59 3/412 1234": 3 runnable
            runnable = int(stat.read().split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        runnable = 0  # not Linux: no signal, rely on the other guards
    _crowd[1] = runnable > _CPUS
    return bool(_crowd[1])


# the last reader of the process to receive, and when a different one last did
_last_reader: list[object] = [None]
_last_switch: list[float] = [0.0]
_Ready = TypeVar("_Ready")


class SpinPolicy:
    """The polling window of one reader: wait for data with :meth:`wait`, and say
    :meth:`received` when data came (that tells the readers of a process apart).
    """

    __slots__ = ("maximum", "window")

    def __init__(self, maximum: float = DEFAULT_MAX_SPIN) -> None:
        self.maximum = max(0.0, maximum)
        self.window = 0.0

    def set_maximum(self, maximum: float) -> None:
        """The longest this reader may poll before sleeping (0: never)."""
        self.maximum = max(0.0, maximum)
        self.window = min(self.window, self.maximum)

    def wait(self, poll: Callable[[float], _Ready], sleep: float, timeout: float,
             may_spin: bool = True) -> _Ready:
        """Wait until ``poll`` reports something: ``poll(0)`` again and again through
        the window (unless ``may_spin`` is false or :meth:`begin` says no), then one
        ``poll(sleep)`` that sleeps for ``timeout`` seconds (``sleep`` is that time in
        the unit ``poll`` takes). Returns the last answer (falsy when nothing came in
        time) and adapts the window to the wait.
        """
        started = _clock()
        window = self.begin(started) if may_spin else 0.0
        if window:
            deadline = started + window
            try:
                while True:
                    ready = poll(0)
                    if ready:
                        return ready  # caught while polling: the window is right as it is
                    if _clock() >= deadline:
                        break
            finally:
                self.release()
        ready = poll(sleep)
        self.record_block(_clock() - started if ready else timeout)
        return ready

    def received(self, now: float) -> None:
        """Note that this reader got data at ``now``."""
        if _last_reader[0] is not self:
            _last_reader[0] = self
            _last_switch[0] = now

    def begin(self, now: float) -> float:
        """The window to poll for now, 0 when this reader should block at once.

        A non-zero answer holds the process-wide token: call :meth:`release`.
        """
        if not self.window or now - _last_switch[0] < SOLO or _last_reader[0] is not self:
            return 0.0
        if _crowded(now) or not _token.acquire(blocking=False):
            return 0.0
        return self.window

    @staticmethod
    def release() -> None:
        _token.release()

    def record_block(self, waited: float) -> None:
        """Adapt after a wait that ended in the kernel and took ``waited`` seconds in all."""
        if waited <= self.maximum:
            # the data came soon after the window closed: a longer window would have caught it
            self.window = min(self.maximum, max(_START, self.window * 2))
        else:
            self.window = self.window / 2 if self.window > _START else 0.0


spin_clock = _clock
