"""File upload speed and memory: a session's ``upload`` against a raw socket and raw TLS.

Run:  .venv/bin/python bench/bench_files.py [--quick] [--size-mib 1024] [--runs 3]

One file (``--size-mib``, default 1 GiB; ``--quick``: 64 MiB) goes client -> server,
written to disk there, over loopback:

* raw TCP: the file read in 4 MiB blocks and ``sendall``-ed; the server ``recv_into``-s
  and writes to a file, then acknowledges (the floor: no protocol, no checksum);
* rpyc_ipy, plain: ``RemoteSession.upload`` to an execution server (loopback demo
  mode), through the data channel the server relays to the session's worker;
  chunked, pipelined, SHA-256 on both sides, ``.part`` then rename;
* raw TLS: as raw TCP through stdlib ``ssl`` (TLS 1.3, a self-signed certificate);
* rpyc_ipy, TLS: ``upload`` over a TLS session to the same kind of server;
* rpyc 6.0.2: ``rpyc.classic.upload`` to an rpyc classic server, for reference
  (on 8 MiB: it writes in small synchronous chunks).

Medians over ``--runs`` runs (raw and ours alternate), the ratio of each rpyc_ipy
row to its floor, the CPU seconds each spent (all its processes: a figure the
machine's other load disturbs less than the clock), and the peak growth of resident
memory during an rpyc_ipy upload (client, server, session worker; sampled from /proc
every 2 ms) against the file size. Files live in a temporary folder, deleted at the end.

Each side writes into a file whose previous copy is gone (the floor truncates, ours
is deleted before its run) and one untimed run of each comes first: otherwise the
figures measure the page cache, not the transfer. A write into pages the machine
has not touched yet (a virtual machine's host backs them on first touch), or beside
a 1 GiB previous copy still on disk, costs more kernel time in ``pwrite`` than the
rest of the upload together, and lands on whichever case happens to run first.

This is a benchmark, not a test: nothing here asserts on timing.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import rpyc_classic_server, server_process
from bench_tls import make_certificate

MiB = 1 << 20
BLOCK = 4 * MiB
WAIT = 600.0

# the floor's receiver: size (8 bytes), then the bytes, written to DEST; one ack byte
RAW_SERVER = '''
import os, socket, ssl, sys
dest, cert, key = sys.argv[1], sys.argv[2], sys.argv[3]
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
context = None
if cert:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
buffer = bytearray(4 << 20)
while True:
    conn, _ = listener.accept()
    if context is not None:
        conn = context.wrap_socket(conn, server_side=True)
    head = b""
    while len(head) < 8:
        head += conn.recv(8 - len(head))
    left = int.from_bytes(head, "big")
    with open(dest, "wb") as sink:
        view = memoryview(buffer)
        while left:
            n = conn.recv_into(view[:min(left, len(buffer))])
            if not n:
                break
            sink.write(view[:n])
            left -= n
    conn.sendall(b"k")
    conn.close()
'''

# an execution server whose sessions may write in DEST's folder; TLS with CERT/KEY if given
RPYC_IPY_SERVER = '''
import sys
import rpyc_ipy
from rpyc_ipy.remote import ExecutionService, RuntimeSettings, SessionRegistry
folder, cert, key = sys.argv[1], sys.argv[2], sys.argv[3]
registry = SessionRegistry(RuntimeSettings(file_roots=(folder,)))
service = ExecutionService.configured(allow_loopback_plaintext=True, registry=registry)
auth = rpyc_ipy.SSLAuthenticator(key, cert) if cert else None
server = rpyc_ipy.ThreadedServer(service, hostname="127.0.0.1", port=0, authenticator=auth,
                                 channel_handler=service.channel_handler())
print(server.port, flush=True)
server.start()
'''

RPYC_SERVER = rpyc_classic_server(600)


@contextmanager
def server(code: str, *args: str) -> Iterator[Any]:
    """``_common.server_process`` with arguments for the script."""
    source = f"import sys; sys.argv[1:] = {list(args)!r}\n{code}"
    with server_process(source) as proc:
        yield proc


def raw_upload(port: int, path: Path, context: ssl.SSLContext | None) -> float:
    """Seconds to send ``path`` to the floor's receiver and get its ack."""
    size = path.stat().st_size
    started = time.perf_counter()
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    if context is not None:
        sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
    with sock, open(path, "rb") as source:
        sock.sendall(size.to_bytes(8, "big"))
        while block := source.read(BLOCK):
            sock.sendall(block)
        if sock.recv(1) != b"k":
            raise RuntimeError("the raw receiver did not acknowledge")
    return time.perf_counter() - started


