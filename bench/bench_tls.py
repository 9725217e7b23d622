"""Throughput of plain TCP, TLS (certificates) and TLS-SRP over loopback, side by side;
then round trips and 16 MiB echo over TLS, rpyc_ipy beside rpyc 6.0.2 and raw ssl.

Run:  .venv/bin/python bench/bench_tls.py [--size-mib 16] [--runs 5] [--pure-aes]
                                          [--quick] [--json PATH]

Each run opens a fresh connection on 127.0.0.1 (port 0), authenticates it with the
real rpyc_ipy authenticator (handshake timed separately), sends ``--size-mib`` MiB
client -> server through ``sendall``, reads it on the server with ``recv_into``,
and stops the clock when the server's one-byte acknowledgement arrives. The table
shows medians over ``--runs`` runs and the ratio to plain TCP. ``--pure-aes`` adds
a TLS-SRP row with tlslite-ng's own pure-Python AES (on 1/64 of the size, it is
that slow) to show what rpyc_ipy.auth.aes buys.

Part 2 runs each server in a subprocess: rpyc_ipy with TLS (stdlib ssl, certificates),
with TLS-SRP, and in plaintext; rpyc 6.0.2 with its SSLAuthenticator; a raw ssl echo.
It times a cached remote method's round trip (``add1``), a raw ssl ping-pong of 64
bytes (the floor), and a 16 MiB echo (MB/s = payload / round trip), medians of
alternating batches. The round trips that count (``tls_rt.*``) come from one client
process per peer holding one connection, as in real use: with four connections in
one process, busy polling (transports/spin.py) sees several conversations and stays
off, which hid ours; those figures are printed too (``tls_rt_shared.*``).

This is a benchmark, not a test: nothing here asserts on timing.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import ipaddress
import json
import os
import platform
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cryptography
import tlslite
from _common import alternating_medians, server_process, write_json
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rpyc_ipy.auth import aes
from rpyc_ipy.auth.srp_client import srp_client_socket
from rpyc_ipy.auth.srp_server import SRPAuthenticator
from rpyc_ipy.auth.tls_client import create_client_context, wrap_client_socket
from rpyc_ipy.auth.tls_server import SSLAuthenticator
from rpyc_ipy.auth.userdb import UserDB

WAIT = 120.0
MiB = 1024 * 1024

ServerAuth = Callable[[socket.socket], tuple[Any, Any]]
ClientWrap = Callable[[socket.socket], Any]


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for 127.0.0.1; returns (cert, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "bench.pem", directory / "bench.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def one_run(
    server_auth: ServerAuth, client_wrap: ClientWrap, payload: bytes
) -> tuple[float, float, str]:
    """(handshake seconds, transfer seconds, protocol) of one fresh connection."""
    size = len(payload)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(WAIT)
    errors: list[BaseException] = []
    received = bytearray(size)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            sock, _creds = server_auth(conn)
            sock.settimeout(WAIT)
            view, got = memoryview(received), 0
            while got < size:
                n = sock.recv_into(view[got:])
                if not n:
                    raise EOFError(f"EOF after {got} of {size} bytes")
                got += n
            sock.sendall(b"k")
            sock.close()
        except BaseException as exc:
            errors.append(exc)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        raw = socket.create_connection(listener.getsockname(), timeout=WAIT)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t0 = time.perf_counter()
        sock = client_wrap(raw)
        t1 = time.perf_counter()
        proto = "-"
        if hasattr(sock, "cipher"):
            name, version, _bits = sock.cipher()
            proto = f"{version} {name}"
        sock.sendall(payload)
        ack = bytearray(1)
        if sock.recv_into(ack) != 1:
            raise EOFError("no acknowledgement")
        t2 = time.perf_counter()
        sock.close()
        server.join(WAIT)
    finally:
        listener.close()
    if errors:
        raise errors[0]
    if received[:4096] != payload[:4096] or received[-4096:] != payload[-4096:]:
        raise AssertionError("data corrupted in transit")
    return t1 - t0, t2 - t1, proto


def measure(
    label: str, server_auth: ServerAuth, client_wrap: ClientWrap, payload: bytes, runs: int
) -> dict[str, Any]:
    one_run(server_auth, client_wrap, payload[: 64 * 1024])  # warm-up: imports, caches
    handshakes, transfers = [], []
    proto = "-"
    for _ in range(runs):
        hs, tr, proto = one_run(server_auth, client_wrap, payload)
        handshakes.append(hs)
        transfers.append(tr)
    rates = [len(payload) / t / 1e6 for t in transfers]
    return {
        "label": label,
        "size": len(payload),
        "handshake_ms": statistics.median(handshakes) * 1000,
        "mbps": statistics.median(rates),
        "min": min(rates),
        "max": max(rates),
        "proto": proto,
    }

SERVICE = """
class Bench(rpyc_ipy.Service):
    def exposed_add1(self, x):
        return x + 1

    def exposed_echo(self, data):
        return data
