"""Cached ``add1`` round trip over TLS, one connection per client process, with busy
polling at its default and off.

Run:  .venv/bin/python bench/bench_tls_single.py [--runs 3] [--number 1000]

Each peer (ours over TLS, ours over TLS-SRP, rpyc 6.0.2 over TLS, ours plain) is timed in client
processes of its own holding one connection (bench_tls.solo_round_trips), with the
client's ``busy_poll_window`` at its default and at 0; peers and modes take turns so
that the noise of a shared machine falls on all alike. Prints medians over the client
processes, ratios to rpyc and, for TLS-SRP, to plain (issue 17's target: within 2x).
This is a benchmark, not a test: nothing asserts on timing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import textwrap
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from _common import server_process
from bench_tls import OUR_TLS_SERVER, RPYC_TLS_SERVER, make_certificate, solo_round_trips

from rpyc_ipy.auth.userdb import UserDB

WINDOWS = ("default", "0")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="client processes per peer and mode")
    parser.add_argument("--number", type=int, default=1000, help="calls per batch")
    parser.add_argument("--repeat", type=int, default=5, help="batches per client process")
    args = parser.parse_args(argv)
    runs: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        cert, key = make_certificate(Path(tmp))
        users = Path(tmp) / "users.json"
        UserDB.create(users).add("bench", "bench password")

        def start(code: str, auth: str) -> Any:
            for name, value in {"AUTH": auth, "CERT": repr(str(cert)),
                                "KEY": repr(str(key))}.items():
                code = code.replace(name, value)
            return stack.enter_context(server_process(textwrap.dedent(code)))

        ports = {
            "ours": start(OUR_TLS_SERVER, f"SSLAuthenticator({str(key)!r}, {str(cert)!r})").port,
            "srp": start(OUR_TLS_SERVER, f"SRPAuthenticator({str(users)!r})").port,
            "plain": start(OUR_TLS_SERVER, "None").port,
            "rpyc": start(RPYC_TLS_SERVER, "").port,
        }
        for _ in range(args.runs):
            for window in WINDOWS:
                for kind, value in solo_round_trips(ports, cert, 1, args.number, args.repeat,
                                                    window).items():
                    runs.setdefault(f"{kind}/{window}", []).append(value)
    medians = {name: statistics.median(values) for name, values in runs.items()}
    for window in WINDOWS:
        print(f"client busy_poll_window={window}:")
        for kind in ("ours", "srp", "rpyc", "plain"):
            value = medians[f"{kind}/{window}"]
            print(f"  {kind:<6} {value * 1e6:7.1f} us   x{value / medians[f'rpyc/{window}']:.2f}"
                  " of rpyc over TLS")
        print(f"  srp/plain x{medians[f'srp/{window}'] / medians[f'plain/{window}']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
