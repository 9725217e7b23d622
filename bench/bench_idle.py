"""Idle connections: server memory per idle client, rpyc_ipy beside rpyc 6.0.2 in one run.

Each server runs alone in a subprocess (a ``ThreadedServer`` with ``add``); the
driver opens ``--connections`` clients on raw sockets, each sends one request
(GETROOT, so the server counts it as established) and reads the reply, then
stays silent. The server's RSS before and after gives the memory per idle
connection; then a fresh client connects with its library and calls ``add``
while the others stay open (it must be served).

    .venv/bin/python bench/bench_idle.py [--connections 1000] [--tls] [--only rpyc_ipy]
    .venv/bin/python bench/bench_idle.py --connections 10000 --only rpyc_ipy
    .venv/bin/python bench/bench_idle.py --trace   # where rpyc_ipy's bytes go (tracemalloc)

RSS moves in pages and the allocator keeps freed memory: compare the libraries,
not the absolute figures.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from rpyc_ipy.protocol import consts  # noqa: E402
from rpyc_ipy.protocol.engine import Engine  # noqa: E402

WAIT = 120.0
_HEADER = struct.Struct(">IB")

# the server side: prints its port, then answers commands on stdin
_SERVER_COMMON = """
import gc, os, sys, threading
def status():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return int(fields["VmRSS"].split()[0]), int(fields["Threads"])
def serve_commands(snapshot=None):
    for line in sys.stdin:
        command = line.strip()
        gc.collect()
        if command == "status":
            rss, threads = status()
            print(rss, threads, flush=True)
        elif command == "snap" and snapshot is not None:
            print(snapshot(), flush=True)
    os._exit(0)
"""

SERVERS = {
    "rpyc_ipy": """
import tracemalloc
TRACE = {trace!r}
if TRACE:
    tracemalloc.start(8)
import rpyc_ipy
class Idle(rpyc_ipy.Service):
    def exposed_add(self, a, b):
        return a + b
kwargs = {{}}
if {tls!r}:
    from rpyc_ipy.auth.tls_server import SSLAuthenticator
    kwargs["authenticator"] = SSLAuthenticator({key!r}, {cert!r})
server = rpyc_ipy.ThreadedServer(Idle, hostname="127.0.0.1", port=0,
                                 max_connections=100000, **kwargs)
snaps = []
def snapshot():
    snaps.append(tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]))
    if len(snaps) < 2:
        return "ok"
    stats = snaps[-1].compare_to(snaps[-2], "traceback")
    lines = []
    for stat in stats[:{top}]:
        where = " < ".join(f"{{f.filename.rpartition('/')[2]}}:{{f.lineno}}"
                           for f in reversed(stat.traceback[-5:]))
        lines.append(f"{{stat.size_diff}}|{{stat.count_diff}}|{{where}}")
    return "\\t".join(lines)
threading.Thread(target=serve_commands, args=(snapshot,), daemon=True).start()
print(server.port, flush=True)
server.start()
""",
    "rpyc 6.0.2": """
import rpyc
from rpyc.utils.server import ThreadedServer
class Idle(rpyc.Service):
    def exposed_add(self, a, b):
        return a + b
kwargs = {{}}
if {tls!r}:
    from rpyc.utils.authenticators import SSLAuthenticator
    kwargs["authenticator"] = SSLAuthenticator({key!r}, {cert!r})
