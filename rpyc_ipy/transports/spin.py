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

* the window adapts per reader (:class:`SpinPolicy`), in the manner of the
  kernel's ``haltpoll`` governor: it grows when the data arrived just after the
  window closed and shrinks when the wait was long anyway (an idle peer, a slow
  network);
* a reader polls only while its conversation is the only one the process is
  having: once two conversations of the process have received data within the
  last 50 ms (a server thread per client, a client process with many
  connections), everyone blocks as usual. A conversation is a socket: a server
  loop's reader and a thread that reads the same client's socket for a nested
  reply (a callback's) are one conversation, not two;
* nobody polls while the machine has more runnable threads than CPUs in two
  readings in a row (from ``/proc/loadavg``, at most ten times a second): then a
  poller would take a CPU from someone who has work, such as the peer; one
  reading alone may catch a helper thread of ours that runs for a moment;
* at most one thread per process polls at any moment.

The last three are process-wide: a :class:`SpinCoordinator` holds them, and
:data:`DEFAULT_COORDINATOR` is the one the transports and the server loop use
unless they are given another (tests give one with a fake run queue and clock).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from rpyc_ipy.core.transport import DEFAULT_BUSY_POLL_WINDOW

__all__ = [
    "DEFAULT_COORDINATOR",
    "DEFAULT_MAX_SPIN",
    "SOLO",
    "SpinCoordinator",
    "SpinPolicy",
    "runnable_threads",
]

#: the longest a reader polls before blocking (seconds); 0 turns polling off
DEFAULT_MAX_SPIN = DEFAULT_BUSY_POLL_WINDOW
_START = 10e-6  # the first window after a short wait
#: seconds one reader must have been the only one receiving before it may poll
SOLO = 0.05
_CROWD_CHECK = 0.1  # seconds between readings of the run queue
LOADAVG = "/proc/loadavg"


def runnable_threads(path: str = LOADAVG) -> int:
    """How many threads of the machine are runnable now (0 where ``path`` cannot tell)."""
    try:
        with open(path, "rb") as stat:  # "0.52 0.58 0.59 3/412 1234": 3 runnable
            return int(stat.read().split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        return 0  # not Linux: no signal, rely on the other guards


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


_Ready = TypeVar("_Ready")


class SpinCoordinator:
    """What the readers of one process share: the single poller's token, which
    conversation received data last, the run queue's last reading, and the clock.

    Make readers' policies with :meth:`policy`. ``runnable`` reads the machine's
    runnable thread count (default :func:`runnable_threads`), ``cpus`` is the
    number of CPUs this process may use, ``clock`` gives seconds.
    """

    def __init__(self, *, runnable: Callable[[], int] = runnable_threads,
                 cpus: int | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self._runnable = runnable
        self._cpus = _cpu_count() if cpus is None else cpus
        # one poller per process: a second one would only compete for the GIL and a CPU
        self._token = threading.Lock()
        self._last_conversation: object = None
        # when a different conversation than before last received
        self._last_switch = -math.inf
        self._crowd_read_at = -math.inf
        self._crowd = False
        self._over = False  # the last reading alone showed more runnable threads than CPUs

    def policy(self, maximum: float = DEFAULT_MAX_SPIN, conversation: object = None
               ) -> SpinPolicy:
        """A new reader's polling window, capped at ``maximum`` seconds; ``conversation``
        (a socket's descriptor) tells its readers apart, by default the policy itself."""
        return SpinPolicy(self, maximum, conversation)

    def crowded(self, now: float) -> bool:
        """True if more threads are runnable than there are CPUs in two readings in a row
        (read now and then): a helper thread of our own that is runnable for a moment
        (the watchdog) is not a crowd, and must not turn polling off for a while."""
        if now - self._crowd_read_at >= _CROWD_CHECK:
            self._crowd_read_at = now
            over = self._runnable() > self._cpus
            self._crowd, self._over = over and self._over, over
        return self._crowd

    def take_token(self, reader: SpinPolicy, now: float) -> bool:
        """True if ``reader`` may poll now: its conversation alone has been receiving
        for :data:`SOLO` seconds, the CPUs are not all taken, and nobody else polls. Then it holds
        the token: call :meth:`release_token`."""
        if self._last_conversation != reader.conversation or now - self._last_switch < SOLO:
            return False
        return not self.crowded(now) and self._token.acquire(blocking=False)

    def release_token(self) -> None:
        self._token.release()


class SpinPolicy:
    """The polling window of one reader: wait for data with :meth:`wait`, and say
    :meth:`received` when data came (that tells the readers of a process apart).
    Made by :meth:`SpinCoordinator.policy`.
    """

    __slots__ = ("_coordinator", "conversation", "maximum", "window")

    def __init__(self, coordinator: SpinCoordinator, maximum: float = DEFAULT_MAX_SPIN,
                 conversation: object = None) -> None:
        self._coordinator = coordinator
        self.maximum = max(0.0, maximum)
        self.window = 0.0
        #: what the solo rule tells readers apart by (a server loop sets the client's fd)
        self.conversation = self if conversation is None else conversation

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
        clock = self._coordinator.clock
        started = clock()
        if may_spin:
            ready = self.spin(poll, started)
            if ready:
                return ready  # caught while polling: the window is right as it is
        ready = poll(sleep)
        self.record_block(clock() - started if ready else timeout)
        return ready

    def spin(self, poll: Callable[[float], _Ready], started: float) -> _Ready | None:
        """Call ``poll(0)`` through the window that :meth:`begin` grants at ``started``
        (the coordinator's clock); the first truthy answer, or None when the window
        closed (or none was granted) and the caller should block. A blocking wait
        after it reports with :meth:`record_block`."""
        window = self.begin(started)
        if not window:
            return None
        clock = self._coordinator.clock
        deadline = started + window
        try:
            while True:
                ready = poll(0)
                if ready:
                    return ready
                if clock() >= deadline:
                    return None
        finally:
            self.release()

    @property
    def clock(self) -> Callable[[], float]:
        """The coordinator's clock, which :meth:`spin` and :meth:`record_block` use."""
        return self._coordinator.clock

    def received(self) -> float:
        """Note that this reader got data now; returns now, on the coordinator's clock."""
        coordinator = self._coordinator
        now = coordinator.clock()
        # SpinCoordinator.received, inlined: this runs for every frame a reader gets
        if coordinator._last_conversation != self.conversation:
            coordinator._last_conversation = self.conversation
            coordinator._last_switch = now
        return now

    def begin(self, now: float) -> float:
        """The window to poll for now, 0 when this reader should block at once.

        A non-zero answer holds the process-wide token: call :meth:`release`.
        """
        if not self.window or not self._coordinator.take_token(self, now):
            return 0.0
        return self.window

    def release(self) -> None:
        self._coordinator.release_token()

    def record_block(self, waited: float) -> None:
        """Adapt after a wait that ended in the kernel and took ``waited`` seconds in all."""
        if waited <= self.maximum:
            # the data came soon after the window closed: a longer window would have caught it
            self.window = min(self.maximum, max(_START, self.window * 2))
        else:
            self.window = self.window / 2 if self.window > _START else 0.0


#: the coordinator of this process's readers
DEFAULT_COORDINATOR = SpinCoordinator()
