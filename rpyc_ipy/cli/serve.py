"""``rpyc-ipy serve``: serve a service over TCP, TLS, TLS-SRP or stdin/stdout.

``serve`` binds 127.0.0.1 unless ``--host`` says otherwise, and refuses any other
address without ``--srp-db`` or ``--cert`` unless ``--insecure-no-auth`` is given.
Once listening it prints one line on standard output::

    rpyc-ipy: serving NAME on HOST:PORT (auth: srp|tls|none)

then logs one line per connection (peer, user, service) and per refused login on
standard error, and stops cleanly (exit status 0) on Ctrl-C or SIGTERM.
:func:`run_serve` is the whole command; :func:`import_service` finds ``module:Class``.
Importing this module registers the subcommand (see :mod:`rpyc_ipy.cli`).
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
from types import FrameType, ModuleType
from typing import Any, NoReturn, TextIO

from rpyc_ipy.auth.throttle import DEFAULT_FORGET_AFTER as FORGET_AFTER
from rpyc_ipy.auth.throttle import DEFAULT_FREE_FAILURES as FREE_FAILURES
from rpyc_ipy.auth.throttle import DEFAULT_MAX_DELAY as MAX_DELAY
from rpyc_ipy.cli.common import PROG, CLIError, command, note
from rpyc_ipy.target import format_address

__all__ = ["DEFAULT_PORT", "DEFAULT_TLS_PORT", "import_service", "run_serve"]

log = logging.getLogger("rpyc_ipy.cli")

#: RPyC's classic ports: plain TCP, and TLS (certificates or SRP)
DEFAULT_PORT = 18812
DEFAULT_TLS_PORT = 18821
NOTEBOOK_SERVICE = "rpyc_ipy.remote:ExecutionService"


class _Stop(BaseException):
    """Raised in the main thread by the SIGTERM and Ctrl-C handlers (like
    KeyboardInterrupt); ``how`` names the signal for the closing note."""

    def __init__(self, how: str) -> None:
        super().__init__(how)
        self.how = how


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
    auth.add_argument("--login-free-failures", type=_positive_int, default=None, metavar="N",
                      help="TLS-SRP: failed logins from one address, or for one user name, "
                           "that may come back to back; the last one locks them for 1 s "
                           f"(default {FREE_FAILURES})")
    auth.add_argument("--login-max-delay", type=_positive_float, default=None,
                      metavar="SECONDS",
                      help="TLS-SRP: the longest lock; each failure after the free ones "
                           f"locks twice as long as the one before, up to this (default "
                           f"{MAX_DELAY:g})")
    auth.add_argument("--login-forget-after", type=_positive_float, default=None,
                      metavar="SECONDS",
                      help="TLS-SRP: forget one failed login of an address or user name "
                           f"per this many seconds (default {FORGET_AFTER:g})")
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

    runtime = parser.add_argument_group(
        "notebook sessions (--notebook): each session runs in a worker process of its own")
    runtime.add_argument("--idle-timeout", type=_positive_float, default=4 * 3600.0,
                         metavar="SECONDS",
                         help="end a session nobody is attached to and nothing runs in after "
                              "this long (default 14400: 4 hours)")
    runtime.add_argument("--max-sessions", type=_positive_int, default=64, metavar="N",
                         help="sessions on this server at once (default 64)")
    runtime.add_argument("--max-sessions-per-user", type=_positive_int, default=8, metavar="N",
                         help="sessions one user may have at once (default 8)")
    runtime.add_argument("--output-buffer", type=_size, default=4 << 20, metavar="CHARS",
                         help="output kept per cell while nobody is attached, e.g. 16M "
                              "(default 4M); past it the oldest is dropped, and the client "
                              "is told how much")
    runtime.add_argument("--worker-limit", action="append", default=[], type=_limit,
                         metavar="RLIMIT_X=N",
                         help="a resource limit of every worker, e.g. RLIMIT_AS=8G, "
                              "RLIMIT_NOFILE=1024, RLIMIT_CPU=3600 (repeat for more)")
    runtime.add_argument("--run-as", action="append", default=[], type=_mapping,
                         metavar="USER=ACCOUNT",
                         help="run USER's workers as the OS account ACCOUNT, with its groups "
                              "and home directory (the server must run as root; repeat)")
    runtime.add_argument("--require-run-as", action="store_true",
                         help="refuse sessions to users without a --run-as account")
    runtime.add_argument("--file-root", action="append", default=[], metavar="FOLDER",
                         help="a folder where sessions may upload and download files (repeat "
                              "for more; default: the working directory and the home of "
                              "the account each worker runs as)")

    misc = parser.add_argument_group("server")
    misc.add_argument("-m", "--mode", choices=["threaded", "forking", "oneshot", "stdio"],
                      default="threaded",
                      help="threaded: every client at once (default); forking: each client "
                           "in a child process of its own; oneshot: one client, then exit; "
                           "stdio: as --stdio")
    misc.add_argument("--processes", type=_positive_int, default=1, metavar="N",
                      help="threaded mode: serve from N worker processes, each client in one "
                           "of them (the service's state is per process; POSIX; default 1)")
    misc.add_argument("--max-connections", type=_positive_int, default=1024, metavar="N",
                      help="clients served at once; more are refused (default 1024)")
    misc.add_argument("--max-pending-connections", type=_positive_int, default=64, metavar="N",
                      help="clients not yet logged in (nor sent a valid request) kept at once; "
                           "more are closed (default 64)")
    misc.add_argument("--max-pending-per-address", type=_positive_int, default=16, metavar="N",
                      help="the same, from one source address (default 16)")
    misc.add_argument("--pending-frame-limit", type=_size, default=1 << 20, metavar="SIZE",
                      help="largest frame from a client not yet logged in (default 1M)")
    misc.add_argument("--frame-budget", type=_size, default=512 << 20, metavar="SIZE",
                      help="memory for large frames being received, all clients together; "
                           "a frame that does not fit is refused (default 512M)")
    misc.add_argument("--log-level", default="info",
                      choices=["debug", "info", "warning", "error"],
                      help="logging level on stderr (default info: one line per connection)")
    misc.add_argument("--logfile", metavar="FILE",
                      help="write the log to FILE instead of stderr")

    registry = parser.add_argument_group(
        "registry (announce this server's service; see `rpyc-ipy registry`)")
    registry.add_argument("--register", action="store_true",
                          help="register with a registry while serving, unregister on exit")
    registry.add_argument("--registry-type", type=str.upper, choices=["UDP", "TCP"],
                          default="UDP", help="the registry's protocol (default UDP)")
    registry.add_argument("--registry-host", metavar="HOST",
                          help="the registry's address (UDP default: broadcast "
                               "255.255.255.255; TCP: required)")
    registry.add_argument("--registry-port", type=_port, default=18811, metavar="PORT",
                          help="the registry's port (default 18811)")
    parser.set_defaults(run=run_serve)


def _port(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _limit(text: str) -> tuple[str, int]:
    name, sep, value = text.partition("=")
    number, unit = value.rstrip("KMGTkmgt"), value[len(value.rstrip("KMGTkmgt")):].upper()
    if not sep or not name.startswith("RLIMIT_") or not number.isdigit() or unit not in _UNITS:
        raise argparse.ArgumentTypeError(
            f"give a resource limit as RLIMIT_NAME=NUMBER[K|M|G], e.g. RLIMIT_AS=8G, "
            f"not {text!r}")
    return name, int(number) * _UNITS[unit]


def _size(text: str) -> int:
    number, unit = text.rstrip("KMGTkmgt"), text[len(text.rstrip("KMGTkmgt")):].upper()
    if not number.isdigit() or unit not in _UNITS or int(number) < 1:
        raise argparse.ArgumentTypeError(f"give a size as NUMBER[K|M|G], e.g. 16M, not {text!r}")
    return int(number) * _UNITS[unit]


def _mapping(text: str) -> tuple[str, str]:
    user, sep, account = text.partition("=")
    if not sep or not user or not account:
        raise argparse.ArgumentTypeError(f"give USER=ACCOUNT, not {text!r}")
    return user, account


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
    if args.mode == "stdio":
        args.stdio = True
    _check_serve_options(args)
    _configure_logging(args.log_level, args.logfile)
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
    if args.notebook and args.mode in ("forking", "oneshot"):
        raise CLIError(f"--notebook serves many clients from one process: --mode {args.mode} "
                       "does not apply", 2)
    if args.stdio and args.mode in ("forking", "oneshot"):
        raise CLIError(f"--stdio serves one client over stdin/stdout: --mode {args.mode} "
                       "does not apply", 2)
    if args.processes > 1 and (args.mode != "threaded" or args.stdio or args.notebook):
        what = "--notebook" if args.notebook else "--stdio" if args.stdio else f"--mode {args.mode}"
        raise CLIError(f"--processes applies to --mode threaded only, not with {what} (a "
                       "notebook's sessions and data channels live in one process)", 2)
    if args.register and args.stdio:
        raise CLIError("--register announces a socket server: it does not apply to stdio", 2)
    if args.register and args.registry_type == "TCP" and not args.registry_host:
        raise CLIError("--registry-type TCP needs --registry-host (the registry's address)", 2)
    if args.key and not args.cert:
        raise CLIError("--key needs --cert", 2)
    if args.ca and not args.cert:
        raise CLIError("--ca needs --cert (the server's own certificate)", 2)
    if args.srp_db and args.cert:
        raise CLIError("choose one authentication: --srp-db or --cert, not both", 2)
    throttle_flags = [flag for flag, value in (
        ("--login-free-failures", args.login_free_failures),
        ("--login-max-delay", args.login_max_delay),
        ("--login-forget-after", args.login_forget_after)) if value is not None]
    if throttle_flags and not args.srp_db:
        raise CLIError(f"{', '.join(throttle_flags)}: only TLS-SRP logins are throttled; "
                       "add --srp-db FILE or drop the flag", 2)
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


def _configure_logging(level: str, logfile: str | None = None) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        **({"filename": logfile} if logfile else {"stream": sys.stderr}),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.captureWarnings(True)


def _load_service(args: argparse.Namespace) -> Any:
    if args.classic:
        from rpyc_ipy.core.service import SlaveService

        return SlaveService
    if args.notebook:
        service = _notebook_service()
        options: dict[str, Any] = {"registry": _session_registry(args)}
        if args.allow_loopback_plaintext:
            logging.getLogger("rpyc_ipy.cli").warning(
                "--allow-loopback-plaintext: any local user of this machine can run code "
                "through this server without a password")
            options["allow_loopback_plaintext"] = True
        return service.configured(**options)
    return import_service(args.service, args.app_dir)


def _session_registry(args: argparse.Namespace) -> Any:
    """The notebook sessions of this server, from the --idle-timeout ... --run-as options."""
    from rpyc_ipy.errors import ConfigError
    from rpyc_ipy.remote import RuntimeSettings, SessionRegistry

    try:
        settings = RuntimeSettings(
            idle_timeout=args.idle_timeout, max_sessions=args.max_sessions,
            max_buffered_output=args.output_buffer,
            max_sessions_per_user=args.max_sessions_per_user,
            limits=dict(args.worker_limit), run_as=dict(args.run_as),
            require_run_as=args.require_run_as,
            file_roots=tuple(os.path.abspath(os.path.expanduser(r)) for r in args.file_root))
    except ConfigError as exc:
        raise CLIError(f"--notebook: {exc}", 2) from None
    if not settings.run_as and args.srp_db:
        from rpyc_ipy.auth import UserDB

        users = UserDB(args.srp_db).list()
        if len(users) > 1:
            log.warning("%d users in %s share this server's OS account (%s): their sessions "
                        "are separate processes, but each can read the others' files; map "
                        "users to accounts with --run-as USER=ACCOUNT (as root)",
                        len(users), args.srp_db, _username())
    return SessionRegistry(settings)


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
        return SRPAuthenticator(db, throttle=_login_throttle(args)), "srp"
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


def _login_throttle(args: argparse.Namespace) -> Any:
    from rpyc_ipy.auth.throttle import DEFAULT_BASE_DELAY, LoginThrottle

    max_delay = MAX_DELAY if args.login_max_delay is None else args.login_max_delay
    return LoginThrottle(
        free_failures=args.login_free_failures or FREE_FAILURES,
        # a maximum under the first step is the first step
        base_delay=min(DEFAULT_BASE_DELAY, max_delay),
        max_delay=max_delay,
        forget_after=args.login_forget_after or FORGET_AFTER,
    )


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
    host = "127.0.0.1" if args.host is None else args.host
    port = args.port
    if port is None:
        port = DEFAULT_TLS_PORT if authenticator is not None else DEFAULT_PORT
    if auth_kind == "none" and not _is_loopback(host):
        log.warning("serving %s on %s WITHOUT authentication or encryption "
                    "(--insecure-no-auth): anyone who can reach the port can connect%s",
                    name, host, " and run anything" if args.classic else "")
    sessions = service.registry if args.notebook else None
    extra = {"processes": args.processes} if args.processes > 1 else {}
    try:
        server = _server_class(args.mode)(
            service, hostname=host, port=port, authenticator=authenticator, **extra,
            max_connections=args.max_connections, allow_insecure_remote=args.insecure_no_auth,
            max_pending_connections=args.max_pending_connections,
            max_pending_per_address=args.max_pending_per_address,
            pending_frame_limit=args.pending_frame_limit, frame_budget=args.frame_budget,
            registrar=_registrar(args), auto_register=args.register,
            channel_handler=None if sessions is None else service.channel_handler())
    except OSError as exc:
        raise CLIError(f"cannot listen on {format_address(host, port)}: {exc.strerror or exc}"
                       + (" (choose another with --port, or --port 0 for any free port)"
                          if port else "")) from None
    with _stop_signals():
        try:
            print(f"{PROG}: serving {name} on {format_address(server.host, server.port)} "
                  f"(auth: {auth_kind})", flush=True)
            server.start()  # closes the server when it returns or raises
        except _Stop as exc:
            server.close()
            note(f"stopped ({exc.how}); server closed")
        finally:
            if sessions is not None:
                sessions.close()  # every session's worker ends with the server
    return 0


def _server_class(mode: str) -> Any:
    from rpyc_ipy.servers import OneShotServer, ThreadedServer
    from rpyc_ipy.servers.forking import ForkingServer

    return {"threaded": ThreadedServer, "forking": ForkingServer, "oneshot": OneShotServer}[mode]


def _registrar(args: argparse.Namespace) -> Any:
    """The registry client for --register (``None`` without it)."""
    if not args.register:
        return None
    from rpyc_ipy.servers.registry import TCPRegistryClient, UDPRegistryClient

    if args.registry_type == "TCP":
        return TCPRegistryClient(args.registry_host, port=args.registry_port)
    return UDPRegistryClient(args.registry_host or "255.255.255.255", port=args.registry_port)


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
    with _stop_signals():
        try:
            conn.serve_all()
        except _Stop:
            conn.close()
    logging.getLogger("rpyc_ipy.server").info("connection stdio closed")
    return 0


class _stop_signals:
    """SIGTERM and Ctrl-C (unless ignored) raise :class:`_Stop` in the main thread; a
    second one during shutdown ends the process at once."""

    def __init__(self) -> None:
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> _stop_signals:
        for sig in (signal.SIGINT, getattr(signal, "SIGTERM", None)):
            if sig is not None:
                self._saved[sig] = signal.getsignal(sig)
                if self._saved[sig] is not signal.SIG_IGN:
                    signal.signal(sig, self._first)
        return self

    def _first(self, signum: int, frame: FrameType | None) -> NoReturn:
        self.shutting_down()
        raise _Stop("interrupt" if signum == signal.SIGINT else signal.Signals(signum).name)

    def shutting_down(self) -> None:
        """From now on a stop signal ends the process at once."""
        for sig, before in self._saved.items():
            if before is not signal.SIG_IGN:
                signal.signal(sig, self._again)

    @staticmethod
    def _again(signum: int, frame: FrameType | None) -> None:
        note("stopping at once")
        os._exit(1)

    def __exit__(self, *exc_info: Any) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
