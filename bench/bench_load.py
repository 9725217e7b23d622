"""Load: 64 concurrent clients doing small requests against one ThreadedServer,
rpyc_ipy beside rpyc 6.0.2 and a raw floor (a thread per connection, marshal over
length-prefixed TCP) in the same run.

Both servers also serve one same cheap client that speaks the wire protocol
itself (``WireClient``): it separates the servers' capacity from the cost of
each library's client.

Each library's server runs alone in its own subprocess on 127.0.0.1; the clients
are separate processes too (4 processes x 16 threads by default, one connection
per thread), so what is measured is the server rather than one client's GIL. A
request is one round trip on both sides (a cached remote method called with two
small ints). The runs take turns, ``--duration`` seconds each: each library
with its own clients, then each server with the other library's clients, then
each server with the wire client (``--quick`` runs the first three). Prints
throughput (ops/s), latency percentiles, CPU per request of the server and of
the clients, and the ratios; errors (exceptions or wrong results) are counted
and must be zero.

    .venv/bin/python bench/bench_load.py [--duration 10] [--rounds 3] [--processes 4] [--threads 16]
                                         [--quick] [--json PATH]
    .venv/bin/python bench/bench_load.py --server-processes 2   # ThreadedServer(processes=2)

By default every pairing carries the 64 clients for 3 x 10 s = 30 s in all.

The machines are shared and noisy, and the clients share the cores with the
server: compare the ratios, not the absolute figures.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import write_json

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

SERVICE_BODY = """
    def exposed_add(self, a, b):
        return a + b
"""

SERVERS = {
    "rpyc_ipy": f"""
import sys
sys.path.insert(0, {ROOT!r})
import rpyc_ipy
class Load(rpyc_ipy.Service):
{textwrap.indent(textwrap.dedent(SERVICE_BODY), "    ")}
# all the clients connect from 127.0.0.1 at once: let them all be pending (not yet
# logged in) together, as clients from many hosts would be
server = rpyc_ipy.ThreadedServer(Load, hostname="127.0.0.1", port=0,
                                 max_pending_per_address=1024, max_pending_connections=1024,
                                 processes=SERVER_PROCESSES,
                                 protocol_config={{"sync_request_timeout": 120}})
print(server.port, flush=True)
server.start()
""",
    "rpyc 6.0.2": f"""
import rpyc
from rpyc.utils.server import ThreadedServer
class Load(rpyc.Service):
{textwrap.indent(textwrap.dedent(SERVICE_BODY), "    ")}
server = ThreadedServer(Load, hostname="127.0.0.1", port=0, auto_register=False,
                        protocol_config={{"sync_request_timeout": 120}})
server._listen()
print(server.port, flush=True)
server.start()
""",
    "raw": """
import marshal, socket, struct, threading
listener = socket.create_server(("127.0.0.1", 0), backlog=128)
print(listener.getsockname()[1], flush=True)
def serve(conn):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        header = conn.recv(4, socket.MSG_WAITALL)
        if len(header) < 4:
            return
        a, b = marshal.loads(conn.recv(struct.unpack(">I", header)[0], socket.MSG_WAITALL))
        body = marshal.dumps(a + b)
        conn.sendall(struct.pack(">I", len(body)) + body)
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
""",
}


class RawClient:
    """The floor's client: ``add(a, b)`` as one marshal request and reply over TCP."""

    def __init__(self, port: int) -> None:
        import socket

        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def add(self, a: int, b: int) -> Any:
        import marshal
        import socket

        body = marshal.dumps((a, b))
        self.sock.sendall(len(body).to_bytes(4, "big") + body)
        size = int.from_bytes(self.sock.recv(4, socket.MSG_WAITALL), "big")
        return marshal.loads(self.sock.recv(size, socket.MSG_WAITALL))

    def close(self) -> None:
        self.sock.close()


