"""Idle connections: the server memory each one costs, rpyc_ipy beside rpyc 6.0.2, in
plaintext and over TLS; then many idle connections held by one ThreadedServer while a
fresh client is served.

Each server runs in its own subprocess on 127.0.0.1 with its open-file limit raised to
the hard limit (``resource.setrlimit``); the idle connections are opened by holder
subprocesses (each one a real client: connected, the root fetched, then silent).
Memory per connection = (server RSS with the connections held - RSS before) / N.
With the connections held, a fresh client connects and makes round trips (their
median is printed beside the one before), and the server's CPU over a few idle
seconds shows whether anything polls.

    .venv/bin/python bench/bench_connections.py [--quick] [--count 1000] [--many 10000]
                                                [--json PATH]

A benchmark, not a test: it prints figures and asserts nothing on time.
"""

from __future__ import annotations

import argparse
import gc
import os
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


def connect(library: str, port: int, cert: str | None) -> Any:
    """A real client connection that has fetched its root (the server has set it up)."""
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


def measure(library: str, cert_key: tuple[str, str] | None, count: int, idle_s: float
            ) -> dict[str, float]:
    """Hold ``count`` idle connections on one server; its memory, CPU and a fresh client."""
    template = OUR_SERVER if library == "rpyc_ipy" else RPYC_SERVER
    auth = f"SSLAuthenticator({cert_key[1]!r}, {cert_key[0]!r})" if cert_key else "None"
    code = template.replace("AUTH", auth).replace("MAX", str(count + 64))
    cert = cert_key[0] if cert_key else None
    with server_process(textwrap.dedent(code)) as server:
        warm = connect(library, server.port, cert)  # imports, caches, the first thread
        before_rt = round_trip(warm)
        gc.collect()
        time.sleep(0.5)
        before = rss_bytes(server.pid)
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
            "open_s": opened_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer connections (smoke run)")
    parser.add_argument("--count", type=int, default=1000,
                        help="idle connections for the memory per connection (default 1000)")
    parser.add_argument("--many", type=int, default=10_000,
                        help="idle connections on one ThreadedServer (default 10000)")
    parser.add_argument("--json", help="also write the figures to this file for bench/run.py")
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
        for library, short in (("rpyc_ipy", "ours"), ("rpyc", "rpyc")):
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