"""
OUR_TLS_SERVER = """
import rpyc_ipy
from rpyc_ipy.auth.tls_server import SSLAuthenticator
from rpyc_ipy.auth.srp_server import SRPAuthenticator
""" + SERVICE + """
server = rpyc_ipy.ThreadedServer(Bench, hostname="127.0.0.1", port=0, authenticator=AUTH,
                                 protocol_config={"sync_request_timeout": 600})
print(server.port, flush=True)
server.start()
"""
RPYC_TLS_SERVER = """
import rpyc
from rpyc.utils.authenticators import SSLAuthenticator
from rpyc.utils.server import ThreadedServer
""" + SERVICE.replace("rpyc_ipy.", "rpyc.") + """
server = ThreadedServer(Bench, hostname="127.0.0.1", port=0, auto_register=False,
                        authenticator=SSLAuthenticator(KEY, CERT),
                        protocol_config={"sync_request_timeout": 600})
server._listen()  # rpyc listens in start(): before the port is announced
print(server.port, flush=True)
server.start()
"""
RAW_SSL_SERVER = """
import socket, ssl, struct, threading
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(CERT, KEY)
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
def serve(raw):
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = context.wrap_socket(raw, server_side=True)
    while True:
        header = conn.recv(8)
        while header and len(header) < 8:
            header += conn.recv(8 - len(header))
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


def raw_ssl_client(port: int, cert: Path, payload: bytes) -> Callable[[], None]:
    """A length-prefixed echo over stdlib ssl into a preallocated buffer."""
    context = ssl.create_default_context(cafile=str(cert))
    raw = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
    size = len(payload)
    header = size.to_bytes(8, "big")
    view = memoryview(bytearray(size))

    def echo() -> None:
        sock.sendall(header + payload if size < 65536 else header)
        if size >= 65536:
            sock.sendall(payload)
        got = 0
        while got < 8:
            got += len(sock.recv(8 - got))
        got = 0
        while got < size:
            got += sock.recv_into(view[got:])

    return echo


SOLO_CLIENT = """
import json, sys, time
import rpyc, rpyc_ipy
kind, port, cert, window, number, repeat = sys.argv[1:7]
config = {"sync_request_timeout": 600}
if window != "default":
    config["busy_poll_window"] = float(window)
if kind == "ours":
    conn = rpyc_ipy.ssl_connect("127.0.0.1", int(port), ca_certs=cert, config=config)
elif kind == "srp":
    conn = rpyc_ipy.srp_connect("127.0.0.1", int(port), "bench", "bench password", config=config)
elif kind == "plain":
    conn = rpyc_ipy.connect("127.0.0.1", int(port), config=config)
else:
    conn = rpyc.ssl_connect("127.0.0.1", int(port), ca_certs=cert, config=config)
add1 = conn.root.add1
for _ in range(int(number)):  # warm-up
    add1(1)
times = []
for _ in range(int(repeat)):
    t0 = time.perf_counter()
    for _ in range(int(number)):
        add1(1)
    times.append((time.perf_counter() - t0) / int(number))
print(json.dumps(times))
conn.close()
"""


