"""``rpyc-ipy users``: add, change, remove and list the users of a TLS-SRP user database.

Passwords are never taken from the command line: ``users`` asks for them on the
terminal (twice), or reads one line from standard input with ``--password-stdin``.
Importing this module registers the subcommand (see :mod:`rpyc_ipy.cli`).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import warnings
from typing import Any

from rpyc_ipy.auth.base import DEFAULT_MIN_PASSWORD_LENGTH
from rpyc_ipy.cli.common import PROG, CLIError, command, note

#: the longest password line ``--password-stdin`` reads
MAX_PASSWORD_BYTES = 4096


@command(
    "users",
    help="manage a TLS-SRP user database (for serve --srp-db)",
    description=(
        "Add, remove and list the users of a TLS-SRP user database file. Only salted "
        "verifiers are stored, never passwords; the file is kept owner-only. Passwords "
        "are asked on the terminal (twice), or read as one line from standard input "
        "with --password-stdin; never from the command line."
    ),
)
def _users_command(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(title="actions", metavar="ACTION")
    parser.set_defaults(run=lambda args: _usage_of(parser))

    add = sub.add_parser("add", help="add a user (creates FILE if missing)")
    passwd = sub.add_parser("passwd", help="change a user's password")
    for action, run in ((add, _users_add), (passwd, _users_passwd)):
        action.add_argument("file", metavar="FILE")
        action.add_argument("user", metavar="USER")
        action.add_argument("--password-stdin", action="store_true",
                            help="read the password as one line from standard input")
        action.add_argument("--min-password-length", type=_min_length,
                            default=DEFAULT_MIN_PASSWORD_LENGTH, metavar="N",
                            help="refuse passwords of fewer than N characters (default "
                                 f"{DEFAULT_MIN_PASSWORD_LENGTH})")
        action.set_defaults(run=run)

    delete = sub.add_parser("del", aliases=["delete"], help="remove a user")
    delete.add_argument("file", metavar="FILE")
    delete.add_argument("user", metavar="USER")
    delete.set_defaults(run=_users_del)

    listing = sub.add_parser("list", help="print the usernames, one a line")
    listing.add_argument("file", metavar="FILE")
    listing.set_defaults(run=_users_list)


def _min_length(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _usage_of(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _open_db(path: str) -> Any:
    from rpyc_ipy.auth.userdb import UserDB

    return UserDB(path)


def _users_add(args: argparse.Namespace) -> int:
    from rpyc_ipy.auth.userdb import UserDB, username_bytes

    # everything that can fail does so before the password prompt
    username_bytes(args.user)
    existing = UserDB(args.file) if os.path.lexists(args.file) else None
    if existing is not None and existing.contains(args.user):
        raise CLIError(f"user {args.user!r} already exists in {existing.path}; change the "
                       f"password with `{PROG} users passwd {args.file} {args.user}`")
    password = _read_password(args.user, args.password_stdin, args.min_password_length)
    db = existing if existing is not None else UserDB.create(args.file, exist_ok=True)
    if existing is None:
        note(f"created user database {db.path} (readable by its owner only)")
    db.add(args.user, password, min_password_length=args.min_password_length)
    print(f"{PROG}: added user {args.user!r} to {db.path} ({_users(len(db))})", flush=True)
    return 0


def _users_passwd(args: argparse.Namespace) -> int:
    db = _open_db(args.file)
    if not db.contains(args.user):
        raise CLIError(f"no user {args.user!r} in {db.path}")
    password = _read_password(args.user, args.password_stdin, args.min_password_length)
    db.set_password(args.user, password, min_password_length=args.min_password_length)
    print(f"{PROG}: changed the password of {args.user!r} in {db.path}", flush=True)
    return 0


def _users_del(args: argparse.Namespace) -> int:
    db = _open_db(args.file)
    if not db.contains(args.user):
        raise CLIError(f"no user {args.user!r} in {db.path}")
    db.delete(args.user)
    print(f"{PROG}: removed user {args.user!r} from {db.path} ({_users(len(db))})", flush=True)
    return 0


def _users(count: int) -> str:
    return f"{count} user" if count == 1 else f"{count} users"


def _users_list(args: argparse.Namespace) -> int:
    db = _open_db(args.file)
    for name in db.list():
        print(name)
    sys.stdout.flush()
    return 0


def _read_password(user: str, from_stdin: bool, min_length: int) -> str:
    """One password of at least ``min_length`` characters: a line of stdin, or asked
    twice on the terminal."""
    if from_stdin:
        raw = sys.stdin.buffer.readline(MAX_PASSWORD_BYTES + 1)
        if len(raw) > MAX_PASSWORD_BYTES:
            raise CLIError(f"the password line is longer than {MAX_PASSWORD_BYTES} bytes")
        line = raw.rstrip(b"\n").rstrip(b"\r")
        try:
            password = line.decode("utf-8")
        except UnicodeDecodeError:
            raise CLIError("the password is not valid UTF-8") from None
        if not password:
            raise CLIError("no password on standard input (expected one line)")
        _check_length(password, min_length)
        return password
    with warnings.catch_warnings():
        # getpass falls back to echoing stdin when there is no terminal: refuse that
        warnings.simplefilter("error", getpass.GetPassWarning)
        try:
            first = getpass.getpass(f"Password for {user}: ")
            if not first:
                raise CLIError("the password must not be empty")
            _check_length(first, min_length)  # before asking again
            second = getpass.getpass("Repeat the password: ")
        except getpass.GetPassWarning:
            raise CLIError("no terminal to ask the password on; pipe it in with "
                           "--password-stdin") from None
        except EOFError:
            raise CLIError("no password given") from None
    if first != second:
        raise CLIError("the passwords do not match")
    return first


def _check_length(password: str, min_length: int) -> None:
    from rpyc_ipy.auth.userdb import check_password_length
    from rpyc_ipy.errors import UsageError

    try:
        check_password_length(password, min_length)
    except UsageError as exc:
        raise CLIError(f"{exc} (--min-password-length N changes the minimum)") from None
