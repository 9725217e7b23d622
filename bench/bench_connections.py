"""Idle connections: the server memory each one costs, rpyc_ipy beside rpyc 6.0.2 and a
floor, in plaintext and over TLS; then many idle connections held by one ThreadedServer
while a fresh client is served.

Each server runs in its own subprocess on 127.0.0.1 with its open-file limit raised to
the hard limit (``resource.setrlimit``); the idle connections are opened by holder
subprocesses (each one a real client: connected, the root fetched, then silent).
Memory per connection = (server RSS with the connections held - RSS before) / N.
The floor is a bare Python server that only accepts each connection (and completes
its TLS handshake with the same certificate) and keeps the socket: what the kernel's
socket object and OpenSSL's session cost before any RPC state.
With the connections held, a fresh client connects and makes round trips (their
median is printed beside the one before), and the server's CPU over a few idle
seconds shows whether anything polls.

    .venv/bin/python bench/bench_connections.py [--quick] [--count 1000] [--many 10000]
                                                [--json PATH]
    .venv/bin/python bench/bench_connections.py --trace [--tls]  # where our bytes go

A benchmark, not a test: it prints figures and asserts nothing on time.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _common import (  # noqa: E402
    ROOT,
    cpu_seconds,
    raise_fd_limit,
    rss_bytes,
    server_process,
    write_json,
)

sys.path.insert(0, ROOT)

KiB, MiB = 1 << 10, 1 << 20
HOLDERS = 4  # client processes that hold the connections (each under its fd limit)
WAIT = 600.0

FD_LIMIT = """
import resource
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (_hard, _hard))
"""
OUR_SERVER = FD_LIMIT + """
TRACE = TRACE_FILE
if TRACE:
    import signal, tracemalloc
    tracemalloc.start(8)
    marks = []
    def snapshot(*_):
        # first signal: the baseline; second: what was allocated since, by call site
        marks.append(tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]))
        if len(marks) == 2:
            with open(TRACE + ".tmp", "w") as out:
                for stat in marks[1].compare_to(marks[0], "traceback")[:TOP]:
                    where = " < ".join(f"{f.filename.rpartition('/')[2]}:{f.lineno}"
                                       for f in reversed(stat.traceback[-4:]))
                    out.write(f"{stat.size_diff} {stat.count_diff} {where}\\n")
            import os
            os.replace(TRACE + ".tmp", TRACE)
    signal.signal(signal.SIGUSR1, snapshot)
import rpyc_ipy
from rpyc_ipy.auth.tls_server import SSLAuthenticator
class Bench(rpyc_ipy.Service):
    def exposed_add1(self, x):
        return x + 1
server = rpyc_ipy.ThreadedServer(Bench, hostname="127.0.0.1", port=0, authenticator=AUTH,
                                 max_connections=MAX)
print(server.port, flush=True)
server.start()
"""
FLOOR_SERVER = FD_LIMIT + """
import selectors, socket, ssl
CERT_KEY = AUTH
context = None
if CERT_KEY:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*CERT_KEY)
listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
selector = selectors.DefaultSelector()
selector.register(listener, selectors.EVENT_READ)
print(listener.getsockname()[1], flush=True)
while True:
    for key, _ in selector.select():
        if key.fileobj is listener:
            sock, _ = listener.accept()
            if context is not None:
                sock = context.wrap_socket(sock, server_side=True)  # the handshake, here
            selector.register(sock, selectors.EVENT_READ)
            continue
        data = key.fileobj.recv(1)
        if data:
            key.fileobj.sendall(data)
        else:
            selector.unregister(key.fileobj)
            key.fileobj.close()
"""
RPYC_SERVER = FD_LIMIT + """
import rpyc
from rpyc.utils.authenticators import SSLAuthenticator
from rpyc.utils.server import ThreadedServer
class Bench(rpyc.Service):
    def exposed_add1(self, x):
        return x + 1
server = ThreadedServer(Bench, hostname="127.0.0.1", port=0, auto_register=False,
                        authenticator=AUTH)
server._listen()  # rpyc listens in start(): before the port is announced
print(server.port, flush=True)
server.start()
"""


class FloorClient:
    """The floor's client: a bare (TLS) socket; ``root.add1`` is a one-byte echo."""

    def __init__(self, port: int, cert: str | None) -> None:
        import socket
        import ssl

        sock = socket.create_connection(("127.0.0.1", port))
        if cert:
            sock = ssl.create_default_context(cafile=cert).wrap_socket(
                sock, server_hostname="127.0.0.1")
        self.sock = sock
        self.root = self

    def add1(self, x: int) -> int:
        self.sock.sendall(b"x")
        if self.sock.recv(1) != b"x":
            raise ConnectionError("the floor server closed the connection")
        return x + 1

    def close(self) -> None:
        self.sock.close()


