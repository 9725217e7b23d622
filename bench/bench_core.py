"""Round trips, callbacks and bulk echo: rpyc_ipy beside rpyc 6.0.2, Pyro5 and the raw
floors, all in one run.

Every server runs in its own subprocess on 127.0.0.1 (client and server do not share
a GIL); the clients run here. Cases take turns batch by batch, so the noise of a
shared machine falls on all of them alike; the figures are medians of the batches.

* ``add1``: ``conn.root.add1(i)``; Pyro5 (marshal serializer) ``proxy.add1(i)``; the
  floor is a raw TCP ping-pong of a 64-byte message between two processes.
* ``callback``: ``conn.root.call(cb, i)``: the server calls the client's ``cb(i)`` back.
* ``getpid``: classic ``conn.modules.os.getpid()`` (the module netref is cached).
* 1 MiB and 16 MiB echo: ``conn.root.echo(payload)``; rpyc both with its defaults and
  with zlib off + TCP_NODELAY (as the independent run did); Pyro5 (marshal); the raw
  floor is a length-prefixed echo into a preallocated buffer (``recv_into``).
  MB/s = payload bytes / round-trip time (one direction counted, as both runs did).
* Reconciling "30% vs 59% of raw" (16 MiB): the raw echo both ways (``recv_into`` a
  preallocated buffer, and naive ``recv`` + ``join``), a raw one-way transfer (the server
  reads the payload and answers with its length), rpyc_ipy's echo of the same
  payload object every time and of a fresh ``bytes`` each time, random and zero bytes.
* Memory during a 128 MiB echo: how much each side's peak RSS grows past what it held
  before (Linux: the peak is reset through ``/proc/<pid>/clear_refs`` first), beyond
  the 128 MiB that each side must hold anyway (the server the request's payload, the
  client the reply); rpyc with zlib off + TCP_NODELAY, Pyro5 and the raw echo.
* CPU per call (``add1``), client (``getrusage``) and server (``/proc/<pid>/stat``),
  rpyc_ipy with busy polling on (the default) and off (``busy_poll_window=0``).

    .venv/bin/python bench/bench_core.py [--quick] [--json PATH]

A benchmark, not a test: it prints medians and ratios and asserts nothing on time.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import socket
import statistics
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _common import (  # noqa: E402
    ROOT,
    alternating_medians,
    cpu_seconds,
    format_seconds,
    server_process,
    write_json,
)

sys.path.insert(0, ROOT)

MiB = 1 << 20
TIMEOUT = 600

SERVICE_BODY = """
    def exposed_add1(self, x):
        return x + 1

    def exposed_echo(self, data):
        return data

    def exposed_call(self, callback, x):
        return callback(x)
"""

OUR_SERVER = f"""
import rpyc_ipy
class Bench(rpyc_ipy.Service):
{textwrap.indent(textwrap.dedent(SERVICE_BODY), "    ")}
server = rpyc_ipy.ThreadedServer(Bench, hostname="127.0.0.1", port=0,
                                 protocol_config={{"sync_request_timeout": {TIMEOUT}EXTRA}})
print(server.port, flush=True)
server.start()
"""

OUR_CLASSIC = """
import rpyc_ipy
server = rpyc_ipy.ThreadedServer(rpyc_ipy.ClassicService, hostname="127.0.0.1", port=0)
print(server.port, flush=True)
server.start()
"""

# TUNED: zlib off and TCP_NODELAY on the server's side of each connection (rpyc's own knobs)
RPYC_SERVER = f"""
import socket
import rpyc
from rpyc.utils.server import ThreadedServer
TUNED = False
class Bench(rpyc.Service):
    def on_connect(self, conn):
        if TUNED:
            conn._channel.compress = False
            conn._channel.stream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
{textwrap.indent(textwrap.dedent(SERVICE_BODY), "    ")}
server = ThreadedServer(Bench, hostname="127.0.0.1", port=0, auto_register=False,
                        protocol_config={{"sync_request_timeout": {TIMEOUT}}})
server._listen()  # rpyc listens in start(): before the port is announced
print(server.port, flush=True)
server.start()
"""

RPYC_CLASSIC = """
import rpyc
from rpyc.utils.server import ThreadedServer
server = ThreadedServer(rpyc.core.SlaveService, hostname="127.0.0.1", port=0,
                        auto_register=False)
