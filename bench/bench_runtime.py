"""The cost of running a session's cells in a worker process, beside running them in
the server process, rpyc 6.0.2 and the raw floor.

Run:  .venv/bin/python bench/bench_runtime.py [--repeat 15] [--sessions 200]

Every server runs in a subprocess on 127.0.0.1 (port 0); this process is the client.

* ``in-process``: the engine served straight from the server process (cells on
  threads there): what ``rpyc-ipy serve --notebook`` did before sessions had workers.
* ``worker``: ``ExecutionService``: the server forwards each engine call to the
  session's worker process over a socketpair.
* ``channel``: the same session through a data channel: the server relays the
  client's bytes to the worker undecoded (what the notebook client uses).
* ``rpyc classic``: rpyc 6.0.2's SlaveService, ``conn.execute("1")`` (no output capture).
* ``raw TCP``: a 64-byte echo between two processes, the floor of any round trip.

1. ``execute("1")`` round trip: medians of alternating batches, and what the worker
   adds over the in-process path.
2. 16 MiB ``push`` and ``pull`` (a bytes value): throughput of each path and the
   worker's share of the in-process figure.
3. Server memory and threads after ``--sessions`` sessions came and went (each one
   attached, ran a cell, and was closed).

This is a benchmark: it prints medians and ratios and asserts nothing.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Callable

from _common import alternating_medians as medians
from _common import format_seconds, notebook_server, rpyc_classic_server, server_process

import rpyc_ipy
from rpyc_ipy.remote.values import pack

MiB = 1 << 20

IN_PROCESS_SERVER = """
import rpyc_ipy
from rpyc_ipy.remote.engine import Engine
from rpyc_ipy.remote.worker import WorkerService

class InProcess(WorkerService):
    def __init__(self):
        super().__init__(Engine(capture_fd=False))

    def on_connect(self, conn):
        conn.update_policy(allow_public_attrs=True)

server = rpyc_ipy.ThreadedServer(InProcess, hostname="127.0.0.1", port=0)
print(server.port, flush=True)
server.start()
"""
WORKER_SERVER = notebook_server(
    "capture_fd=False, max_sessions_per_user=1000, max_sessions=1000")
RPYC_SERVER = rpyc_classic_server()
ECHO_SERVER = """
import socket
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
conn, _ = listener.accept()
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while data := conn.recv(65536):
    conn.sendall(data)
"""


def proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return dict(line.rstrip("\n").split(":\t", 1) for line in status if ":\t" in line)


def round_trips(args: argparse.Namespace) -> None:
    import rpyc

    with server_process(IN_PROCESS_SERVER) as inproc_server, \
            server_process(WORKER_SERVER) as worker_server, \
            server_process(RPYC_SERVER) as rpyc_server, server_process(ECHO_SERVER) as echo_server:
        in_port, w_port = inproc_server.port, worker_server.port
        r_port, e_port = rpyc_server.port, echo_server.port
        inproc = rpyc_ipy.connect("127.0.0.1", in_port)
        worker = rpyc_ipy.connect("127.0.0.1", w_port)
        worker.root.attach("bench")
        channel = rpyc_ipy.connect("127.0.0.1", w_port,
                                   channel_ticket=worker.root.channel_ticket())
        classic = rpyc.classic.connect("127.0.0.1", r_port)
        echo = socket.create_connection(("127.0.0.1", e_port))
        echo.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        message = b"x" * 64

        def raw() -> None:
            echo.sendall(message)
            echo.recv(65536)

        in_exec, w_exec, c_exec = inproc.root.execute, worker.root.execute, channel.root.execute
        cases: dict[str, Callable[[], object]] = {
            "in-process": lambda: in_exec("1", None, ()),
            "worker": lambda: w_exec("1", None, ()),
            "channel": lambda: c_exec("1", None, ()),
            "rpyc classic": lambda: classic.execute("1"),
            "raw TCP": raw,
        }
        for fn in cases.values():  # warm up every path
            for _ in range(50):
                fn()
        result = medians(cases, args.repeat, args.number)
        print(f"1. execute('1') round trip, medians of {args.repeat} alternating batches "
              f"of {args.number}")
        for name, seconds in result.items():
            print(f"   {name:<13} {format_seconds(seconds):>10}")
        for path in ("worker", "channel"):
            added = result[path] - result["in-process"]
            print(f"   {path}: {added * 1e6:+.0f} us per round trip over the in-process path "
                  f"({result[path] / result['in-process']:.2f}x; budget: +100 us)")

        blob = pack(bytes(16 * MiB))
        in_push, w_push = inproc.root.push, worker.root.push
        in_pull, w_pull = inproc.root.pull, worker.root.pull
        c_push, c_pull = channel.root.push, channel.root.pull
        big = 64 * MiB
        bulk = medians({
            "in-process push": lambda: in_push((("blob", blob),)),
            "worker push": lambda: w_push((("blob", blob),)),
            "channel push": lambda: c_push((("blob", blob),)),
            "in-process pull": lambda: in_pull(("blob",), False, big),
            "worker pull": lambda: w_pull(("blob",), False, big),
            "channel pull": lambda: c_pull(("blob",), False, big),
        }, args.repeat, 1)
        print("\n2. 16 MiB push and pull (a bytes value), medians")
        for name, seconds in bulk.items():
            print(f"   {name:<16} {16 / seconds:8.0f} MiB/s")
        for path in ("worker", "channel"):
            for verb in ("push", "pull"):
                share = bulk[f"in-process {verb}"] / bulk[f"{path} {verb}"]
                print(f"   {path} {verb}: {share:.0%} of the in-process throughput "
                      "(budget: >= 80%)")
        for conn in (inproc, channel, worker, classic):
            conn.close()
        echo.close()


def session_churn(args: argparse.Namespace) -> None:
    with server_process(WORKER_SERVER) as worker_server:
        port, pid = worker_server.port, worker_server.pid
        def cycle(name: str) -> None:
            with rpyc_ipy.connect("127.0.0.1", port) as conn:
                conn.root.attach(name)
                conn.root.execute("x = list(range(1000))", None, ())
                conn.root.close_session()

        warm = min(20, args.sessions)
        for index in range(warm):
            cycle(f"warm{index}")
        before = proc_status(pid)
        for index in range(args.sessions):
            cycle(f"s{index}")
        after = proc_status(pid)
        print(f"\n3. the server after {args.sessions} sessions came and went "
              f"(each: attach, a cell, close); first {warm} as warm-up")
        for key in ("VmRSS", "Threads"):
            print(f"   {key:<8} {before[key].strip():>12} -> {after[key].strip():>12}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="batches per case")
    parser.add_argument("--number", type=int, default=200, help="calls per batch")
    parser.add_argument("--sessions", type=int, default=200, help="sessions for part 3")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.number, args.sessions = 3, 50, 10
    round_trips(args)
    session_churn(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())