server = ThreadedServer(Idle, hostname="127.0.0.1", port=0, auto_register=False, **kwargs)
server._listen()
threading.Thread(target=serve_commands, daemon=True).start()
print(server.port, flush=True)
server.start()
""",
}


class Server:
    def __init__(self, library: str, tls: tuple[Path, Path] | None, trace: bool, top: int
                 ) -> None:
        cert, key = (str(tls[0]), str(tls[1])) if tls else (None, None)
        code = textwrap.dedent(_SERVER_COMMON) + textwrap.dedent(SERVERS[library]).format(
            tls=tls is not None, cert=cert, key=key, trace=trace, top=top)
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True,
                                     env=dict(os.environ, PYTHONPATH=ROOT))
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip():
            self.proc.kill()
            raise RuntimeError(f"the {library} server did not start")
        self.port = int(line)

    def ask(self, command: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def status(self) -> tuple[int, int]:
        rss, threads = self.ask("status").split()
        return int(rss), int(threads)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(WAIT)


def _request_frame() -> bytes:
    _seq, parts = Engine().request(consts.HANDLE_GETROOT, ())
    return b"".join(parts)


def _read_exactly(sock: Any, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the server closed an idle client")
        data += chunk
    return bytes(data)


def open_idle(port: int, count: int, context: ssl.SSLContext | None) -> list[Any]:
    """``count`` clients that each made one request and now sit idle."""
    request = _request_frame()
    clients: list[Any] = []
    for _ in range(count):
        sock: Any = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        if context is not None:
            sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
        sock.sendall(request)
        length, _flag = _HEADER.unpack(_read_exactly(sock, _HEADER.size))
        _read_exactly(sock, length + 1)
        clients.append(sock)
    return clients


def fresh_client(library: str, port: int, cert: Path | None) -> float:
    """Seconds a new client takes to connect and call ``add`` (it must be served)."""
    start = time.perf_counter()
    if library == "rpyc_ipy":
        import rpyc_ipy

        if cert is None:
            conn: Any = rpyc_ipy.connect("127.0.0.1", port)
        else:
            conn = rpyc_ipy.ssl_connect("127.0.0.1", port, ca_certs=str(cert))
    else:
        import rpyc

        if cert is None:
            conn = rpyc.connect("127.0.0.1", port)
        else:
            conn = rpyc.ssl_connect("127.0.0.1", port, ca_certs=str(cert))
    try:
        if conn.root.add(20, 22) != 42:
            raise AssertionError("the fresh client got a wrong answer")
    finally:
        conn.close()
    return time.perf_counter() - start


def measure(library: str, count: int, tls: tuple[Path, Path] | None, trace: bool, top: int
            ) -> dict[str, Any]:
    server = Server(library, tls, trace, top)
    context = None
    if tls is not None:
        context = ssl.create_default_context(cafile=str(tls[0]))
    try:
        for sock in open_idle(server.port, 20, context):  # warm up: pools, imports, caches
            sock.close()
        time.sleep(1.0)
        if trace:
            server.ask("snap")
        rss0, threads0 = server.status()
        start = time.perf_counter()
        clients = open_idle(server.port, count, context)
        opened = time.perf_counter() - start
        time.sleep(1.0)  # handshake threads end
        rss1, threads1 = server.status()
        breakdown = server.ask("snap").split("\t") if trace else []
        fresh = fresh_client(library, server.port, tls[0] if tls else None)
        still = server.status()
        for sock in clients:
            sock.close()
    finally:
        server.close()
    return {"library": library + (" TLS" if tls else ""), "count": count,
            "rss0": rss0, "rss1": rss1, "per_conn_kib": (rss1 - rss0) / count,
            "threads": threads1 - threads0, "open_s": opened, "fresh_s": fresh,
            "rss_after_fresh": still[0], "breakdown": breakdown}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--tls", action="store_true", help="also measure TLS (certificates)")
    parser.add_argument("--only", choices=sorted(SERVERS), help="one library only")
    parser.add_argument("--trace", action="store_true",
                        help="print where rpyc_ipy's memory per connection goes (tracemalloc)")
    parser.add_argument("--top", type=int, default=15, help="lines of the --trace breakdown")
    options = parser.parse_args()
    libraries = [options.only] if options.only else list(SERVERS)
    if options.trace:
        libraries = ["rpyc_ipy"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tls_files = None
        if options.tls:
            from bench_tls import make_certificate

            tls_files = make_certificate(Path(tmp))
        for library in libraries:
            rows.append(measure(library, options.connections, None, options.trace, options.top))
            if tls_files is not None:
                rows.append(measure(library, options.connections, tls_files, options.trace,
                                    options.top))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f}; {options.connections} idle connections per server")
    print(f"{'server':<16} {'KiB/conn':>9} {'RSS before':>11} {'RSS idle':>10} "
          f"{'threads+':>8} {'open s':>7} {'fresh client':>13}")
    for row in rows:
        print(f"{row['library']:<16} {row['per_conn_kib']:>9.1f} {row['rss0'] / 1024:>8.1f}MiB "
              f"{row['rss1'] / 1024:>7.1f}MiB {row['threads']:>8} {row['open_s']:>7.1f} "
              f"{row['fresh_s'] * 1000:>10.1f} ms")
        for line in row["breakdown"]:
            size, count, where = line.split("|", 2)
            print(f"    {int(size) / options.connections:>8.0f} B/conn "
                  f"{int(count) / options.connections:>6.1f} blocks  {where}")
    by_name = {row["library"]: row for row in rows}
    for suffix in ("", " TLS"):
        ours, theirs = by_name.get("rpyc_ipy" + suffix), by_name.get("rpyc 6.0.2" + suffix)
        if ours and theirs and ours["per_conn_kib"] > 0:
            print(f"memory per idle connection{suffix}: rpyc / ours = "
                  f"x{theirs['per_conn_kib'] / ours['per_conn_kib']:.2f} (> 1: ours is smaller)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
