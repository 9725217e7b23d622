"""The hot paths of issue 17, side by side in one run: calls, callbacks, classic, bulk, TLS.

    .venv/bin/python bench/bench_hotpath.py [--quick] [--only NAME,...] [--calls]

Servers run in subprocesses on 127.0.0.1 (port 0): rpyc_ipy plain, TLS and
TLS-SRP, a raw TCP and a raw stdlib-ssl echo (the floors). Each row is the median
of alternating batches, so the noise of a shared machine falls on all sides alike;
read the ratios, not the absolute times. ``--calls`` also counts the Python
calls (``sys.setprofile``) the client makes per operation: on a noisy machine
the steadiest measure of the hot path.
"""

from __future__ import annotations

import argparse
import functools
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

SERVER = """
import sys
sys.path.insert(0, {root!r})
import rpyc_ipy
from rpyc_ipy.auth.tls_server import SSLAuthenticator
from rpyc_ipy.auth.srp_server import SRPAuthenticator
class Bench(rpyc_ipy.Service):
    def exposed_add1(self, x):
        return x + 1
    def exposed_echo(self, data):
        return data
    def exposed_m(self, cb, i):
        return cb(i)
kind = {kind!r}
auth = None
if kind == "tls":
    auth = SSLAuthenticator({key!r}, {cert!r})
elif kind == "srp":
    auth = SRPAuthenticator({users!r})
service = rpyc_ipy.SlaveService if kind == "classic" else Bench
server = rpyc_ipy.ThreadedServer(service, port=0, authenticator=auth,
                                 protocol_config={{"sync_request_timeout": 600}})
print(server.port, flush=True)
server.start()
"""

RAW_ECHO_SERVER = """
import socket, ssl, struct, threading
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(8)
print(listener.getsockname()[1], flush=True)
context = None
if {tls!r}:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain({cert!r}, {key!r})
def recv_exact(conn, view):
    got = 0
    while got < len(view):
        n = conn.recv_into(view[got:])
        if not n:
            raise EOFError
        got += n
def serve(conn):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if context is not None:
        conn = context.wrap_socket(conn, server_side=True)
    header = bytearray(8)
    buffers = {{}}  # one buffer per size, reused: the floor pays no page faults
    try:
        while True:
            recv_exact(conn, memoryview(header))
            (size,) = struct.unpack(">Q", header)
            data = buffers.setdefault(size, bytearray(size))
            recv_exact(conn, memoryview(data))
            conn.sendall(header)
            if size:
                conn.sendall(data)
    except (EOFError, OSError):
        return
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


def start(code: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("benchmark server did not start")
    return proc, int(line)


def raw_client(port: int, context: ssl.SSLContext | None) -> Callable[[bytes], None]:
    sock: Any = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if context is not None:
        sock = context.wrap_socket(sock, server_hostname="127.0.0.1")

    buffers: dict[int, bytearray] = {}  # reused, as the server's: no page faults

    def echo(payload: bytes) -> None:
        sock.sendall(len(payload).to_bytes(8, "big"))
        if payload:
            sock.sendall(payload)
        buffer = buffers.setdefault(len(payload), bytearray(8 + len(payload)))
        view, got = memoryview(buffer), 0
        while got < len(buffer):
            n = sock.recv_into(view[got:])
            if not n:
                raise EOFError("raw echo server closed")
            got += n
    return echo


def alternate(funcs: dict[str, Callable[[], Any]], number: int, repeat: int
              ) -> dict[str, float]:
    """Median seconds per call of each function, measured in alternating batches."""
    for func in funcs.values():
        func()
    times: dict[str, list[float]] = {name: [] for name in funcs}
    for _ in range(repeat):
        for name, func in funcs.items():
            begin = time.perf_counter()
            for _ in range(number):
                func()
            times[name].append((time.perf_counter() - begin) / number)
    return {name: statistics.median(values) for name, values in times.items()}


def count_calls(func: Callable[[], Any], number: int = 50) -> float:
    """Python function calls made by this thread per call of ``func``."""
    func()
    calls = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    sys.setprofile(profile)
    try:
        for _ in range(number):
            func()
    finally:
        sys.setprofile(None)
    return calls / number


def _status_mib(pid: int, field: str) -> int:
    """A memory figure of process ``pid`` from /proc (Linux), in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) // 1024
    raise KeyError(field)


