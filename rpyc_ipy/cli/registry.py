"""``rpyc-ipy registry``: run a service registry (RPyC 6.0.2's UDP or TCP registry).

It binds 127.0.0.1 unless ``--host`` says otherwise, prints one line on standard
output once listening::

    rpyc-ipy: serving REGISTRY/UDP on HOST:PORT (auth: none)

and stops cleanly on Ctrl-C or SIGTERM. Servers register with
``auto_register=True`` and a registrar pointing at it; clients find them with
``rpyc_ipy.discover``. Importing this module registers the subcommand.
"""

from __future__ import annotations

import argparse
import logging
import signal
from types import FrameType
from typing import Any

from rpyc_ipy.cli.common import PROG, CLIError, command, note
from rpyc_ipy.target import format_address

__all__ = ["run_registry"]


@command(
    "registry",
    help="run a service registry (RPyC's UDP or TCP registry)",
    description=(
        "Run a registry where servers started with auto_register announce their services "
        "and clients discover them. Listens on 127.0.0.1 unless --host is given. It has no "
        "authentication: anyone who reaches it can register any name."
    ),
)
def _registry_command(parser: argparse.ArgumentParser) -> None:
    from rpyc_ipy.servers.registry import DEFAULT_PRUNING_TIMEOUT, REGISTRY_PORT

    parser.add_argument("-m", "--mode", type=str.upper, choices=["UDP", "TCP"], default="UDP",
                        help="UDP (answers broadcasts too, default) or TCP (crosses routers)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; 0.0.0.0 for every "
                             "interface, needed to hear broadcasts)")
    parser.add_argument("-p", "--port", type=_port, default=REGISTRY_PORT,
                        help=f"port (default {REGISTRY_PORT}; 0 picks a free one)")
    parser.add_argument("-t", "--timeout", type=_seconds, default=DEFAULT_PRUNING_TIMEOUT,
                        metavar="SECONDS", dest="pruning_timeout",
                        help="drop a registration not renewed for this long "
                             f"(default {DEFAULT_PRUNING_TIMEOUT})")
    parser.add_argument("-l", "--listing", action="store_true",
                        help="let clients list every registered service")
    parser.add_argument("--max-entries", type=_count, default=4096, metavar="N",
                        help="registrations kept at most (default 4096); more are refused")
    parser.add_argument("--logfile", metavar="FILE", help="log to FILE instead of stderr")
    parser.add_argument("-q", "--quiet", action="store_true", help="log errors only")
    parser.set_defaults(run=run_registry)


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"not a port number 0-65535: {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"give a whole number >= 1, not {text!r}")
    return int(text)


def run_registry(args: argparse.Namespace) -> int:
    """``rpyc-ipy registry``: bind, print the address, serve until stopped."""
    from rpyc_ipy.servers.registry import TCPRegistryServer, UDPRegistryServer

    logging.basicConfig(level=logging.ERROR if args.quiet else logging.INFO,
                        filename=args.logfile,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    kind = UDPRegistryServer if args.mode == "UDP" else TCPRegistryServer
    try:
        server = kind(host=args.host, port=args.port, pruning_timeout=args.pruning_timeout,
                      allow_listing=args.listing, max_entries=args.max_entries)
    except OSError as exc:
        raise CLIError(f"cannot listen on {format_address(args.host, args.port)}: "
                       f"{exc.strerror or exc} (choose another with --port, or --port 0)"
                       ) from None

    def stop(signum: int, frame: FrameType | None) -> None:
        server.close()

    saved: Any = signal.signal(signal.SIGTERM, stop)
    try:
        print(f"{PROG}: serving REGISTRY/{args.mode} on "
              f"{format_address(server.host, server.port)} (auth: none)", flush=True)
        server.start()
        note("stopped (SIGTERM); registry closed")
    except KeyboardInterrupt:
        server.close()
        note("stopped (interrupt); registry closed")
    finally:
        signal.signal(signal.SIGTERM, saved)
    return 0