def connect(library: str, port: int, cert: str | None) -> Any:
    """A real client connection that has fetched its root (the server has set it up)."""
    if library == "floor":
        conn: Any = FloorClient(port, cert)
        conn.add1(0)  # the server has accepted it and finished the handshake
        return conn
    if library == "rpyc_ipy":
        import rpyc_ipy

        conn = (rpyc_ipy.ssl_connect("127.0.0.1", port, ca_certs=cert) if cert
                else rpyc_ipy.connect("127.0.0.1", port))
    else:
        import rpyc

        conn = (rpyc.ssl_connect("127.0.0.1", port, ca_certs=cert) if cert
                else rpyc.connect("127.0.0.1", port))
    # the first request: rpyc (and ssl_connect) fetch the root lazily, and a server
    # counts a connection that has sent nothing yet as not logged in
    conn.root  # noqa: B018
    return conn


def hold(library: str, port: int, count: int, cert: str | None) -> None:
    """Open ``count`` connections, say so, and keep them idle until stdin closes."""
    raise_fd_limit()
    conns = [connect(library, port, cert) for _ in range(count)]
    print(f"ready {len(conns)}", flush=True)
    sys.stdin.read()


def round_trip(conn: Any, calls: int = 50) -> float:
    add = conn.root.add1
    times = []
    for i in range(calls):
        start = time.perf_counter()
        add(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


TEMPLATES = {"rpyc_ipy": OUR_SERVER, "rpyc": RPYC_SERVER, "floor": FLOOR_SERVER}


def measure(library: str, cert_key: tuple[str, str] | None, count: int, idle_s: float,
            trace: tuple[str, int] | None = None) -> dict[str, Any]:
    """Hold ``count`` idle connections on one server; its memory, CPU and a fresh client.
    ``trace`` (rpyc_ipy only): a file for the tracemalloc breakdown and its line count."""
    if cert_key is None:
        auth = "None"
    elif library == "floor":
        auth = repr(cert_key)
    else:
        auth = f"SSLAuthenticator({cert_key[1]!r}, {cert_key[0]!r})"
    code = (TEMPLATES[library].replace("AUTH", auth).replace("MAX", str(count + 64))
            .replace("TRACE_FILE", repr(trace[0] if trace else None))
            .replace("TOP", str(trace[1] if trace else 0)))
    cert = cert_key[0] if cert_key else None
    with server_process(textwrap.dedent(code)) as server:
        warm = connect(library, server.port, cert)  # imports, caches, the first thread
        before_rt = round_trip(warm)
        gc.collect()
        time.sleep(0.5)
        before = rss_bytes(server.pid)
        if trace:
            os.kill(server.pid, signal.SIGUSR1)  # the baseline
        per = -(-count // HOLDERS)
        holders = []
        started = time.perf_counter()
        for index in range(HOLDERS):
            n = min(per, count - index * per)
            if n <= 0:
                break
            args = [sys.executable, os.path.abspath(__file__), "--hold", library,
                    "--port", str(server.port), "--count", str(n)]
            if cert:
                args += ["--cert", cert]
            holders.append(subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            text=True, env=dict(os.environ, PYTHONPATH=ROOT)))
        try:
            held = 0
            for proc in holders:
                assert proc.stdout is not None
                line = proc.stdout.readline()  # "ready N", or "" if the holder failed
                held += int(line.split()[1]) if line.startswith("ready") else 0
            opened_s = time.perf_counter() - started
            time.sleep(1.0)  # let the server settle the last ones
            after = rss_bytes(server.pid)
            breakdown = _breakdown(server.pid, trace[0]) if trace else []
            cpu0 = cpu_seconds(server.pid)
            time.sleep(idle_s)
            idle_cpu = cpu_seconds(server.pid) - cpu0
            fresh = connect(library, server.port, cert)
            fresh_rt = round_trip(fresh)
            fresh.close()
        finally:
            for proc in holders:
                assert proc.stdin is not None
                proc.stdin.close()
            for proc in holders:
                proc.wait(WAIT)
            warm.close()
    return {"count": count, "held": held, "rss_before": before, "rss_after": after,
            "per_conn": (after - before) / max(1, held), "idle_cpu_s": idle_cpu,
            "idle_s": idle_s, "rt_before": before_rt, "rt_fresh": fresh_rt,
            "open_s": opened_s, "breakdown": breakdown}


def _breakdown(pid: int, path: str) -> list[tuple[int, int, str]]:
    """Ask the traced server for what it allocated since the baseline, by call site."""
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + WAIT
    while not os.path.exists(path):  # the server writes it whole, then renames it
        if time.monotonic() > deadline:
            raise RuntimeError("the traced server wrote no breakdown")
        time.sleep(0.1)
    rows = []
    with open(path) as lines:
        for line in lines:
            size, count, where = line.rstrip("\n").split(" ", 2)
            rows.append((int(size), int(count), where))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer connections (smoke run)")
    parser.add_argument("--count", type=int, default=1000,
                        help="idle connections for the memory per connection (default 1000)")
    parser.add_argument("--many", type=int, default=10_000,
                        help="idle connections on one ThreadedServer (default 10000)")
    parser.add_argument("--json", help="also write the figures to this file for bench/run.py")
    parser.add_argument("--trace", action="store_true",
                        help="only rpyc_ipy: where its memory per connection goes (tracemalloc)")
    parser.add_argument("--tls", action="store_true", help="with --trace: over TLS")
    parser.add_argument("--top", type=int, default=25, help="lines of the --trace breakdown")
    parser.add_argument("--hold", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cert", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.hold:
        hold(options.hold, options.port, options.count, options.cert)
        return 0
    if options.quick:
        options.count, options.many = min(options.count, 200), min(options.many, 2000)
    limit = raise_fd_limit()
    # each held connection is one fd in the server and one in a holder; the server also
    # needs a few of its own
    many = min(options.many, limit - 64)
    from bench_tls import make_certificate

    values: dict[str, float] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = make_certificate(Path(tmp))
        cert_key = (str(cert), str(key))
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; open-file limit "
              f"{limit}; {options.count} idle connections per server")
        if options.trace:
            trace_file = os.path.join(tmp, "trace.txt")
            result = measure("rpyc_ipy", cert_key if options.tls else None, options.count, 1.0,
                             (trace_file, options.top))
            print(f"  rpyc_ipy {'tls' if options.tls else 'plain'}: "
                  f"{result['per_conn'] / KiB:.1f} KiB per idle connection (RSS, traced); "
                  f"Python allocations by call site:")
            for size, count, where in result["breakdown"]:
                print(f"    {size / result['held']:7.0f} B  {count / result['held']:4.1f} blocks"
                      f"  {where}")
            return 0
        for library, short in (("rpyc_ipy", "ours"), ("rpyc", "rpyc"), ("floor", "floor")):
            for tls in (False, True):
                result = measure(library, cert_key if tls else None, options.count, 2.0)
                kind = "tls" if tls else "plain"
                values[f"idle_{kind}.{short}"] = result["per_conn"]
                values[f"idle_{kind}.{short}_held"] = result["held"]
                print(f"  {library:<9} {kind:<6} {result['per_conn'] / KiB:7.1f} KiB per idle "
                      f"connection ({result['held']} held; RSS {result['rss_before'] / MiB:.0f}"
                      f" -> {result['rss_after'] / MiB:.0f} MiB)")
        idle_s = 3.0 if options.quick else 10.0
        result = measure("rpyc_ipy", None, many, idle_s)
        for name in ("held", "rss_after", "rss_before", "idle_cpu_s", "idle_s", "rt_before",
                     "rt_fresh", "open_s"):
            values[f"many.{name}"] = result[name]
        values["many.wanted"] = options.many
        print(f"  {result['held']} idle connections on one rpyc_ipy ThreadedServer: RSS "
              f"{result['rss_after'] / MiB:.0f} MiB (before {result['rss_before'] / MiB:.0f} "
              f"MiB), server CPU {result['idle_cpu_s']:.2f} s over {idle_s:g} s idle; a fresh "
              f"client's round trip {result['rt_fresh'] * 1e6:.0f} us (before "
              f"{result['rt_before'] * 1e6:.0f} us)")
        if many < options.many:
            notes.append(f"Only {many} of {options.many} idle connections: the open-file hard "
                         f"limit here is {limit}.")
        if result["held"] < many:
            notes.append(f"The holders opened {result['held']} of {many} connections.")
    write_json(options.json, values, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