def make_certificate(directory: Path) -> tuple[str, str]:
    from bench_tls import make_certificate as make

    cert, key = make(directory)
    return str(cert), str(key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--calls", action="store_true", help="count Python calls per operation")
    parser.add_argument("--only", default="call,bulk,tls,srp",
                        help="comma-separated groups: call, bulk, tls, srp")
    options = parser.parse_args()
    groups = set(options.only.split(","))
    calls, repeat = (200, 5) if options.quick else (500, 9)
    big_repeat = 3 if options.quick else 5

    import rpyc_ipy
    from rpyc_ipy.auth.userdb import UserDB

    procs: list[subprocess.Popen[str]] = []
    tmp = tempfile.TemporaryDirectory()
    try:
        cert, key = make_certificate(Path(tmp.name))
        users = os.path.join(tmp.name, "users.json")
        UserDB.create(users).add("bench", "bench password")

        def server(kind: str) -> int:
            proc, port = start(SERVER.format(root=ROOT, kind=kind, key=key, cert=cert,
                                             users=users))
            procs.append(proc)
            return port

        def raw(tls: bool) -> int:
            proc, port = start(RAW_ECHO_SERVER.format(tls=tls, cert=cert, key=key))
            procs.append(proc)
            return port

        config = {"sync_request_timeout": 600}
        plain_port = server("plain")
        plain = rpyc_ipy.connect("127.0.0.1", plain_port, config=config)
        classic = rpyc_ipy.classic.connect("127.0.0.1", server("classic"), config=config)
        raw_tcp = raw_client(raw(False), None)
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load "
              f"{os.getloadavg()[0]:.1f}; medians of {repeat} alternating batches")
        counter = iter(range(10**9))
        results: dict[str, float] = {}

        def row(name: str, value: float, base: str | None = None, unit: str = "us") -> None:
            results[name] = value
            text = f"{value * 1e6:9.1f} us" if unit == "us" else f"{value:9.1f} MB/s"
            ratio = f"   {value / results[base]:5.2f}x {base}" if base else ""
            print(f"{name:<34}{text}{ratio}")

        if "call" in groups:
            root = plain.root
            os_module = classic.modules.os
            cb = lambda x: x  # noqa: E731
            ops = {
                "add1": lambda: root.add1(next(counter)),
                "callback m(cb, i)": lambda: root.m(cb, next(counter)),
                "classic modules.os.getpid()": lambda: os_module.getpid(),
                "raw TCP ping-pong": lambda: raw_tcp(b""),
            }
            got = alternate(ops, calls, repeat)
            row("add1", got["add1"])
            row("raw TCP ping-pong", got["raw TCP ping-pong"], "add1")
            row("callback m(cb, i)", got["callback m(cb, i)"], "add1")
            row("classic modules.os.getpid()", got["classic modules.os.getpid()"], "add1")
            if options.calls:
                for name in ("add1", "callback m(cb, i)", "classic modules.os.getpid()"):
                    print(f"{'  Python calls per ' + name:<34}{count_calls(ops[name]):9.0f}")

        def rate(size: int, seconds: float) -> float:
            return size / seconds / 1e6  # payload bytes echoed per second

        if "bulk" in groups:
            for size in (1 << 20, 16 << 20):
                payload = os.urandom(size)
                number = 20 if size == 1 << 20 else 1
                got = alternate({"ours": functools.partial(plain.root.echo, payload),
                                 "raw": functools.partial(raw_tcp, payload)}, number,
                                big_repeat)
                label = f"{size >> 20} MiB echo"
                row(f"{label} raw TCP", rate(size, got["raw"]), unit="MB/s")
                row(f"{label} rpyc_ipy", rate(size, got["ours"]), f"{label} raw TCP", "MB/s")
            if sys.platform == "linux":
                huge = os.urandom(128 << 20)
                pid = procs[0].pid  # the plain server
                idle = _status_mib(pid, "VmRSS")
                begin = time.perf_counter()
                assert plain.root.echo(huge) == huge
                took = time.perf_counter() - begin
                print(f"{'128 MiB echo':<34}{took * 1e3:9.0f} ms   server peak memory over "
                      f"idle: {_status_mib(pid, 'VmHWM') - idle} MiB (payload: 128 MiB)")

        if "tls" in groups:
            from rpyc_ipy.auth.tls_client import create_client_context

            tls = rpyc_ipy.ssl_connect("127.0.0.1", server("tls"), ca_certs=cert, config=config)
            raw_ssl = raw_client(raw(True), create_client_context(ca=cert))
            tls_root, plain_root = tls.root, plain.root
            got = alternate({"plain": lambda: plain_root.add1(next(counter)),
                             "tls": lambda: tls_root.add1(next(counter)),
                             "raw": lambda: raw_ssl(b"")}, calls, repeat)
            row("plain add1 (again)", got["plain"])
            row("TLS add1", got["tls"], "plain add1 (again)")
            row("raw ssl ping-pong", got["raw"], "plain add1 (again)")
            payload = os.urandom(16 << 20)
            got = alternate({"ours": lambda: tls.root.echo(payload),
                             "raw": lambda: raw_ssl(payload)}, 1, big_repeat)
            row("TLS 16 MiB echo raw ssl", rate(len(payload), got["raw"]), unit="MB/s")
            row("TLS 16 MiB echo rpyc_ipy", rate(len(payload), got["ours"]),
                "TLS 16 MiB echo raw ssl", "MB/s")
            if options.calls:
                print(f"{'  Python calls per TLS add1':<34}"
                      f"{count_calls(lambda: tls_root.add1(next(counter))):9.0f}")
            tls.close()

        if "srp" in groups:
            srp = rpyc_ipy.srp_connect("127.0.0.1", server("srp"), "bench", "bench password",
                                       config=config)
            srp_root, plain_root = srp.root, plain.root
            add_srp, add_plain = srp_root.add1, plain_root.add1
            got = alternate({"plain": lambda: add_plain(next(counter)),
                             "srp": lambda: add_srp(next(counter))}, calls, repeat)
            row("plain cached add1", got["plain"])
            row("TLS-SRP cached add1", got["srp"], "plain cached add1")
            payload = os.urandom(16 << 20)
            got = alternate({"ours": lambda: srp.root.echo(payload)}, 1, big_repeat)
            row("TLS-SRP 16 MiB echo rpyc_ipy", rate(len(payload), got["ours"]), unit="MB/s")
            if options.calls:
                print(f"{'  Python calls per SRP add1':<34}"
                      f"{count_calls(lambda: add_srp(next(counter))):9.0f}")
            srp.close()
        plain.close()
        classic.close()
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        tmp.cleanup()


if __name__ == "__main__":
    main()