server._listen()  # rpyc listens in start(): before the port is announced
print(server.port, flush=True)
server.start()
"""

PYRO5_SERVER = """
import Pyro5.api
from Pyro5 import config
config.MAX_MESSAGE_SIZE = 1 << 30
@Pyro5.api.expose
class Bench:
    def add1(self, x):
        return x + 1
    def echo(self, data):
        return data
daemon = Pyro5.api.Daemon(host="127.0.0.1", port=0)
uri = daemon.register(Bench, "bench")
print(daemon.locationStr.rpartition(":")[2], flush=True)
daemon.requestLoop()
"""

# one thread per connection: an 8-byte big-endian length, then that many bytes, echoed back;
# with the length's top bit set (SINK), the bytes are only read and the length comes back
RAW_SERVER = """
import socket, struct, threading
NAIVE = False
SINK = 1 << 63
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
def serve(conn):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        header = conn.recv(8, socket.MSG_WAITALL)
        if len(header) < 8:
            return
        (size,) = struct.unpack(">Q", header)
        sink, size = size & SINK, size & ~SINK
        if NAIVE:
            chunks, got = [], 0
            while got < size:
                chunk = conn.recv(65536)
                chunks.append(chunk)
                got += len(chunk)
            conn.sendall(header + b"".join(chunks))
            continue
        data = bytearray(size)
        view, got = memoryview(data), 0
        while got < size:
            got += conn.recv_into(view[got:])
        conn.sendall(header)
        if not sink:
            conn.sendall(data)
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


def raw_client(port: int, payload: bytes, mode: str = "echo") -> Callable[[], None]:
    """One length-prefixed exchange of ``payload`` per call: ``echo`` into a preallocated
    buffer; ``naive`` echo with ``recv`` of 64 KiB pieces and a ``join``, as simple code
    does; ``sink``: one way, the server only reads it and answers with the length."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    size = len(payload)
    header = (size | (1 << 63 if mode == "sink" else 0)).to_bytes(8, "big")
    buffer = bytearray(size)
    view = memoryview(buffer)

    def echo() -> None:
        sock.sendall(header)
        sock.sendall(payload)
        sock.recv(8, socket.MSG_WAITALL)
        got = 0
        while got < size:
            got += sock.recv_into(view[got:])

    def sink() -> None:
        sock.sendall(header)
        sock.sendall(payload)
        sock.recv(8, socket.MSG_WAITALL)

    def naive_echo() -> None:
        sock.sendall(header + payload)
        chunks, got = [], -8
        while got < size:
            chunk = sock.recv(65536)
            chunks.append(chunk)
            got += len(chunk)
        b"".join(chunks)

    return {"echo": echo, "sink": sink, "naive": naive_echo}[mode]


def _status_bytes(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for process {pid}")


def peak_resettable(pid: int) -> bool:
    """Whether this system lets us reset a process's peak RSS (Linux 4.0 and later)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as clear:
            clear.write("5")
        return True
    except OSError:
        return False


def peak_growth(pids: list[int], fn: Callable[[], object]) -> list[int]:
    """Run ``fn``; how far each process's peak RSS rose above its RSS before."""
    before = []
    for pid in pids:
        peak_resettable(pid)  # resets VmHWM to the current RSS
        before.append(_status_bytes(pid, "VmRSS"))
    fn()
    return [_status_bytes(pid, "VmHWM") - rss for pid, rss in zip(pids, before, strict=True)]


