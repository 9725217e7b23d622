"""Hash flooding: how long decoding a frozenset of colliding ints takes, ours and rpyc's.

    .venv/bin/python bench/bench_flood.py

60,000 multiples of ``2**61 - 1`` (they all hash to 0) make a 1.5 MB brine frame.
rpyc 6.0.2 builds the frozenset, which is quadratic (timed here on smaller sets,
the whole one takes about 15 s); rpyc_ipy refuses it before building it
(``Limits.max_hash_collisions``). Nothing here is a test.
"""

from __future__ import annotations

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from rpyc.core import brine as rpyc_brine  # noqa: E402

from rpyc_ipy.errors import LimitExceeded  # noqa: E402
from rpyc_ipy.protocol import brine  # noqa: E402

P = 2**61 - 1


def frame(n: int) -> bytes:
    return b"\x1a" + brine.dump(tuple(k * P for k in range(1, n + 1)))


def ours(data: bytes) -> str:
    start = time.perf_counter()
    try:
        brine.load(data)
        outcome = "decoded"
    except LimitExceeded:
        outcome = "refused"
    return f"{time.perf_counter() - start:8.4f} s  {outcome}"


def theirs(data: bytes) -> str:
    start = time.perf_counter()
    rpyc_brine.load(data)
    return f"{time.perf_counter() - start:8.4f} s  decoded"


def main() -> None:
    print(f"Python {sys.version.split()[0]}; one run each (seconds)\n")
    for n in (5_000, 10_000, 20_000, 60_000):
        data = frame(n)
        line = f"{n:>6} colliding ints, {len(data):>9,} bytes: rpyc_ipy {ours(data)}"
        if n <= 20_000:  # rpyc's 60,000 takes about 15 s
            line += f" | rpyc {theirs(data)}"
        print(line, flush=True)
    genuine = brine.dump(frozenset(range(10**12, 10**12 + 60_000)))
    start = time.perf_counter()
    brine.load(genuine)
    print(f"\n60,000 distinct ints, {len(genuine):,} bytes: rpyc_ipy "
          f"{time.perf_counter() - start:.4f} s  decoded")


if __name__ == "__main__":
    main()