class PeakRSS:
    """Peak resident memory growth of some processes while it runs (2 ms samples)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.base = {name: _rss(pid) for name, pid in pids.items()}
        self.peak = dict(self.base)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], _rss(pid))

    def growth(self) -> dict[str, int]:
        return {name: self.peak[name] - self.base[name] for name in self.pids}


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def make_file(path: Path, size: int) -> None:
    block = os.urandom(MiB)
    with open(path, "wb") as sink:
        for _ in range(size // MiB):
            sink.write(block)


def session_for(port: int, cert: str | None) -> Any:
    from rpyc_ipy.ipython.session import open_session
    from rpyc_ipy.target import ConnectionTarget

    target = ConnectionTarget("127.0.0.1", port, ca=cert, session_name="bench",
                              timeout=60.0) if cert else \
        ConnectionTarget("127.0.0.1", port, session_name="bench", timeout=60.0)
    return open_session(target)


Timing = tuple[float, float]  # (wall-clock seconds, CPU seconds of every process involved)
Row = tuple[str, float, float, float, float]


def measure(name: str, ours: Callable[[], Timing], floor: Callable[[], Timing], runs: int
            ) -> Row:
    """Medians: ``(name, ours wall, floor wall, ours CPU, floor CPU)``."""
    ours_runs, floor_runs = [], []
    floor()  # a warm-up of each, not counted: the first writes of a fresh machine's page
    ours()   # cache cost more (the host backs guest memory on first touch)
    for _ in range(runs):
        floor_runs.append(floor())
        ours_runs.append(ours())
    return (name, statistics.median(t[0] for t in ours_runs),
            statistics.median(t[0] for t in floor_runs),
            statistics.median(t[1] for t in ours_runs),
            statistics.median(t[1] for t in floor_runs))


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time so far of ``pids`` (all their threads)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="64 MiB, 1 run")
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    size = (64 if args.quick else args.size_mib) * MiB
    runs = 1 if args.quick else args.runs
    rows: list[Row] = []
    memory: list[tuple[str, dict[str, int]]] = []
    with tempfile.TemporaryDirectory(prefix="bench_files_") as tmp:
        folder = Path(tmp)
        (folder / "in").mkdir()
        source = folder / "source.bin"
        make_file(source, size)
        cert, key = (str(p) for p in make_certificate(folder))
        client_context = ssl.create_default_context(cafile=cert)
        dest = str(folder / "in")
        for label, tls in (("plain TCP", False), ("TLS", True)):
            with server(RAW_SERVER, str(folder / "in" / "raw.bin"),
                        cert if tls else "", key if tls else "") as raw, \
                    server(RPYC_IPY_SERVER, dest, cert if tls else "", key if tls else "") as srv:
                session = session_for(srv.port, cert if tls else None)
                pids = {"client": os.getpid(), "server": srv.pid,
                        "worker": int(session.status().get("pid") or 0)}

                def ours(session: Any = session, pids: dict[str, int] = pids,
                         label: str = label) -> Timing:
                    # as the floor's open(..., "wb") drops its previous copy first: an
                    # upload over an existing file keeps it until the new one is
                    # verified, which costs the page cache a second copy, not the wire
                    Path(f"{dest}/ours.bin").unlink(missing_ok=True)
                    with PeakRSS(pids) as peak:
                        cpu = cpu_seconds(list(pids.values()))
                        started = time.perf_counter()
                        session.upload(str(source), f"{dest}/ours.bin")
                        seconds = time.perf_counter() - started
                        cpu = cpu_seconds(list(pids.values())) - cpu
                    memory.append((label, peak.growth()))
                    return seconds, cpu

                def floor(port: int = raw.port, tls: bool = tls) -> Timing:
                    cpu = cpu_seconds([os.getpid(), raw.pid])
                    seconds = raw_upload(port, source, client_context if tls else None)
                    return seconds, cpu_seconds([os.getpid(), raw.pid]) - cpu

                rows.append(measure(f"upload over {label}", ours, floor, runs))
                session.end()
        report(rows, memory, size, runs)
        rpyc_row = rpyc_reference(folder, source, min(size, 8 * MiB))
    if rpyc_row is not None:
        mib, seconds = rpyc_row
        ours_rate = size / MiB / rows[0][1]
        print(f"rpyc 6.0.2 classic.upload: {mib / seconds:.1f} MiB/s on {mib} MiB; rpyc_ipy "
              f"plain moves {ours_rate / (mib / seconds):.0f}x as fast")
    return 0


def report(rows: list[Row], memory: list[tuple[str, dict[str, int]]],
           size: int, runs: int) -> None:
    print(f"file upload over loopback, {size // MiB} MiB, median of {runs} run(s); "
          f"Python {platform.python_version()}, {ssl.OPENSSL_VERSION}")
    print(f"{'case':<22} {'rpyc_ipy':>9} {'floor':>9} {'MiB/s ours':>11} {'MiB/s floor':>12} "
          f"{'ours/floor':>10} {'CPU s ours':>11} {'CPU s floor':>12}")
    for name, ours_t, floor_t, ours_cpu, floor_cpu in rows:
        print(f"{name:<22} {ours_t:8.2f}s {floor_t:8.2f}s {size / MiB / ours_t:11.0f} "
              f"{size / MiB / floor_t:12.0f} {floor_t / ours_t:10.0%} {ours_cpu:11.2f} "
              f"{floor_cpu:12.2f}")
    print("(ours/floor: the rate of rpyc_ipy as a share of the floor's; CPU s: user+system "
          "seconds of all processes of each side: client, server, worker / client, receiver)")
    print("peak resident memory growth during an rpyc_ipy upload, the largest of the runs "
          f"(file size {size // MiB} MiB):")
    largest: dict[str, dict[str, int]] = {}
    for label, growth in memory:
        mine = largest.setdefault(label, {})
        for name, value in growth.items():
            mine[name] = max(value, mine.get(name, 0))
    for label, growth in largest.items():
        print(f"  {label:<10} " + ", ".join(f"{name} {value / MiB:+.1f} MiB"
                                              for name, value in growth.items()), flush=True)


def rpyc_reference(folder: Path, source: Path, size: int) -> tuple[int, float] | None:
    """rpyc 6.0.2's ``classic.upload`` of the first ``size`` bytes, if rpyc is installed."""
    try:
        import rpyc
    except ImportError:
        return None
    part = folder / "part.bin"
    with open(source, "rb") as whole, open(part, "wb") as sink:
        sink.write(whole.read(size))
    with server(RPYC_SERVER) as srv:
        conn = None
        for _ in range(100):  # rpyc's server listens only once start() runs, after the port line
            try:
                conn = rpyc.classic.connect("127.0.0.1", srv.port)
                break
            except ConnectionRefusedError:
                time.sleep(0.05)
        if conn is None:
            raise RuntimeError("the rpyc 6.0.2 server did not listen")
        try:
            started = time.perf_counter()
            rpyc.classic.upload(conn, str(part), str(folder / "in" / "rpyc.bin"))
            seconds = time.perf_counter() - started
        finally:
            conn.close()
    return size // MiB, seconds


if __name__ == "__main__":
    raise SystemExit(main())
