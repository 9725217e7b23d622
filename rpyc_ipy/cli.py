"""``rpyc-ipy``: the command line (also ``python -m rpyc_ipy``).

Subcommands::

    rpyc-ipy serve mymodule:MyService --srp-db users.json   # a service, with passwords
    rpyc-ipy serve mymodule:MyService --cert s.pem --key s.key [--ca ca.pem]   # TLS
    rpyc-ipy serve --notebook --srp-db users.json           # the notebook execution service
    rpyc-ipy serve --classic                                # full remote control, loopback only
    rpyc-ipy serve --classic --stdio                        # one client over stdin/stdout
    rpyc-ipy users add users.json alice                     # asks for the password twice
    rpyc-ipy users list users.json
    rpyc-ipy kernel install --name gpu --host gpu-box --port 18821 --srp-user alice

``serve`` binds 127.0.0.1 unless ``--host`` says otherwise, and refuses any other
address without ``--srp-db`` or ``--cert`` unless ``--insecure-no-auth`` is given.
Once listening it prints one line on standard output::

    rpyc-ipy: serving NAME on HOST:PORT (auth: srp|tls|none)

then logs one line per connection (peer, user, service) and per refused login on
standard error, and stops cleanly (exit status 0) on Ctrl-C or SIGTERM.

Passwords are never taken from the command line: ``users`` asks for them on the
terminal, or reads one line from standard input with ``--password-stdin``.

Adding a subcommand is one function: decorate ``setup(parser)`` with
:func:`command`; it adds its arguments and calls ``parser.set_defaults(run=fn)``
where ``fn(args) -> int`` does the work (see :func:`_users_command` for nested
subcommands).
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import logging
import os
import re
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from types import FrameType, ModuleType
from typing import Any, NoReturn, TextIO

from rpyc_ipy.errors import RPyCError
from rpyc_ipy.target import format_address

__all__ = ["DEFAULT_PORT", "DEFAULT_TLS_PORT", "build_parser", "command", "main"]

log = logging.getLogger("rpyc_ipy.cli")

PROG = "rpyc-ipy"
#: RPyC's classic ports: plain TCP, and TLS (certificates or SRP)
DEFAULT_PORT = 18812
DEFAULT_TLS_PORT = 18821
#: the longest password line ``--password-stdin`` reads
MAX_PASSWORD_BYTES = 4096
NOTEBOOK_SERVICE = "rpyc_ipy.remote:ExecutionService"

Runner = Callable[[argparse.Namespace], int]
Setup = Callable[[argparse.ArgumentParser], None]

_COMMANDS: dict[str, tuple[str, str, Setup]] = {}


class CLIError(Exception):
    """A failure to report in one line (``rpyc-ipy: error: ...``) with an exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class _Stop(BaseException):
    """Raised in the main thread by the SIGTERM handler (like KeyboardInterrupt)."""


def command(name: str, help: str, description: str | None = None) -> Callable[[Setup], Setup]:
    """Register ``setup`` as the subcommand ``name``; see the module docstring."""

    def register(setup: Setup) -> Setup:
        _COMMANDS[name] = (help, description or help, setup)
        return setup

    return register


def build_parser() -> argparse.ArgumentParser:
    """The whole ``rpyc-ipy`` argument parser, one subparser per registered command."""
    from rpyc_ipy import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve and manage rpyc_ipy endpoints (RPyC 6.0.2 compatible).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name, (help_text, description, setup) in _COMMANDS.items():
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