class WireClient:
    """One cheap client for every server that speaks the RPyC protocol: the wire
    messages themselves (rpyc_ipy's sans-I/O engine over a blocking socket), no
    netrefs, no reader role, no locks. ``add(a, b)`` is one CALL of the root's
    ``add``, fetched once, as the libraries' clients do with a cached ``root.add``:
    both servers do the same work and the client costs little, so what it measures
    is server capacity."""

    def __init__(self, port: int) -> None:
        import socket

        sys.path.insert(0, ROOT)
        from rpyc_ipy.protocol import consts
        from rpyc_ipy.protocol.engine import Engine, Reply

        self.consts = consts
        self._reply = Reply
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.engine = Engine()
        label, root = self._call(consts.HANDLE_GETROOT, (consts.LABEL_VALUE, ()))
        if label != consts.LABEL_REMOTE_REF:
            raise RuntimeError(f"unexpected root reply {label!r}")
        label, add = self._call(consts.HANDLE_GETATTR, (consts.LABEL_TUPLE, (
            (consts.LABEL_LOCAL_REF, root), (consts.LABEL_VALUE, "add"))))
        if label != consts.LABEL_REMOTE_REF:
            raise RuntimeError(f"unexpected reply to root.add {label!r}")
        self._add = (consts.LABEL_LOCAL_REF, add)  # the server's object: named as its own
        self._kwargs = (consts.LABEL_VALUE, ())

    def _call(self, handler: int, boxed: Any) -> Any:
        engine = self.engine
        seq, parts = engine.request(handler, boxed)
        self.sock.sendall(b"".join(parts))
        while True:
            event = engine.next_event()
            if event is None:
                received = self.sock.recv_into(engine.receive_buffer())
                if not received:
                    raise ConnectionError("the server closed the connection")
                engine.received(received)
                continue
            if not isinstance(event, self._reply) or event.seq != seq:
                raise RuntimeError(f"unexpected answer {event!r}")
            return event.value

    def add(self, a: int, b: int) -> Any:
        consts = self.consts
        label, value = self._call(consts.HANDLE_CALL, (consts.LABEL_TUPLE, (
            self._add, (consts.LABEL_VALUE, (a, b)), self._kwargs)))
        return value if label == consts.LABEL_VALUE else None

    def close(self) -> None:
        self.sock.close()


# -- client processes ------------------------------------------------------------------------


def _connect(library: str, port: int) -> Any:
    if library == "raw":
        return RawClient(port)
    if library == "wire":
        return WireClient(port)
    if library == "rpyc_ipy":  # the client library
        sys.path.insert(0, ROOT)
        import rpyc_ipy

        return rpyc_ipy.connect("127.0.0.1", port, config={"sync_request_timeout": 120})
    import rpyc

    return rpyc.connect("127.0.0.1", port, config={"sync_request_timeout": 120})


def client_main(library: str, port: int, threads: int, start_at: float, duration: float,
                ident: int) -> None:
    """Run ``threads`` clients from ``start_at`` for ``duration`` s; print one JSON line:
    operations, errors and every latency in microseconds."""
    if library == "wire":  # once, here: threads importing it at once can see it half done
        sys.path.insert(0, ROOT)
        import rpyc_ipy.protocol.engine  # noqa: F401
    barrier = threading.Barrier(threads)
    results: list[tuple[int, int, list[int]]] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        ops = errors = 0
        latencies: list[int] = []
        conn = _connect(library, port)
        try:
            # a cached remote method: one round trip per call
            add = conn.add if isinstance(conn, (RawClient, WireClient)) else conn.root.add
            for i in range(20):  # warm up
                add(i, 1)
            barrier.wait(60)
            delay = start_at - time.time()
            if delay > 0:
                time.sleep(delay)
            end = time.perf_counter() + duration
            base = (ident * 1000 + index) * 10**9
            i = 0
            perf = time.perf_counter
            while True:
                begin = perf()
                if begin >= end:
                    break
                try:
                    if add(base + i, 1) != base + i + 1:
                        errors += 1
                except Exception:
                    errors += 1
                latencies.append(int((perf() - begin) * 1e6))
                ops += 1
                i += 1
        finally:
            try:
                conn.close()
            except Exception:
                pass
        with lock:
            results.append((ops, errors, latencies))

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(duration + 120)
    ops = sum(r[0] for r in results)
    errors = sum(r[1] for r in results) + (threads - len(results))  # a dead worker counts
    latencies = [lat for r in results for lat in r[2]]
    print(json.dumps({"ops": ops, "errors": errors, "latencies": latencies}), flush=True)


# -- the driver ---------------------------------------------------------------------------------