def client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_per_call(fn: Callable[[], object], server_pid: int, calls: int, repeat: int
                 ) -> tuple[float, float]:
    """Median (client, server) CPU seconds per call over ``repeat`` runs of ``calls``."""
    clients, servers = [], []
    for _ in range(repeat):
        c0, s0 = client_cpu(), cpu_seconds(server_pid)
        for _ in range(calls):
            fn()
        clients.append((client_cpu() - c0) / calls)
        servers.append((cpu_seconds(server_pid) - s0) / calls)
    return statistics.median(clients), statistics.median(servers)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (smoke run)")
    parser.add_argument("--json", help="also write the figures to this file for bench/run.py")
    options = parser.parse_args()
    number, repeat, big_repeat = (200, 5, 3) if options.quick else (500, 15, 7)

    import Pyro5
    import Pyro5.api
    import rpyc
    from Pyro5 import config as pyro_config
    from rpyc.core.stream import SocketStream

    import rpyc_ipy

    pyro_default_max = pyro_config.MAX_MESSAGE_SIZE
    pyro_config.SERIALIZER = "marshal"
    pyro_config.MAX_MESSAGE_SIZE = 1 << 30
    values: dict[str, float] = {}
    with ExitStack() as stack:
        def start(code: str) -> Any:
            return stack.enter_context(server_process(code))

        ours_srv = start(OUR_SERVER.replace("EXTRA", ""))
        nospin_srv = start(OUR_SERVER.replace("EXTRA", ', "busy_poll_window": 0'))
        ours_classic_srv = start(OUR_CLASSIC)
        rpyc_srv = start(RPYC_SERVER)
        tuned_srv = start(RPYC_SERVER.replace("TUNED = False", "TUNED = True"))
        rpyc_classic_srv = start(RPYC_CLASSIC)
        pyro_srv = start(PYRO5_SERVER)
        raw_srv = start(RAW_SERVER)
        naive_srv = start(RAW_SERVER.replace("NAIVE = False", "NAIVE = True"))

        config = {"sync_request_timeout": TIMEOUT}
        ours = rpyc_ipy.connect("127.0.0.1", ours_srv.port, config=config)
        nospin = rpyc_ipy.connect("127.0.0.1", nospin_srv.port,
                                  config={**config, "busy_poll_window": 0})
        ours_classic = rpyc_ipy.classic.connect("127.0.0.1", ours_classic_srv.port)
        theirs = rpyc.connect("127.0.0.1", rpyc_srv.port, config=config)
        tuned = rpyc.utils.factory.connect_stream(
            SocketStream.connect("127.0.0.1", tuned_srv.port, nodelay=True), config=config)
        tuned._channel.compress = False  # zlib off on our side too (rpyc's own switch)
        theirs_classic = rpyc.classic.connect("127.0.0.1", rpyc_classic_srv.port)
        pyro = Pyro5.api.Proxy(f"PYRO:bench@127.0.0.1:{pyro_srv.port}")
        pyro._pyroBind()
        stack.callback(pyro._pyroRelease)
        for conn in (ours, nospin, ours_classic, theirs, tuned, theirs_classic):
            stack.callback(conn.close)
        ping = raw_client(raw_srv.port, b"x" * 64)

        counter: Iterator[int] = iter(range(10**12))
        o_add, n_add, r_add = ours.root.add1, nospin.root.add1, theirs.root.add1

        def cb(x: int) -> int:
            return x + 1

        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, rpyc "
              f"{rpyc.__version__}, Pyro5 {Pyro5.__version__} (marshal); medians of "
              f"{repeat} alternating batches of {number} calls")
        small = alternating_medians({
            "add1.ours": lambda: ours.root.add1(next(counter)),
            "add1.rpyc": lambda: theirs.root.add1(next(counter)),
            "add1.pyro5": lambda: pyro.add1(next(counter)),
            "add1.floor": ping,
            "add1_cached.ours": lambda: o_add(next(counter)),
            "add1_cached.rpyc": lambda: r_add(next(counter)),
            "add1.ours_nospin": lambda: n_add(next(counter)),
            "callback.ours": lambda: ours.root.call(cb, next(counter)),
            "callback.rpyc": lambda: theirs.root.call(cb, next(counter)),
            "getpid.ours": lambda: ours_classic.modules.os.getpid(),
            "getpid.rpyc": lambda: theirs_classic.modules.os.getpid(),
        }, repeat, number)
        values.update(small)
        for key, seconds in small.items():
            print(f"  {key:<20} {format_seconds(seconds):>10}")

        for size_mib in (1, 16):
            payload = os.urandom(size_mib * MiB)
            times = alternating_medians({
                "ours": functools.partial(ours.root.echo, payload),
                "rpyc": functools.partial(theirs.root.echo, payload),
                "rpyc_tuned": functools.partial(tuned.root.echo, payload),
                "pyro5": functools.partial(pyro.echo, payload),
                "floor": raw_client(raw_srv.port, payload),
            }, big_repeat, 1)
            print(f"{size_mib} MiB echo, MB/s (payload / round trip), medians of {big_repeat}")
            for name, seconds in times.items():
                values[f"echo{size_mib}.{name}"] = len(payload) / seconds
                print(f"  {name:<12} {len(payload) / seconds / 1e6:10.0f} MB/s")

        # the two 16 MiB figures: how each way of measuring changes the share of raw
        payload = os.urandom(16 * MiB)
        zeros = bytes(16 * MiB)
        times = alternating_medians({
            "raw_prealloc": raw_client(raw_srv.port, payload),
            "raw_naive": raw_client(naive_srv.port, payload, "naive"),
            "raw_one_way": raw_client(raw_srv.port, payload, "sink"),
            "ours_same": lambda: ours.root.echo(payload),
            "ours_fresh": lambda: ours.root.echo(bytes(bytearray(payload))),
            "ours_zeros": lambda: ours.root.echo(zeros),
            "rpyc_tuned_zeros": lambda: tuned.root.echo(zeros),
        }, big_repeat, 1)
        print(f"16 MiB echo, ways of measuring, MB/s, medians of {big_repeat}")
        for name, seconds in times.items():
            values[f"reconcile.{name}"] = len(payload) / seconds
            print(f"  {name:<18} {len(payload) / seconds / 1e6:10.0f} MB/s")
        fresh_cost = alternating_medians({"copy": lambda: bytes(bytearray(payload))},
                                         big_repeat, 1)["copy"]
        values["reconcile.fresh_copy_s"] = fresh_cost

        if peak_resettable(os.getpid()):
            huge = os.urandom(128 * MiB)
            print("128 MiB echo: peak memory over the 128 MiB each side must hold, client / "
                  "server")
            for name, echo, pid in (
                    ("ours", lambda: ours.root.echo(huge), ours_srv.pid),
                    ("rpyc", lambda: tuned.root.echo(huge), tuned_srv.pid),
                    ("pyro5", lambda: pyro.echo(huge), pyro_srv.pid),
                    # the floor's client allocates its reply buffer inside the measure
                    ("floor", lambda: raw_client(raw_srv.port, huge)(), raw_srv.pid)):
                client_growth, server_growth = peak_growth([os.getpid(), pid], echo)
                values[f"echo128_client.{name}"] = max(0, client_growth - len(huge))
                values[f"echo128_server.{name}"] = max(0, server_growth - len(huge))
                print(f"  {name:<12} client {(client_growth - len(huge)) / MiB:+7.1f} MiB  "
                      f"server {(server_growth - len(huge)) / MiB:+7.1f} MiB")
            del huge

        # each run lasts about `span` seconds: CPU times tick in 10 ms steps
        span = 0.3 if options.quick else 1.0
        print(f"CPU per add1 call (cached method), medians of 3 runs of about {span:g} s")
        for name, fn, pid, key in (
                ("ours", lambda: o_add(next(counter)), ours_srv.pid, "add1_cached.ours"),
                ("ours_nospin", lambda: n_add(next(counter)), nospin_srv.pid,
                 "add1.ours_nospin"),
                ("rpyc", lambda: r_add(next(counter)), rpyc_srv.pid, "add1_cached.rpyc"),
                ("pyro5", lambda: pyro.add1(next(counter)), pyro_srv.pid, "add1.pyro5"),
                ("floor", ping, raw_srv.pid, "add1.floor")):
            client, server = cpu_per_call(fn, pid, max(100, int(span / small[key])), 3)
            values[f"cpu.client.{name}"] = client
            values[f"cpu.server.{name}"] = server
            print(f"  {name:<12} client {client * 1e6:7.1f} us  server {server * 1e6:7.1f} us")

    notes = [f"Pyro5 {Pyro5.__version__} with SERIALIZER='marshal'. Pyro5 caps a message at "
             f"MAX_MESSAGE_SIZE (default {pyro_default_max:,} bytes here); both sides set it "
             "to 1 GiB, so 16 MiB fits either way.",
             "The 128 MiB echo's memory: rpyc 6.0.2 with zlib off + TCP_NODELAY (with zlib on "
             "it takes minutes)."]
    write_json(options.json, values, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