def _note(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


# -- serve ------------------------------------------------------------------------------


@command(
    "serve",
    help="serve a service over TCP, TLS, TLS-SRP or stdin/stdout",
    description=(
        "Serve SERVICE (module:Class), the notebook execution service (--notebook) or "
        "classic mode (--classic). Listens on 127.0.0.1 unless --host is given; any other "
        "address needs --srp-db or --cert (or --insecure-no-auth)."
    ),
)
def _serve_command(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("what to serve (exactly one)")
    which = what.add_mutually_exclusive_group()
    which.add_argument("service", nargs="?", metavar="SERVICE",
                       help="the service class to serve, as module:Class")
    which.add_argument("--notebook", action="store_true",
                       help=f"serve the notebook execution service ({NOTEBOOK_SERVICE})")
    which.add_argument("--classic", action="store_true",
                       help="serve classic mode: every client gets FULL CONTROL of this machine "
                            "(remote import, eval, exec)")
    what.add_argument("--app-dir", default=".", metavar="DIR",
                      help="directory put first on sys.path to import SERVICE from "
                           "(default: the current directory)")

    where = parser.add_argument_group("where to listen")
    where.add_argument("--host", default=None,
                       help="address to bind (default 127.0.0.1; 0.0.0.0 or :: for every "
                            "interface, which needs authentication)")
    where.add_argument("--port", type=_port, default=None,
                       help=f"TCP port (default {DEFAULT_PORT}, or {DEFAULT_TLS_PORT} with "
                            "--srp-db/--cert; 0 picks a free port)")
    where.add_argument("--stdio", action="store_true",
                       help="serve one client over stdin/stdout instead of a socket (what "
                            "connect_subproc uses); logs go to stderr")

    auth = parser.add_argument_group("authentication")
    auth.add_argument("--srp-db", metavar="FILE",
                      help="TLS-SRP: username/password logins checked against this user "
                           "database (manage it with `rpyc-ipy users`)")
    auth.add_argument("--cert", metavar="FILE", help="TLS: the server certificate (PEM)")
    auth.add_argument("--key", metavar="FILE",
                      help="TLS: the server's private key (PEM; omit if it is in --cert)")
    auth.add_argument("--ca", metavar="FILE",
                      help="TLS: require client certificates issued by this CA (mutual TLS)")
    auth.add_argument("--allow-loopback-plaintext", action="store_true",
                      help="with --notebook and no --srp-db/--cert: let unauthenticated clients "
                           "on this machine (loopback only) run code, for local demos")
    auth.add_argument("--insecure-no-auth", action="store_true",
                      help="allow a non-loopback --host with no authentication and no "
                           "encryption: anyone who can reach the port can connect")

    misc = parser.add_argument_group("server")
    misc.add_argument("--max-connections", type=_positive_int, default=1024, metavar="N",
                      help="clients served at once; more are refused (default 1024)")
    misc.add_argument("--log-level", default="info",
                      choices=["debug", "info", "warning", "error"],
                      help="logging level on stderr (default info: one line per connection)")
    parser.set_defaults(run=run_serve)


def _port(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {value}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def run_serve(args: argparse.Namespace) -> int:
    """``rpyc-ipy serve``: check the options, build the server, serve until stopped."""
    _check_serve_options(args)
    _configure_logging(args.log_level)
    service = _load_service(args)
    name = _service_name(service)
    if args.classic:
        _classic_warning(sys.stderr)
    if args.stdio:
        return _serve_stdio(service, name)
    authenticator, auth_kind = _make_authenticator(args)
    return _serve_socket(args, service, name, authenticator, auth_kind)


def _check_serve_options(args: argparse.Namespace) -> None:
    if not (args.service or args.notebook or args.classic):
        raise CLIError("say what to serve: SERVICE (module:Class), --notebook or --classic", 2)
    if args.key and not args.cert:
        raise CLIError("--key needs --cert", 2)
    if args.ca and not args.cert:
        raise CLIError("--ca needs --cert (the server's own certificate)", 2)
    if args.srp_db and args.cert:
        raise CLIError("choose one authentication: --srp-db or --cert, not both", 2)
    authenticated = bool(args.srp_db or args.cert)
    if args.stdio:
        given = [flag for flag, value in (("--host", args.host), ("--port", args.port),
                                          ("--srp-db", args.srp_db), ("--cert", args.cert),
                                          ("--insecure-no-auth", args.insecure_no_auth))
                 if value is not None and value is not False]
        if given:
            raise CLIError(f"--stdio serves over stdin/stdout: {', '.join(given)} "
                           "does not apply", 2)
        return
    if args.insecure_no_auth and authenticated:
        raise CLIError("--insecure-no-auth contradicts --srp-db/--cert", 2)
    if args.allow_loopback_plaintext and (authenticated or not args.notebook):
        raise CLIError("--allow-loopback-plaintext is for --notebook without --srp-db/--cert", 2)
    host = "127.0.0.1" if args.host is None else args.host
    if not authenticated and not args.insecure_no_auth and not _is_loopback(host):
        raise CLIError(
            f"refusing to serve on {host!r} without authentication: anyone who can reach it "
            "could connect. Use --srp-db FILE (passwords) or --cert/--key (TLS), or bind "
            "127.0.0.1, or pass --insecure-no-auth if you really mean it", 2)


def _is_loopback(host: str) -> bool:
    from rpyc_ipy.transports.sockets import is_loopback

    # for a server, "" means every interface (INADDR_ANY), not localhost
    return host != "" and is_loopback(host)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.captureWarnings(True)


def _load_service(args: argparse.Namespace) -> Any:
    if args.classic:
        from rpyc_ipy.core.service import SlaveService

        return SlaveService
    if args.notebook:
        service = _notebook_service()
        if args.allow_loopback_plaintext:
            logging.getLogger("rpyc_ipy.cli").warning(
                "--allow-loopback-plaintext: any local user of this machine can run code "
                "through this server without a password")
            service = service.configured(allow_loopback_plaintext=True)
        return service
    return import_service(args.service, args.app_dir)


def _notebook_service() -> Any:
    module_name, _, attr = NOTEBOOK_SERVICE.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name in (module_name, "rpyc_ipy"):
            raise CLIError(f"--notebook needs {NOTEBOOK_SERVICE}, which this installation "
                           "of rpyc_ipy does not have") from None
        raise CLIError(f"--notebook: importing {module_name} failed: {exc}") from None
    service = getattr(module, attr, None)
    if service is None:
        raise CLIError(f"--notebook needs {NOTEBOOK_SERVICE}, which this installation of "
                       f"rpyc_ipy does not have ({module_name} has no {attr})")
    return service


def import_service(spec: str, app_dir: str | None = ".") -> Any:
    """The object named by ``module:Class`` (``module:outer.Inner`` works too).

    ``app_dir`` is put first on ``sys.path`` beforehand. Raises :class:`CLIError`
    with a one-line reason when it cannot be found or is not a service.
    """
    module_name, colon, attr_path = spec.partition(":")
    if not colon or not module_name or not attr_path:
        raise CLIError(f"SERVICE must look like module:Class, got {spec!r}", 2)
    if app_dir is not None:
        path = os.path.abspath(app_dir)
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise CLIError(f"cannot import {module_name!r}: no such module (looked in "
                           f"{app_dir!r} and on sys.path)") from None
        raise CLIError(f"importing {module_name!r} failed: {exc}") from None
    except Exception as exc:
        log.debug("importing %s failed", module_name, exc_info=True)
        raise CLIError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
                       ) from None
    obj: Any = module
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CLIError(f"{module_name!r} has no {attr_path!r}") from None
    from rpyc_ipy.core.service import Service

    if isinstance(obj, ModuleType) or not (isinstance(obj, type) or isinstance(obj, Service)):
        raise CLIError(f"{spec!r} is a {type(obj).__name__}, not a service class")
    return obj


def _service_name(service: Any) -> str:
    getter = getattr(service, "get_service_name", None)
    if getter is not None:
        try:
            return str(getter())
        except Exception:
            pass
    return getattr(service, "__name__", type(service).__name__)


def _make_authenticator(args: argparse.Namespace) -> tuple[Any, str]:
    if args.srp_db:
        from rpyc_ipy.auth.srp_server import SRPAuthenticator
        from rpyc_ipy.auth.userdb import UserDB

        db = UserDB(args.srp_db)  # ConfigError (exit 1) if missing or corrupt
        if not len(db):
            log.warning("%s has no users: nobody can log in until you run "
                        "`%s users add %s USER`", db.path, PROG, args.srp_db)
        return SRPAuthenticator(db), "srp"
    if args.cert:
        from rpyc_ipy.auth.tls_server import SSLAuthenticator

        authenticator = SSLAuthenticator(args.key, args.cert, ca_certs=args.ca)
        fingerprint = _fingerprint(args.cert)
        if fingerprint:
            log.info("TLS certificate %s, SHA-256 fingerprint %s", args.cert, fingerprint)
        if args.ca:
            log.info("client certificates issued by %s are required (mutual TLS)", args.ca)
        return authenticator, "tls"
    return None, "none"


def _fingerprint(certfile: str) -> str | None:
    """SHA-256 of the first certificate in ``certfile`` (for clients that pin it)."""
    from rpyc_ipy.auth.tls_client import certificate_fingerprint

    try:
        with open(certfile, encoding="ascii", errors="replace") as f:
            text = f.read()
        match = re.search(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", text,
                          re.DOTALL)
        return certificate_fingerprint(match.group(0).encode("ascii")) if match else None
    except (OSError, ValueError):
        return None


def _classic_warning(stream: TextIO) -> None:
    user = _username()
    lines = [
        "WARNING: classic mode. Every client of this server gets FULL CONTROL of this",
        f"machine as user {user!r}: it can import, eval and exec anything, read and write",
        "your files and start programs. Serve it only to yourself or to people you trust",
        "completely; across a network, require --srp-db or --cert.",
    ]
    width = max(map(len, lines))
    bar = "!" * (width + 4)
    text = "\n".join([bar, *(f"! {line.ljust(width)} !" for line in lines), bar])
    if _colour(stream):
        text = f"\x1b[1;31m{text}\x1b[0m"
    print(text, file=stream, flush=True)


def _colour(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _username() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "?"


def _serve_socket(args: argparse.Namespace, service: Any, name: str, authenticator: Any,
                  auth_kind: str) -> int:
    from rpyc_ipy.servers import ThreadedServer

    host = "127.0.0.1" if args.host is None else args.host
    port = args.port
    if port is None:
        port = DEFAULT_TLS_PORT if authenticator is not None else DEFAULT_PORT
    if auth_kind == "none" and not _is_loopback(host):
        log.warning("serving %s on %s WITHOUT authentication or encryption "
                    "(--insecure-no-auth): anyone who can reach the port can connect%s",
                    name, host, " and run anything" if args.classic else "")
    try:
        server = ThreadedServer(service, hostname=host, port=port, authenticator=authenticator,
                                max_connections=args.max_connections,
                                allow_insecure_remote=args.insecure_no_auth)
    except OSError as exc:
        raise CLIError(f"cannot listen on {format_address(host, port)}: {exc.strerror or exc}"
                       + (" (choose another with --port, or --port 0 for any free port)"
                          if port else "")) from None
    with _stop_signals() as stops:
        try:
            print(f"{PROG}: serving {name} on {format_address(server.host, server.port)} "
                  f"(auth: {auth_kind})", flush=True)
            server.serve_forever()  # closes the server when it returns or raises
        except (KeyboardInterrupt, _Stop) as exc:
            stops.shutting_down()
            server.close()
            how = "SIGTERM" if isinstance(exc, _Stop) else "interrupt"
            _note(f"stopped ({how}); server closed")
    return 0


def _serve_stdio(service: Any, name: str) -> int:
    """Serve one client over stdin/stdout; stdout is reserved for the protocol."""
    from rpyc_ipy.factory import connect_stream
    from rpyc_ipy.transports.memory import PipeTransport

    sys.stdout.flush()
    read_fd, write_fd = os.dup(0), os.dup(1)
    # Anything the service prints or reads must not touch the protocol's pipes:
    # fd 1 now goes to stderr, fd 0 reads nothing.
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    # Ctrl-C in a terminal reaches the whole process group; it is the parent's to
    # handle (interrupting its own call), so it must not kill this server.
    if hasattr(signal, "SIGINT"):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    transport = PipeTransport(read_fd, write_fd)
    conn = connect_stream(transport, service, {"connid": "stdio", "credentials": None})
    logging.getLogger("rpyc_ipy.server").info(
        "connection %s from stdio (pid %d) user=%s service=%s", "stdio", os.getppid(), None, name)
    with _stop_signals() as stops:
        try:
            conn.serve_all()
        except (KeyboardInterrupt, _Stop):
            stops.shutting_down()
            conn.close()
    logging.getLogger("rpyc_ipy.server").info("connection stdio closed")
    return 0


class _stop_signals:
    """SIGTERM raises :class:`_Stop` in the main thread; a second SIGTERM or Ctrl-C
    during shutdown ends the process at once."""

    def __init__(self) -> None:
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> _stop_signals:
        for sig in (signal.SIGINT, getattr(signal, "SIGTERM", None)):
            if sig is not None:
                self._saved[sig] = signal.getsignal(sig)
        if signal.SIGTERM in self._saved:
            signal.signal(signal.SIGTERM, self._first)
        return self

    def _first(self, signum: int, frame: FrameType | None) -> NoReturn:
        self.shutting_down()
        raise _Stop()

    def shutting_down(self) -> None:
        """From now on a stop signal ends the process at once."""
        for sig, before in self._saved.items():
            if before is not signal.SIG_IGN:
                signal.signal(sig, self._again)

    @staticmethod
    def _again(signum: int, frame: FrameType | None) -> None:
        _note("stopping at once")
        os._exit(1)

    def __exit__(self, *exc_info: Any) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)


# -- users ------------------------------------------------------------------------------


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
    add.add_argument("file", metavar="FILE")
    add.add_argument("user", metavar="USER")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password as one line from standard input")
    add.set_defaults(run=_users_add)

    passwd = sub.add_parser("passwd", help="change a user's password")
    passwd.add_argument("file", metavar="FILE")
    passwd.add_argument("user", metavar="USER")
    passwd.add_argument("--password-stdin", action="store_true",
                        help="read the password as one line from standard input")
    passwd.set_defaults(run=_users_passwd)

    delete = sub.add_parser("del", aliases=["delete"], help="remove a user")
    delete.add_argument("file", metavar="FILE")
    delete.add_argument("user", metavar="USER")
    delete.set_defaults(run=_users_del)

    listing = sub.add_parser("list", help="print the usernames, one a line")
    listing.add_argument("file", metavar="FILE")
    listing.set_defaults(run=_users_list)


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
    password = _read_password(args.user, args.password_stdin)
    db = existing if existing is not None else UserDB.create(args.file, exist_ok=True)
    if existing is None:
        _note(f"created user database {db.path} (readable by its owner only)")
    db.add(args.user, password)
    print(f"{PROG}: added user {args.user!r} to {db.path} ({_users(len(db))})", flush=True)
    return 0


def _users_passwd(args: argparse.Namespace) -> int:
    db = _open_db(args.file)
    if not db.contains(args.user):
        raise CLIError(f"no user {args.user!r} in {db.path}")
    password = _read_password(args.user, args.password_stdin)
    db.set_password(args.user, password)
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


def _read_password(user: str, from_stdin: bool) -> str:
    """One password: a line of stdin, or asked twice on the terminal."""
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
        return password
    with warnings.catch_warnings():
        # getpass falls back to echoing stdin when there is no terminal: refuse that
        warnings.simplefilter("error", getpass.GetPassWarning)
        try:
            first = getpass.getpass(f"Password for {user}: ")
            if not first:
                raise CLIError("the password must not be empty")
            second = getpass.getpass("Repeat the password: ")
        except getpass.GetPassWarning:
            raise CLIError("no terminal to ask the password on; pipe it in with "
                           "--password-stdin") from None
        except EOFError:
            raise CLIError("no password given") from None
    if first != second:
        raise CLIError("the passwords do not match")
    return first


if __name__ == "__main__":  # python -m rpyc_ipy.cli (what classic.connect_subproc runs)
    sys.exit(main())


@command("kernel", help="install, list and remove kernelspecs of the remote kernel",
         description="Manage Jupyter kernelspecs whose cells run on an rpyc_ipy server "
                     "(the same as python -m rpyc_ipy.kernel).")
def _kernel_command(parser: argparse.ArgumentParser) -> None:
    from rpyc_ipy.kernel.install import add_arguments, run

    add_arguments(parser)
    parser.set_defaults(run=run)

