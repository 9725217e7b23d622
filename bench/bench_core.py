"""Round trips and bulk transfer: rpyc_ipy against rpyc 6.0.2, side by side in one run.

Each library's server runs in its own subprocess on 127.0.0.1 (so client and
server do not share a GIL); the clients run here. Prints medians of several
repeats and the ratios ours/rpyc; the machines are shared and noisy, so read the
ratios, not the absolute times.

    .venv/bin/python bench/bench_core.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

SERVICE_BODY = """
    def exposed_add1(self, x):
        return x + 1

    def exposed_echo(self, data):
        return data
"""

RPYC_SERVER = f"""
import rpyc, sys
from rpyc.utils.server import ThreadedServer
class Bench(rpyc.Service):
{textwrap.indent(textwrap.dedent(SERVICE_BODY), "    ")}
server = ThreadedServer(Bench, hostname="127.0.0.1", port=0,
                        protocol_config={{"sync_request_timeout": 600}})
print(server.port, flush=True)
server.start()
"""

OUR_SERVER = f"""
import sys
sys.path.insert(0, {ROOT!r})
import rpyc_ipy
class Bench(rpyc_ipy.Service):
{textwrap.indent(textwrap.dedent(SERVICE_BODY), "    ")}
server = rpyc_ipy.ThreadedServer(Bench, port=0, protocol_config={{"sync_request_timeout": 600}})
print(server.port, flush=True)
server.start()
"""

RAW_ECHO_SERVER = """
import socket, struct, threading
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(8)
print(listener.getsockname()[1], flush=True)
def serve(conn):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        header = conn.recv(8, socket.MSG_WAITALL)
        if len(header) < 8:
            return
        (size,) = struct.unpack(">Q", header)
        data = bytearray(size)
        view, got = memoryview(data), 0
        while got < size:
            got += conn.recv_into(view[got:])
        conn.sendall(header)
        conn.sendall(data)
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


def start_server(code: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("benchmark server did not start")
    return proc, int(line)


def median_time(func: Callable[[], Any], number: int, repeat: int) -> float:
    """Median over ``repeat`` runs of the time per call of ``func``."""
    func()  # warm up caches and proxies
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            func()
        times.append((time.perf_counter() - start) / number)
    return statistics.median(times)


def compare(ours: Callable[[], Any], theirs: Callable[[], Any], number: int, repeat: int
            ) -> tuple[float, float]:
    """Median time per call of each, measured in alternating batches so that the
    noise of a shared machine falls on both sides alike."""
    ours()
    theirs()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for func, bucket in ((ours, times[0]), (theirs, times[1])):
            start = time.perf_counter()
            for _ in range(number):
                func()
            bucket.append((time.perf_counter() - start) / number)
    return statistics.median(times[0]), statistics.median(times[1])


def raw_echo(port: int, payload: bytes) -> Callable[[], None]:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buffer = bytearray(len(payload))

    def echo() -> None:
        sock.sendall(len(payload).to_bytes(8, "big"))
        sock.sendall(payload)
        sock.recv(8, socket.MSG_WAITALL)
        view, got = memoryview(buffer), 0
        while got < len(payload):
            got += sock.recv_into(view[got:])
    return echo


def report(name: str, ours: float, theirs: float, unit: str = "us") -> None:
    scale = {"us": 1e6, "ms": 1e3}[unit]
    print(f"{name:<34} rpyc_ipy {ours * scale:10.1f} {unit}   rpyc {theirs * scale:10.1f} {unit}"
          f"   speedup x{theirs / ours:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats (smoke run)")
    options = parser.parse_args()
    calls, repeat = (300, 5) if options.quick else (500, 21)

    import rpyc

    import rpyc_ipy

    procs = []
    try:
        rpyc_proc, rpyc_port = start_server(RPYC_SERVER)
        our_proc, our_port = start_server(OUR_SERVER)
        raw_proc, raw_port = start_server(RAW_ECHO_SERVER)
        procs = [rpyc_proc, our_proc, raw_proc]
        theirs = rpyc.connect("127.0.0.1", rpyc_port, config={"sync_request_timeout": 600})
        ours = rpyc_ipy.connect("127.0.0.1", our_port, config={"sync_request_timeout": 600})
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; medians of {repeat} runs")

        counter = iter(range(10**9))
        t_ours, t_rpyc = compare(lambda: ours.root.add1(next(counter)),
                                 lambda: theirs.root.add1(next(counter)), calls, repeat)
        report("conn.root.add1(i)", t_ours, t_rpyc)

        add_ours, add_rpyc = ours.root.add1, theirs.root.add1
        t_ours, t_rpyc = compare(lambda: add_ours(next(counter)),
                                 lambda: add_rpyc(next(counter)), calls, repeat)
        report("cached bound method f(i)", t_ours, t_rpyc)

        payload = os.urandom(16 << 20)
        big_repeat = 3 if options.quick else 5
        t_ours, t_rpyc = compare(lambda: ours.root.echo(payload),
                                 lambda: theirs.root.echo(payload), 1, big_repeat)
        t_raw = median_time(raw_echo(raw_port, payload), 1, big_repeat)
        report("16 MiB bytes echo", t_ours, t_rpyc, "ms")
        print(f"{'':<34} raw socket echo {t_raw * 1e3:.1f} ms: rpyc_ipy reaches "
              f"{t_raw / t_ours:.0%} of raw socket throughput")

        huge = os.urandom(128 << 20)
        start = time.perf_counter()
        assert ours.root.echo(huge) == huge
        t_huge = time.perf_counter() - start
        print(f"{'128 MiB bytes echo':<34} rpyc_ipy completes in {t_huge * 1e3:.0f} ms "
              f"({t_raw / t_huge * 8:.0%} of 8x the 16 MiB raw time)")
        theirs_small = rpyc.connect("127.0.0.1", rpyc_port)  # default 30 s timeout
        try:
            start = time.perf_counter()
            theirs_small.root.echo(huge)
            print(f"{'':<34} rpyc completes in {(time.perf_counter() - start) * 1e3:.0f} ms")
        except Exception as exc:
            print(f"{'':<34} rpyc fails with its default config: {type(exc).__name__}")
        ours.close()
        theirs.close()
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
