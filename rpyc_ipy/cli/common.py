"""What every subcommand shares: the program name, :class:`CLIError`, the
one-line notes, and the registry that :func:`command` fills.

A subcommand module decorates its ``setup(parser)`` with :func:`command`;
:func:`rpyc_ipy.cli.build_parser` makes one subparser per registered command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

__all__ = ["COMMANDS", "PROG", "CLIError", "Runner", "Setup", "command", "note"]

PROG = "rpyc-ipy"

Runner = Callable[[argparse.Namespace], int]
Setup = Callable[[argparse.ArgumentParser], None]

#: name -> (help, description, setup), in registration order
COMMANDS: dict[str, tuple[str, str, Setup]] = {}


class CLIError(Exception):
    """A failure to report in one line (``rpyc-ipy: error: ...``) with an exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def command(name: str, help: str, description: str | None = None) -> Callable[[Setup], Setup]:
    """Register ``setup`` as the subcommand ``name``: it adds its arguments and calls
    ``parser.set_defaults(run=fn)`` where ``fn(args) -> int`` does the work."""

    def register(setup: Setup) -> Setup:
        COMMANDS[name] = (help, description or help, setup)
        return setup

    return register


def note(message: str) -> None:
    """``rpyc-ipy: MESSAGE`` on standard error."""
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)
