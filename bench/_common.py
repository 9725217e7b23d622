"""Small timing helpers shared by the benchmarks: medians of repeats, side-by-side ratios.

Benchmarks print medians and ratios only; they never assert on time.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def time_batch(fn: Callable[[], object], number: int) -> float:
    """Seconds per call of ``fn`` over one batch of ``number`` calls (GC paused, like timeit)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        return (time.perf_counter() - start) / number
    finally:
        if enabled:
            gc.enable()


def calibrate(fn: Callable[[], object], target: float = 0.05) -> int:
    """A batch size that makes one batch of ``fn`` last about ``target`` seconds."""
    number = 1
    while True:
        elapsed = time_batch(fn, number) * number
        if elapsed >= target or number >= 1 << 24:
            return number
        number *= 2 if elapsed > target / 10 else 10


@dataclass
class Row:
    """One benchmark case: the per-call medians of both libraries."""

    name: str
    ours: float
    theirs: float

    @property
    def ratio(self) -> float:
        """How many times faster ours is (theirs' time over ours)."""
        return self.theirs / self.ours


def compare(name: str, ours: Callable[[], object], theirs: Callable[[], object],
            repeat: int = 15, target: float = 0.05) -> Row:
    """Median seconds per call of each function; batches alternate so drift hits both."""
    number = min(calibrate(ours, target), calibrate(theirs, target))
    ours_times: list[float] = []
    theirs_times: list[float] = []
    for _ in range(repeat):
        ours_times.append(time_batch(ours, number))
        theirs_times.append(time_batch(theirs, number))
    return Row(name, statistics.median(ours_times), statistics.median(theirs_times))


def alternating_medians(cases: dict[str, Callable[[], object]], repeat: int,
                        number: int) -> dict[str, float]:
    """Median seconds per call of each case; the batches take turns so drift hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, fn in cases.items():
            times[name].append(time_batch(fn, number))
    return {name: statistics.median(values) for name, values in times.items()}


def format_seconds(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def print_rows(rows: list[Row], theirs_label: str = "rpyc 6.0.2") -> None:
    """A table of medians and ratios; ratio > 1 means ours is faster."""
    width = max(len(row.name) for row in rows)
    print(f"{'case':<{width}}  {'rpyc_ipy':>10}  {theirs_label:>10}  ours vs theirs")
    for row in rows:
        print(f"{row.name:<{width}}  {format_seconds(row.ours):>10}  "
              f"{format_seconds(row.theirs):>10}  {row.ratio:6.2f}x")


_NOTEBOOK_SERVER = """
import rpyc_ipy
from rpyc_ipy.remote import ExecutionService, RuntimeSettings, SessionRegistry
registry = SessionRegistry(RuntimeSettings({settings}))
service = ExecutionService.configured(allow_loopback_plaintext=True, registry=registry)
server = rpyc_ipy.ThreadedServer(service, hostname="127.0.0.1", port=0,
                                 channel_handler=service.channel_handler())
print(server.port, flush=True)
server.start()
"""
_RPYC_CLASSIC_SERVER = """
import rpyc
from rpyc.utils.server import ThreadedServer
server = ThreadedServer(rpyc.core.SlaveService, hostname="127.0.0.1", port=0,
                        auto_register=False,
                        protocol_config={{"sync_request_timeout": {timeout!r}}})
server._listen()  # rpyc listens in start(): before the port is announced
print(server.port, flush=True)
server.start()
"""


def notebook_server(settings: str = "") -> str:
    """Source for :func:`server_process`: the notebook service (each session in a worker
    process) on a free loopback port; ``settings`` are ``RuntimeSettings`` keywords."""
    return _NOTEBOOK_SERVER.format(settings=settings)


def rpyc_classic_server(timeout: float = 30.0) -> str:
    """Source for :func:`server_process`: rpyc 6.0.2's classic ``ThreadedServer``, with a
    ``sync_request_timeout`` of ``timeout`` seconds."""
    return _RPYC_CLASSIC_SERVER.format(timeout=timeout)


@dataclass(frozen=True)
class ServerProcess:
    port: int
    pid: int


@contextlib.contextmanager
def server_process(code: str) -> Iterator[ServerProcess]:
    """Run ``code`` (a server that prints its port first) in a process group of its own;
    yields its port and pid, and ends the whole group (its workers too) afterwards."""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("a benchmark server did not start")
        yield ServerProcess(int(line), proc.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process (all its threads) has used, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit; returns the new limit."""
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def write_json(path: str | None, values: dict[str, float], notes: list[str] | None = None,
               **extra: object) -> None:
    """Write one script's results for bench/run.py's report: ``values`` maps a
    measure's key (see bench/report.py) to a number in base units (s, B/s, B, ops/s)."""
    if not path:
        return
    import json

    with open(path, "w", encoding="utf-8") as out:
        json.dump({"values": values, "notes": notes or [], **extra}, out, indent=1)
