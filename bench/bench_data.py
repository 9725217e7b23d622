"""Pulling a large float64 array: rpyc_ipy beside rpyc 6.0.2's ``obtain`` and a raw socket.

Run:  .venv/bin/python bench/bench_data.py [--mib 256] [--repeat 5] [--quick]

Every server runs in a subprocess on 127.0.0.1 (port 0) and holds the same array
(random float64, so nothing compresses it away); this process is the client.

* ``rpyc_ipy``: ``RemoteSession.pull`` from a notebook session (ExecutionService, the
  session's worker process, through a data channel that the server process relays):
  the npy header, then the bytes in chunks straight into a ``numpy.empty`` here. What
  ``%rpyc_pull`` does.
* ``rpyc obtain``: rpyc 6.0.2's ``rpyc.classic.obtain`` of the array on a classic
  server (``SlaveService``): pickled there, unpickled here. It runs ``--obtain-repeat``
  times only (default once): its socket stream re-slices the unsent rest of a frame
  after every 64 kB ``send``, so a 256 MiB frame takes minutes.
* ``raw socket``: the floor: the server ``sendall``s the array's buffer, the client
  ``recv_into``s a fresh ``numpy.empty`` of the same size.

Before each transfer the peak resident size of both sides is reset
(``/proc/PID/clear_refs``): how far each side's peak rose above its size before the
transfer (the largest over the repeats), against the payload size.

This is a benchmark: it prints medians and ratios and asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import signal
import socket
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy
from _common import format_seconds, notebook_server, rpyc_classic_server, server_process

MiB = 1 << 20

SETUP = "import numpy\narr = numpy.random.default_rng(1).random({n})\n"
NOTEBOOK_SERVER = notebook_server("capture_fd=False")
RPYC_SERVER = rpyc_classic_server(600)
# the floor: one byte asks for the array, the whole buffer comes back
RAW_SERVER = SETUP + """
import socket
view = memoryview(arr).cast("B")
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
conn, _ = listener.accept()
while conn.recv(1):
    conn.sendall(view)
"""


def vm(pid: int | str, key: str) -> int:
    """A ``/proc/PID/status`` size in bytes (``VmRSS``, ``VmHWM``)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def reset_peak(pid: int | str) -> None:
    """Start VmHWM again from the current resident size."""
    with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as refs:
        refs.write("5")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="array size in MiB")
    parser.add_argument("--repeat", type=int, default=5, help="transfers per path")
    parser.add_argument("--obtain-repeat", type=int, default=1,
                        help="transfers of rpyc's obtain (minutes each at 256 MiB)")
    parser.add_argument("--quick", action="store_true", help="32 MiB, 3 transfers")
    args = parser.parse_args(argv)
    # a timeout's SIGTERM still ends the servers (server_process's cleanup runs)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    if args.quick:
        args.mib, args.repeat = 32, 3
    import rpyc

    from rpyc_ipy.ipython.session import open_session
    from rpyc_ipy.target import ConnectionTarget

    nbytes = args.mib * MiB
    n = nbytes // 8
    with server_process(NOTEBOOK_SERVER) as nb_server, server_process(RPYC_SERVER) as r_server, \
            server_process(RAW_SERVER.format(n=n)) as raw_server:
        session = open_session(ConnectionTarget("127.0.0.1", nb_server.port,
                                                session_name="bench", timeout=60.0))
        session.request_timeout = 600.0
        session.execute(SETUP.format(n=n))
        worker_pid = session.remote["pid"]
        # rpyc.classic.connect, with a timeout long enough for the pickled array
        classic = rpyc.connect("127.0.0.1", r_server.port, rpyc.core.ClassicService,
                               config={"sync_request_timeout": 600})
        classic.execute(SETUP.format(n=n))
        raw = socket.create_connection(("127.0.0.1", raw_server.port))
        rpyc_pid = classic.modules.os.getpid()

        def ours() -> Any:
            return session.pull(["arr"], max_bytes=nbytes + MiB)["arr"][0]

        def obtain() -> Any:
            return rpyc.classic.obtain(classic.namespace["arr"])

        def floor() -> Any:
            out = numpy.empty(n, dtype=numpy.float64)
            view = out.view(numpy.uint8).data
            raw.sendall(b"?")
            got = 0
            while got < nbytes:  # bounded: each recv brings at least one byte or raises
                count = raw.recv_into(view[got:])
                if not count:
                    raise ConnectionError("the raw server went away")
                got += count
            return out

        cases: dict[str, Callable[[], Any]] = {"rpyc_ipy pull": ours, "rpyc obtain": obtain,
                                              "raw socket": floor}
        sides: dict[str, dict[str, int | str]] = {
            # the server process relays the worker's bytes to this client undecoded
            "rpyc_ipy pull": {"client": "self", "server": worker_pid, "relay": nb_server.pid},
            "rpyc obtain": {"client": "self", "server": rpyc_pid},
            "raw socket": {"client": "self", "server": raw_server.pid},
        }
        expected = floor()  # warms the floor; every path must bring the same bytes
        ours()  # warms the session (rpyc's obtain is too slow to run twice for nothing)
        times: dict[str, list[float]] = {name: [] for name in cases}
        peaks: dict[str, dict[str, int]] = {name: dict.fromkeys(sides[name], 0)
                                            for name in cases}
        for round_ in range(args.repeat):  # alternate, so drift hits every path alike
            for name, fn in cases.items():
                if name == "rpyc obtain" and round_ >= args.obtain_repeat:
                    continue
                gc.collect()
                before = {}
                for side, pid in sides[name].items():
                    reset_peak(pid)  # each transfer's peak from its own start
                    before[side] = vm(pid, "VmRSS")
                start = time.perf_counter()
                result = fn()
                times[name].append(time.perf_counter() - start)
                for side, pid in sides[name].items():
                    grew = vm(pid, "VmHWM") - before[side]
                    peaks[name][side] = max(peaks[name][side], grew)
                if round_ == 0:
                    assert numpy.array_equal(result, expected), name
                del result
                print(f"   ({name}: {format_seconds(times[name][-1])})", flush=True)
        med = {name: statistics.median(values) for name, values in times.items()}
        print(f"1. pulling a {args.mib} MiB float64 array, medians of {args.repeat} "
              f"alternating transfers ({len(times['rpyc obtain'])} of rpyc's obtain)")
        for name, seconds in med.items():
            print(f"   {name:<14} {format_seconds(seconds):>9}  {args.mib / seconds:8.0f} MiB/s")
        print(f"   rpyc_ipy: {med['raw socket'] / med['rpyc_ipy pull']:.0%} of the raw socket "
              "(goal: >= 50%)")
        print(f"   rpyc_ipy: {med['rpyc obtain'] / med['rpyc_ipy pull']:.1f}x rpyc's obtain "
              "(goal: >= 5x)")
        print(f"\n2. peak resident growth during a transfer (the largest of each path's), "
              f"against the payload ({args.mib} MiB)")
        for name, growth in peaks.items():
            print(f"   {name:<14} client +{growth['client'] / MiB:7.1f} MiB "
                  f"({growth['client'] / nbytes:.2f}x)   server +{growth['server'] / MiB:7.1f} "
                  f"MiB ({growth['server'] / nbytes:.2f}x)")
        row = peaks["rpyc_ipy pull"]
        print(f"   rpyc_ipy over the payload: client {(row['client'] - nbytes) / MiB:+.1f} "
              f"MiB, server (worker) {row['server'] / MiB:+.1f} MiB, relay "
              f"{row['relay'] / MiB:+.1f} MiB (goal: below size + a small constant)")
        session.end()
        classic.close()
        raw.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
