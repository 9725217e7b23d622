"""What progress costs %rpyc_push / %rpyc_pull: several values sent in batches (one
request per 4 MiB, bound together by the last) and pulled one request per name, beside
the same values in one request, rpyc 6.0.2 and the raw floor.

Run:  .venv/bin/python bench/bench_transfer.py [--repeat 5] [--values 16] [--size-kib 1024]

Every server runs in a subprocess on 127.0.0.1 (port 0); this process is the client.

* ``one request``: ``RemoteSession.push``/``pull`` of every value at once (no progress).
* ``with progress``: the same through the path the magics use: a push in batches of
  ``PUSH_BATCH_BYTES`` (staged, bound by the last request), a pull one name per
  request, each step reported to a :class:`~rpyc_ipy.ipython.progress.Progress`.
* ``rpyc 6.0.2``: a classic connection, one ``namespace[name] = value`` (or read) per
  value: bytes travel by value there too.
* ``raw TCP``: the same bytes sent to a sink that answers one byte at the end.

This is a benchmark: it prints medians and ratios and asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

from _common import notebook_server, rpyc_classic_server, server_process

from rpyc_ipy.ipython.progress import Progress, Unit
from rpyc_ipy.ipython.session import open_session
from rpyc_ipy.target import ConnectionTarget

MiB = 1 << 20

WORKER_SERVER = notebook_server("capture_fd=False")
RPYC_SERVER = rpyc_classic_server()
SINK_SERVER = """
import socket
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
conn, _ = listener.accept()
while True:
    header = conn.recv(8, socket.MSG_WAITALL)
    if len(header) < 8:
        break
    left = int.from_bytes(header, "big")
    while left:
        left -= len(conn.recv(min(left, 1 << 20)))
    conn.sendall(b"k")
"""


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--values", type=int, default=16)
    parser.add_argument("--size-kib", type=int, default=1024)
    args = parser.parse_args(argv)
    size = max(1, args.size_kib) * 1024
    values = {f"v{i}": bytes([i % 256]) * size for i in range(args.values)}
    names = list(values)
    total_mib = args.values * size / MiB

    with server_process(WORKER_SERVER) as ours, server_process(RPYC_SERVER) as theirs, \
            server_process(SINK_SERVER) as sink:
        import socket

        import rpyc

        session = open_session(ConnectionTarget("127.0.0.1", ours.port, session_name="bench"))
        session.request_timeout = 300
        classic = rpyc.classic.connect("127.0.0.1", theirs.port)
        classic._config["sync_request_timeout"] = 300
        raw = socket.create_connection(("127.0.0.1", sink.port))
        blob = b"".join(values.values())

        def with_bar(work: Callable[[Progress], object], unit: Unit) -> Callable[[], object]:
            def run() -> object:
                with Progress("bench", unit=unit, delay=3600) as bar:
                    return work(bar)
            return run

        def raw_send() -> None:
            raw.sendall(len(blob).to_bytes(8, "big"))
            raw.sendall(blob)
            raw.recv(1)

        def rpyc_push() -> None:
            for name, value in values.items():
                classic.namespace[name] = value

        def rpyc_pull() -> None:
            for name in names:
                classic.namespace[name]

        cases = {
            "push, one request": lambda: session.push(values, batch_bytes=1 << 40),
            "push with progress": with_bar(lambda bar: session.push(values, on_progress=bar),
                                           "bytes"),
            "pull, one request": lambda: session.pull(names, max_bytes=2 * size),
            "pull with progress": with_bar(lambda bar: session.pull(
                names, max_bytes=2 * size, on_progress=bar), "items"),
            "rpyc 6.0.2 push": rpyc_push,
            "rpyc 6.0.2 pull": rpyc_pull,
            "raw TCP send": raw_send,
        }
        result = {name: median_seconds(fn, args.repeat) for name, fn in cases.items()}
        print(f"{args.values} values of {size // 1024} KiB ({total_mib:g} MiB), medians of "
              f"{args.repeat}")
        for name, seconds in result.items():
            print(f"   {name:<20} {total_mib / seconds:8.0f} MiB/s")
        for verb in ("push", "pull"):
            cost = result[f"{verb} with progress"] / result[f"{verb}, one request"]
            rpyc_ratio = result[f"rpyc 6.0.2 {verb}"] / result[f"{verb} with progress"]
            floor = result["raw TCP send"] / result[f"{verb} with progress"]
            print(f"   {verb} with progress: {cost:.2f}x the time of one request; "
                  f"{rpyc_ratio:.2f}x as fast as rpyc 6.0.2; {floor:.0%} of raw TCP")
        session.close()
        classic.close()
        raw.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
