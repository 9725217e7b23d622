"""A small version of bench/bench_load.py: 64 concurrent clients for about 3 s against one
ThreadedServer in a subprocess, with zero errors. (Throughput is the benchmark's
business: nothing here is timed beyond liveness bounds.)"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from seckit import WAIT, ServerProcess, assert_serves

import rpyc_ipy

pytestmark = pytest.mark.timeout(90)

CLIENTS = 64
SECONDS = 3.0


def test_64_clients_for_3_seconds_without_errors() -> None:
    # 64 clients of one process connect at once: more than the default 16 may wait for
    # their first frame together, which the per-address limit would turn away
    server = ServerProcess(max_pending_per_address=CLIENTS)
    try:
        barrier = threading.Barrier(CLIENTS + 1)
        counts: list[int] = [0] * CLIENTS
        errors: list[BaseException | str] = []
        stop = threading.Event()

        def client(index: int) -> None:
            try:
                with rpyc_ipy.connect("127.0.0.1", server.port,
                                      config={"sync_request_timeout": WAIT},
                                      timeout=WAIT) as conn:
                    add = conn.root.add
                    add(0, 0)
                    barrier.wait(WAIT * 3)
                    i = 0
                    while not stop.is_set():
                        value = index * 10**9 + i
                        if add(value, 1) != value + 1:
                            errors.append(f"client {index}: wrong result for {value}")
                        if i % 50 == 0 and conn.root.echo(("x", index, i)) != ("x", index, i):
                            errors.append(f"client {index}: wrong echo")
                        i += 1
                    counts[index] = i
            except BaseException as exc:  # reported below
                errors.append(exc)
                try:
                    barrier.abort()
                except Exception:
                    pass

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        barrier.wait(WAIT * 3)
        time.sleep(SECONDS)
        stop.set()
        for thread in threads:
            thread.join(WAIT * 3)
        assert not any(thread.is_alive() for thread in threads), "a client hangs"
        assert not errors, errors[:5]
        assert all(count > 0 for count in counts), counts
        assert server.alive()
        assert_serves(server.port)
        _report(counts)
    finally:
        server.close()


def _report(counts: list[Any]) -> None:
    total = sum(counts)
    print(f"{CLIENTS} clients, {SECONDS:g} s: {total} requests, {total / SECONDS:.0f} ops/s "
          f"(min {min(counts)} / max {max(counts)} per client)")
