"""How long a reader polls a socket before it sleeps in the kernel.

Waking a thread that sleeps in ``recv`` costs tens of microseconds on a
virtual machine (the idle CPU has to be woken by the hypervisor): on the
machines we measure on, a loopback ping-pong between two processes takes about
70 us when both sides block and about 6 us when both poll. A round trip of a
small call is dominated by those two wake-ups, so a reader that expects an
answer soon polls for a short while first.

Polling costs CPU and, in Python, holds the GIL between polls (another thread
of the process that wants the GIL waits for the window to end), so it is
guarded three ways:

* the window adapts per reader, in the manner of the kernel's ``haltpoll``
  governor: it grows when the data arrived just after the window closed and
  shrinks when the wait was long anyway (an idle peer, a slow network);
* a reader polls only while its conversation is the only one the process is
  having: if another reader of the process received data in the last
  millisecond (a server busy with many clients), everyone blocks as usual;
* at most one thread per process polls at any moment.
"""

from __future__ import annotations

import threading
import time

__all__ = ["DEFAULT_MAX_SPIN", "SpinPolicy"]

#: the longest a reader polls before blocking (seconds); 0 turns polling off
DEFAULT_MAX_SPIN = 200e-6
_START = 10e-6  # the first window after a short wait
_BUSY = 1e-3  # another reader received this recently: the process is busy
_clock = time.perf_counter

# One poller per process: a second one would only compete for the GIL and a CPU.
_token = threading.Lock()
# (reader, time) of the last receive in this process; one tuple, so one atomic store
_last_receive: list[tuple[object, float]] = [(None, 0.0)]


class SpinPolicy:
    """The polling window of one reader; call :meth:`begin` before polling and
    :meth:`end` with the outcome, or :meth:`record_block` after a blocking wait.
    """

    __slots__ = ("maximum", "window")

    def __init__(self, maximum: float = DEFAULT_MAX_SPIN) -> None:
        self.maximum = max(0.0, maximum)
        self.window = 0.0

    def received(self, now: float) -> None:
        """Note that this reader got data at ``now``."""
        _last_receive[0] = (self, now)

    def begin(self, now: float) -> float:
        """The window to poll for now, 0 when this reader should block at once.

        A non-zero answer holds the process-wide token: call :meth:`release`.
        """
        if not self.window:
            return 0.0
        last_reader, last_time = _last_receive[0]
        if last_reader is not self and now - last_time < _BUSY:
            return 0.0
        if not _token.acquire(blocking=False):
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