def start_server(code: str, processes: int = 1) -> tuple[subprocess.Popen[str], int]:
    code = f"SERVER_PROCESSES = {processes}\n" + code
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.strip():
        proc.kill()
        raise RuntimeError("the benchmark server did not start")
    return proc, int(line)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process and its worker processes have used, from
    /proc/<pid>/stat and its children's."""
    total = 0.0
    for each in [pid, *_children(pid)]:
        try:
            with open(f"/proc/{each}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


def percentile(sorted_values: list[int], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return float(sorted_values[index])


def run_library(library: str, client_library: str, duration: float, processes: int,
                threads: int, server_processes: int = 1) -> dict[str, Any]:
    server, port = start_server(SERVERS[library], server_processes)
    try:
        start_at = time.time() + 3.0 + 0.05 * processes * threads  # connect and warm up first
        clients = [
            subprocess.Popen([sys.executable, os.path.abspath(__file__), "--client",
                              client_library,
                              "--port", str(port), "--threads", str(threads),
                              "--start-at", repr(start_at), "--duration", str(duration),
                              "--ident", str(i)],
                             stdout=subprocess.PIPE, text=True)
            for i in range(processes)
        ]
        time.sleep(max(0.0, start_at - time.time()))
        cpu_start = cpu_seconds(server.pid)
        clients_start = sum(cpu_seconds(client.pid) for client in clients)
        time.sleep(duration)
        server_cpu = cpu_seconds(server.pid) - cpu_start
        clients_cpu = sum(cpu_seconds(client.pid) for client in clients) - clients_start
        ops = errors = 0
        latencies: list[int] = []
        for client in clients:
            out, _ = client.communicate(timeout=duration + 180)
            lines = [line for line in out.splitlines() if line.startswith("{")]
            if client.returncode != 0 or not lines:
                errors += threads
                continue
            report = json.loads(lines[-1])
            ops += report["ops"]
            errors += report["errors"]
            latencies.extend(report["latencies"])
    finally:
        os.killpg(server.pid, signal.SIGKILL)  # the server and its worker processes
        server.wait()
    latencies.sort()
    return {
        "library": library + (f" x{server_processes}" if server_processes > 1 else ""),
        "clients": client_library,
        "server_cpu_us": server_cpu / ops * 1e6 if ops else float("nan"),
        "client_cpu_us": clients_cpu / ops * 1e6 if ops else float("nan"),
        "ops": ops,
        "errors": errors,
        "throughput": ops / duration,
        "p50": percentile(latencies, 0.50),
        "p99": percentile(latencies, 0.99),
        "p999": percentile(latencies, 0.999),
        "mean": statistics.fmean(latencies) if latencies else float("nan"),
    }


def _median_row(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One row of medians over the rounds of one pairing (errors and requests summed)."""
    row = dict(results[0])
    for key, value in row.items():
        if isinstance(value, float):
            row[key] = statistics.median(r[key] for r in results)
    row["ops"] = sum(r["ops"] for r in results)
    row["errors"] = sum(r["errors"] for r in results)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds of load per pairing and round (default 10)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds; each runs every pairing once (default 3)")
    parser.add_argument("--processes", type=int, default=4, help="client processes (default 4)")
    parser.add_argument("--threads", type=int, default=16,
                        help="client threads per process, one connection each (default 16)")
    parser.add_argument("--server-processes", type=int, default=1, metavar="N",
                        help="rpyc_ipy's server serves from N worker processes "
                             "(ThreadedServer(processes=N)); default 1")
    parser.add_argument("--quick", action="store_true", help="a 5 s smoke run")
    parser.add_argument("--wire", action="store_true",
                        help="with --quick: also both servers under the same wire-level "
                             "client (the full run always has them)")
    parser.add_argument("--json", help="also write the figures to this file for bench/run.py")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--ident", type=int, default=0, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.client:
        client_main(options.client, options.port, options.threads, options.start_at,
                    options.duration, options.ident)
        return 0
    duration = 5.0 if options.quick else options.duration
    rounds = 1 if options.quick else options.rounds
    clients = options.processes * options.threads
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; {clients} clients "
          f"({options.processes} processes x {options.threads} threads); {rounds} rounds of "
          f"{duration:g} s per pairing, medians of the rounds; one round trip per request; "
          f"load average {os.getloadavg()[0]:.2f}")
    # each library with its own clients, then each server with the other's clients: the
    # clients share the cores with the server, so comparing servers under the same
    # clients isolates the server. The pairings take turns within each round, so the
    # noise of a shared machine falls on all of them alike.
    # With --server-processes N, one more pairing: our server in N worker processes.
    # Then each server under the same cheap wire-level client (WireClient): with the
    # client's cost small and equal, what differs is the servers' capacity.
    pairings = [("rpyc_ipy", "rpyc_ipy", 1), ("rpyc 6.0.2", "rpyc", 1), ("raw", "raw", 1)]
    if not options.quick:
        pairings += [("rpyc_ipy", "rpyc", 1), ("rpyc 6.0.2", "rpyc_ipy", 1)]
    if options.wire or not options.quick:
        pairings += [("rpyc_ipy", "wire", 1), ("rpyc 6.0.2", "wire", 1)]
    if options.server_processes > 1:
        pairings.append(("rpyc_ipy", "rpyc_ipy", options.server_processes))
    runs: list[list[dict[str, Any]]] = [[] for _ in pairings]
    for _ in range(rounds):
        for index, (library, client, server_processes) in enumerate(pairings):
            runs[index].append(run_library(library, client, duration, options.processes,
                                           options.threads, server_processes))
    rows = [_median_row(results) for results in runs]
    print(f"{'server':<13} {'clients':<9} {'ops/s':>8} {'p50 us':>8} {'p99 us':>8} "
          f"{'p99.9 us':>9} {'mean us':>8} {'srv cpu/op':>10} {'cli cpu/op':>10} "
          f"{'requests':>9} {'errors':>6}")
    for row in rows:
        print(f"{row['library']:<13} {row['clients']:<9} {row['throughput']:>8.0f} "
              f"{row['p50']:>8.0f} {row['p99']:>8.0f} {row['p999']:>9.0f} {row['mean']:>8.0f} "
              f"{row['server_cpu_us']:>8.0f}us {row['client_cpu_us']:>8.0f}us "
              f"{row['ops']:>9} {row['errors']:>6}")
    by_pairing = {(library, client): row for (library, client, processes), row
                  in zip(pairings, rows, strict=True) if processes == 1}
    comparisons = [(rows[0], rows[1], "whole stacks: ours vs rpyc")]
    for ours_key, theirs_key, label in (
            (("rpyc_ipy", "rpyc"), ("rpyc 6.0.2", "rpyc"), "servers, rpyc's clients: ours vs rpyc"),
            (("rpyc_ipy", "rpyc_ipy"), ("rpyc 6.0.2", "rpyc_ipy"),
             "servers, our clients: ours vs rpyc"),
            (("rpyc_ipy", "wire"), ("rpyc 6.0.2", "wire"),
             "servers, the same wire client: ours vs rpyc")):
        if ours_key in by_pairing and theirs_key in by_pairing:
            comparisons.append((by_pairing[ours_key], by_pairing[theirs_key], label))
    if options.server_processes > 1:
        comparisons.append((rows[-1], rows[1], f"whole stacks, ours in "
                                               f"{options.server_processes} processes vs rpyc"))
    for ours, theirs, label in comparisons:
        if theirs["throughput"] and ours["p50"] and ours["p99"] and ours["server_cpu_us"]:
            print(f"{label}: throughput "
                  f"x{ours['throughput'] / theirs['throughput']:.2f}, "
                  f"p50 x{theirs['p50'] / ours['p50']:.2f}, "
                  f"p99 x{theirs['p99'] / ours['p99']:.2f}, "
                  f"server CPU per request x{theirs['server_cpu_us'] / ours['server_cpu_us']:.2f}"
                  " (> 1: ours is better)")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    values: dict[str, float] = {"load.clients": clients, "load.seconds": duration * rounds}
    for row in rows:
        base, _, processes = row["library"].partition(" x")  # "rpyc_ipy x2": 2 processes
        key = {"rpyc_ipy": "ours", "rpyc 6.0.2": "rpyc", "raw": "floor"}[base]
        if row["clients"] != base.split()[0]:
            key += "_server_" + row["clients"] + "_clients"
        if processes:
            key += f"_{processes}_processes"
        for name in ("throughput", "p50", "p99", "errors", "server_cpu_us", "client_cpu_us"):
            values[f"load_{name}.{key}"] = row[name]
    write_json(options.json, values, ["The rpyc_ipy load server admits all 64 clients' logins "
                                      "at once (max_pending_per_address=1024): they all come "
                                      "from 127.0.0.1, and its default (16) refuses the burst."])
    if any(row["errors"] for row in rows):
        print("ERRORS: " + ", ".join(f"{row['library']}: {row['errors']}" for row in rows))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