def solo_round_trips(ports: dict[str, int], cert: Path, rounds: int, number: int, repeat: int,
                     window: str = "default") -> dict[str, float]:
    """Median cached ``add1`` round trip of each peer (``ours``, ``srp``, ``plain``,
    ``rpyc``), each timed in a client process of its own holding ONE connection, as in
    real use (busy polling, transports/spin.py, judges a process's conversations); the
    peers take turns, ``rounds`` processes each. ``window``: the client's
    ``busy_poll_window`` ("default" leaves it)."""
    times: dict[str, list[float]] = {name: [] for name in ports}
    for _ in range(rounds):
        for name, port in ports.items():
            out = subprocess.run(
                [sys.executable, "-c", SOLO_CLIENT, name, str(port), str(cert), window,
                 str(number), str(repeat)],
                capture_output=True, text=True, timeout=WAIT * 5, check=True).stdout
            times[name].extend(json.loads(out))
    return {name: statistics.median(values) for name, values in times.items()}


def rpc_part(quick: bool) -> dict[str, float]:
    """Round trip and 16 MiB echo over TLS: rpyc_ipy, rpyc 6.0.2, raw ssl (see the docstring)."""
    import rpyc

    import rpyc_ipy

    number, repeat, big_repeat = (200, 5, 3) if quick else (500, 15, 7)
    values: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        cert, key = make_certificate(Path(tmp))
        db = UserDB.create(Path(tmp) / "users.json")
        db.add("bench", "bench password")
        paths = {"CERT": repr(str(cert)), "KEY": repr(str(key))}

        def start(code: str, **names: str) -> Any:
            for name, value in {**paths, **names}.items():
                code = code.replace(name, value)
            return stack.enter_context(server_process(textwrap.dedent(code)))

        tls = start(OUR_TLS_SERVER, AUTH=f"SSLAuthenticator({str(key)!r}, {str(cert)!r})")
        srp = start(OUR_TLS_SERVER, AUTH=f"SRPAuthenticator({str(Path(tmp) / 'users.json')!r})")
        plain = start(OUR_TLS_SERVER, AUTH="None")
        theirs = start(RPYC_TLS_SERVER)
        raw = start(RAW_SSL_SERVER)
        config = {"sync_request_timeout": 600}
        conns = {
            "ours": rpyc_ipy.ssl_connect("127.0.0.1", tls.port, ca_certs=str(cert),
                                         config=config),
            "srp": rpyc_ipy.srp_connect("127.0.0.1", srp.port, "bench", "bench password",
                                        config=config),
            "plain": rpyc_ipy.connect("127.0.0.1", plain.port, config=config),
            "rpyc": rpyc.ssl_connect("127.0.0.1", theirs.port, ca_certs=str(cert),
                                     config=config),
        }
        for conn in conns.values():
            stack.callback(conn.close)
        adds = {name: conn.root.add1 for name, conn in conns.items()}
        # four connections in this process: busy polling sees several conversations
        # and stays off, so these are blocking readers; kept as tls_rt_shared.*
        cases: dict[str, Callable[[], object]] = {
            f"tls_rt_shared.{name}": functools.partial(add, 1) for name, add in adds.items()}
        cases["tls_rt.floor"] = raw_ssl_client(raw.port, cert, b"x" * 64)
        values.update(alternating_medians(cases, repeat, number))
        ports = {"ours": tls.port, "srp": srp.port, "plain": plain.port, "rpyc": theirs.port}
        solo = solo_round_trips(ports, cert, 2 if quick else 4, number * 2, repeat // 2)
        values.update({f"tls_rt.{name}": value for name, value in solo.items()})
        payload = os.urandom(16 * MiB)
        echoes: dict[str, Callable[[], object]] = {
            f"tls_echo16.{name}": functools.partial(conn.root.echo, payload)
            for name, conn in conns.items()}
        echoes["tls_echo16.floor"] = raw_ssl_client(raw.port, cert, payload)
        for name, seconds in alternating_medians(echoes, big_repeat, 1).items():
            values[name] = len(payload) / seconds
    print(f"\nRPC over TLS: round trip (cached add1) with one connection per client process"
          f" (shared: four in one process, {repeat} alternating batches of {number});"
          f" 16 MiB echo, medians of {big_repeat}")
    for name in ("ours", "srp", "plain", "rpyc", "floor"):
        shared = values.get(f"tls_rt_shared.{name}", values[f"tls_rt.{name}"])
        echo = values[f"tls_echo16.{name}"] / 1e6
        print(f"  {name:<6} round trip {values[f'tls_rt.{name}'] * 1e6:8.1f} us (shared "
              f"{shared * 1e6:6.1f} us)   16 MiB echo {echo:8.0f} MB/s")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=float, default=16.0, help="MiB per transfer")
    parser.add_argument("--runs", type=int, default=5, help="runs per transport (median)")
    parser.add_argument(
        "--pure-aes", action="store_true", help="also time TLS-SRP with tlslite's Python AES"
    )
    parser.add_argument("--quick", action="store_true", help="fewer runs (smoke run)")
    parser.add_argument("--json", help="also write part 2's figures here for bench/run.py")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = min(args.runs, 3)
    payload = os.urandom(int(args.size_mib * MiB))

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        cert, key = make_certificate(d)
        tls_server = SSLAuthenticator(key, cert)
        tls_client_ctx = create_client_context(ca=cert)
        db = UserDB.create(d / "users.json")
        db.add("bench", "bench password")
        srp_server = SRPAuthenticator(db)

        def plain(sock: socket.socket) -> tuple[Any, Any]:
            return sock, None

        rows = [
            measure("plain TCP", plain, lambda s: s, payload, args.runs),
            measure(
                "TLS (certificate)",
                tls_server,
                lambda s: wrap_client_socket(s, "127.0.0.1", tls_client_ctx),
                payload,
                args.runs,
            ),
            measure(
                "TLS-SRP",
                srp_server,
                lambda s: srp_client_socket(s, "bench", "bench password"),
                payload,
                args.runs,
            ),
        ]
        if args.pure_aes:
            aes.uninstall()
            try:
                small = payload[: max(16384, len(payload) // 64)]
                row = measure(
                    "TLS-SRP, pure-Python AES",
                    srp_server,
                    lambda s: srp_client_socket(s, "bench", "bench password"),
                    small,
                    max(1, args.runs // 2),
                )
            finally:
                aes.install()
            rows.append(row)

    print(
        f"Python {platform.python_version()} on {platform.machine()}, {ssl.OPENSSL_VERSION}, "
        f"tlslite-ng {tlslite.__version__}, cryptography {cryptography.__version__}"
    )
    print(f"{args.runs} runs each, medians; loopback 127.0.0.1\n")
    base = rows[0]["mbps"]
    head = (
        f"{'transport':<26}{'size':>10}{'handshake':>12}{'MB/s':>10}{'(min-max)':>18}"
        f"{'vs TCP':>9}  protocol"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        size = f"{r['size'] / MiB:.2f} MiB"
        spread = f"({r['min']:.1f}-{r['max']:.1f})"
        print(
            f"{r['label']:<26}{size:>10}{r['handshake_ms']:>10.1f}ms{r['mbps']:>10.1f}"
            f"{spread:>18}{r['mbps'] / base:>9.3f}  {r['proto']}"
        )
    values = rpc_part(args.quick)
    for r in rows:
        values[f"transport16.{r['label']}"] = r["mbps"] * 1e6
    write_json(args.json, values, [f"TLS: {rows[1]['proto']}; TLS-SRP: {rows[2]['proto']}"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
