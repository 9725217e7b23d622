"""``rpyc-ipy``: the command line (also ``python -m rpyc_ipy``).

Subcommands::

    rpyc-ipy serve mymodule:MyService --srp-db users.json   # a service, with passwords
    rpyc-ipy serve mymodule:MyService --cert s.pem --key s.key [--ca ca.pem]   # TLS
    rpyc-ipy serve --notebook --srp-db users.json           # the notebook execution service
    rpyc-ipy serve --classic                                # full remote control, loopback only
    rpyc-ipy serve --classic --stdio                        # one client over stdin/stdout
    rpyc-ipy serve --classic --mode forking --register      # rpyc_classic's modes, registry
    rpyc-ipy registry --mode tcp                            # a service registry, loopback
    rpyc-ipy users add users.json alice                     # asks for the password twice
    rpyc-ipy users list users.json
    rpyc-ipy kernel install --name gpu --host gpu-box --port 18821 --srp-user alice

One module per subcommand (:mod:`.serve`, :mod:`.registry`, :mod:`.users`, :mod:`.kernel`).
Adding a subcommand is one function: decorate ``setup(parser)`` with
:func:`~rpyc_ipy.cli.common.command` in a module imported here; it adds its
arguments and calls ``parser.set_defaults(run=fn)`` where ``fn(args) -> int``
does the work (see :mod:`.users` for nested subcommands).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rpyc_ipy.cli import common
from rpyc_ipy.cli.common import PROG, CLIError, Runner, command
from rpyc_ipy.errors import RPyCError

# isort: off
# importing a subcommand's module registers it; `rpyc-ipy --help` lists them in this order
from rpyc_ipy.cli import serve, registry, users, kernel  # noqa: F401
# isort: on
from rpyc_ipy.cli.serve import DEFAULT_PORT, DEFAULT_TLS_PORT

__all__ = ["DEFAULT_PORT", "DEFAULT_TLS_PORT", "build_parser", "command", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The whole ``rpyc-ipy`` argument parser, one subparser per registered command."""
    from rpyc_ipy import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve and manage rpyc_ipy endpoints (RPyC 6.0.2 compatible).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name, (help_text, description, setup) in common.COMMANDS.items():
        setup(sub.add_parser(name, help=help_text, description=description))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Runner | None = getattr(args, "run", None)
    if run is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return run(args)
    except CLIError as exc:
        _error(str(exc))
        return exc.status
    except RPyCError as exc:  # UsageError, ConfigError, AuthenticationError ...
        _error(str(exc))
        return 1
    except OSError as exc:  # a file or the network said no: the message says why
        _error(str(exc))
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
