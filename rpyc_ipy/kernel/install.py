"""Kernelspecs for the remote kernel: ``install``, ``list``, ``remove``.

::

    python -m rpyc_ipy.kernel install --name gpu --host 10.0.0.5 --port 18821 \\
        --srp-user alice --password-env GPU_PASSWORD            # TLS-SRP
    python -m rpyc_ipy.kernel install --name lab --host lab.example.org --port 18821 \\
        --cert me.pem --key me.key --ca ca.pem --sys-prefix     # TLS certificates
    python -m rpyc_ipy.kernel list
    python -m rpyc_ipy.kernel remove gpu

(``rpyc-ipy kernel install ...`` is the same.) ``install`` writes ``kernel.json``
into a temporary directory and installs it with jupyter_client's
``KernelSpecManager.install_kernel_spec`` into the user's Jupyter data directory
(the default, ``--user``), this environment (``--sys-prefix``) or ``--prefix P``.
Its ``argv`` is::

    [python, "-m", "rpyc_ipy.kernel", "-f", "{connection_file}",
     "--RemoteKernel.host=...", "--RemoteKernel.port=...", ...]

The password is never written: the kernel reads it from the environment variable
named by ``--password-env``, from an owner-only ``--credentials-file``, or asks
for it in the notebook when the first cell runs.

The same module gives :func:`add_arguments` and :func:`run` to the ``rpyc-ipy``
command line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from importlib import resources
from typing import Any

from rpyc_ipy.credentials import check_owner_only
from rpyc_ipy.errors import UsageError
from rpyc_ipy.target import DEFAULT_PORT, DEFAULT_SESSION_NAME, DEFAULT_TIMEOUT, ConnectionTarget

__all__ = [
    "ACTIONS",
    "LOGOS",
    "STATIC_SPEC_NAME",
    "add_arguments",
    "install_kernel_spec",
    "kernel_argv",
    "kernel_spec",
    "main",
    "remove_kernel_spec",
    "rpyc_kernel_specs",
    "run",
]

PROG = "python -m rpyc_ipy.kernel"
ACTIONS = ("install", "list", "remove")
KERNEL_MODULE = "rpyc_ipy.kernel"
#: the "Python 3 (rpyc_ipy)" kernelspec installed with the wheel (a local kernel with
#: the extension loaded)
STATIC_SPEC_NAME = "rpyc_ipy"
EXTENSION_ARG = "--ext=rpyc_ipy"
#: the logos every kernelspec gets (drawn by tools/make_logos.py)
LOGOS = ("logo-32x32.png", "logo-64x64.png")
_RESOURCES = resources.files(KERNEL_MODULE).joinpath("resources")
_KERNEL_NAME = re.compile(r"^[a-z0-9._-]+$", re.IGNORECASE)  # what jupyter_client accepts
_TRAIT_ARG = re.compile(r"^--(?P<cls>[A-Za-z_]\w*)\.(?P<trait>[A-Za-z_]\w*)=(?P<value>.*)$",
                        re.DOTALL)


def _say(message: str) -> None:
    print(f"rpyc_ipy.kernel: {message}", file=sys.stderr, flush=True)


# -- the spec --------------------------------------------------------------------------------


def kernel_argv(target: ConnectionTarget, *, extra: Sequence[str] = (),
                python: str | None = None) -> list[str]:
    """The kernelspec ``argv`` that starts :class:`RemoteKernel` on ``target``: its
    :meth:`~rpyc_ipy.target.ConnectionTarget.settings` as ``--RemoteKernel.NAME=VALUE``."""
    argv = [python or sys.executable, "-m", KERNEL_MODULE, "-f", "{connection_file}"]
    argv.extend(f"--RemoteKernel.{name}={value}" for name, value in target.settings().items())
    argv.extend(extra)
    return argv


def kernel_spec(argv: list[str], *, display_name: str, interrupt_mode: str = "signal",
                metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``kernel.json`` document."""
    if interrupt_mode not in ("signal", "message"):
        raise UsageError(f"interrupt_mode is 'signal' or 'message', not {interrupt_mode!r}")
    return {
        "argv": argv,
        "display_name": display_name,
        "language": "python",
        "interrupt_mode": interrupt_mode,
        "env": {},
        "metadata": {"rpyc_ipy": metadata or {}},
    }


def _check_extra(extra: Sequence[str]) -> None:
    for arg in extra:
        if "password" in arg.lower() and not arg.startswith("--RemoteKernel.password_env="):
            raise UsageError(f"{arg!r}: passwords are never written into kernel.json")
        if not _TRAIT_ARG.match(arg):
            raise UsageError(f"{arg!r}: extra kernel arguments look like --Class.trait=value")


def _check_credentials_file(path: str) -> None:
    if not os.path.exists(path):
        _say(f"warning: {path} does not exist yet; create it owner-only (chmod 600) with the "
             "password on its first line")
        return
    check_owner_only(path)  # a CredentialsError, which is a UsageError


def install_kernel_spec(name: str, *, host: str, port: int = DEFAULT_PORT,
                        srp_user: str | None = None, password_env: str | None = None,
                        credentials_file: str | None = None, cert: str | None = None,
                        key: str | None = None, ca: str | None = None,
                        fingerprint: str | None = None, tls: bool = False,
                        classic: bool = False, insecure: bool = False,
                        timeout: float | None = None, session_name: str | None = None,
                        display_name: str | None = None, interrupt_mode: str = "signal",
                        extra: Sequence[str] = (), user: bool = False,
                        sys_prefix: bool = False, prefix: str | None = None,
                        python: str | None = None, kernel_spec_manager: Any = None) -> str:
    """Install a remote-kernel kernelspec; returns the directory it went to.

    The connection settings make a :class:`~rpyc_ipy.target.ConnectionTarget`
    (``timeout``/``session_name`` ``None``: the kernel's defaults), with its
    files made absolute. Where: ``prefix`` (``PREFIX/share/jupyter/kernels/NAME``),
    ``sys_prefix`` (this environment), ``user`` (the user's Jupyter data
    directory), or else the system-wide directory. Raises
    :class:`~rpyc_ipy.errors.UsageError` for settings that cannot work (and never
    takes a password).
    """
    if not _KERNEL_NAME.match(name or ""):
        raise UsageError(f"kernel name {name!r}: use letters, digits, '.', '_' and '-'")
    if name == STATIC_SPEC_NAME:
        raise UsageError(f"the name {STATIC_SPEC_NAME!r} belongs to the kernelspec installed "
                         "with rpyc_ipy; choose another")
    if sum(bool(x) for x in (user, sys_prefix, prefix)) > 1:
        raise UsageError("choose one of --user, --sys-prefix, --prefix")
    _check_extra(extra)
    target = ConnectionTarget(
        host, port, srp_user=srp_user, password_env=password_env,
        credentials_file=credentials_file, cert=cert, key=key, ca=ca, fingerprint=fingerprint,
        tls=tls, classic=classic, insecure=insecure,
        session_name=DEFAULT_SESSION_NAME if session_name is None else session_name,
        timeout=DEFAULT_TIMEOUT if timeout is None else timeout).with_absolute_paths()
    argv = kernel_argv(target, extra=extra, python=python)
    spec = kernel_spec(argv, display_name=display_name or f"Remote Python ({target.label})",
                       interrupt_mode=interrupt_mode,
                       metadata={"host": target.host, "port": target.port, "auth": target.auth,
                                 "user": target.srp_user, "classic": target.classic})
    if target.credentials_file:
        _check_credentials_file(target.credentials_file)
    if target.password_source == "prompt":
        _say("the kernel will ask for the password when the first cell runs")
    if target.classic:
        _say("warning: classic mode: the server runs any code sent to it; use only servers "
             "you own")
    from jupyter_client.kernelspec import KernelSpecManager

    ksm = kernel_spec_manager or KernelSpecManager()
    if sys_prefix:
        prefix = sys.prefix
    with tempfile.TemporaryDirectory(prefix="rpyc_ipy-kernelspec-") as tmp:
        source = os.path.join(tmp, name)
        os.mkdir(source)
        with open(os.path.join(source, "kernel.json"), "w", encoding="utf-8") as f:
            json.dump(spec, f, indent=1)
            f.write("\n")
        for logo in LOGOS:  # the launcher shows them instead of a letter
            with open(os.path.join(source, logo), "wb") as f:
                f.write(_RESOURCES.joinpath(logo).read_bytes())
        destination: str = ksm.install_kernel_spec(source, kernel_name=name, user=user,
                                                   prefix=prefix)
    return destination


# -- list and remove ---------------------------------------------------------------------------


def spec_settings(argv: Sequence[str]) -> dict[str, str]:
    """The ``--RemoteKernel.x=value`` settings in a kernelspec argv, by trait name."""
    settings: dict[str, str] = {}
    for arg in argv:
        found = _TRAIT_ARG.match(arg)
        if found and found.group("cls") == "RemoteKernel":
            settings[found.group("trait")] = found.group("value")
    return settings


def is_rpyc_spec(argv: Sequence[str]) -> bool:
    """A kernelspec argv that starts our remote kernel or loads our extension."""
    argv = list(argv)
    remote = any(argv[i] == "-m" and argv[i + 1] == KERNEL_MODULE
                 for i in range(len(argv) - 1))
    return remote or EXTENSION_ARG in argv


def rpyc_kernel_specs(kernel_spec_manager: Any = None) -> dict[str, dict[str, Any]]:
    """Installed kernelspecs of rpyc_ipy: ``{name: {"resource_dir": ..., "spec": {...}}}``."""
    from jupyter_client.kernelspec import KernelSpecManager

    ksm = kernel_spec_manager or KernelSpecManager()
    found: dict[str, dict[str, Any]] = {}
    for name, info in sorted(ksm.get_all_specs().items()):
        spec = info.get("spec") or {}
        if is_rpyc_spec(spec.get("argv") or ()):
            found[name] = info
    return found


def _spec_dir(name: str, user: bool, sys_prefix: bool, prefix: str | None) -> str | None:
    if prefix or sys_prefix:
        return os.path.join(prefix or sys.prefix, "share", "jupyter", "kernels", name)
    if user:
        from jupyter_core.paths import jupyter_data_dir

        return os.path.join(jupyter_data_dir(), "kernels", name)
    return None


def remove_kernel_spec(name: str, *, user: bool = False, sys_prefix: bool = False,
                       prefix: str | None = None, force: bool = False,
                       kernel_spec_manager: Any = None) -> str:
    """Remove one of our kernelspecs; returns the directory removed.

    Without a location, the one Jupyter would use. A kernelspec that is not
    rpyc_ipy's is left alone unless ``force``.
    """
    if not _KERNEL_NAME.match(name or ""):
        raise UsageError(f"bad kernel name {name!r}")
    path = _spec_dir(name, user, sys_prefix, prefix)
    if path is None:
        from jupyter_client.kernelspec import KernelSpecManager

        ksm = kernel_spec_manager or KernelSpecManager()
        path = ksm.find_kernel_specs().get(name)
        if path is None:
            raise UsageError(f"no kernelspec named {name!r}")
    spec_file = os.path.join(path, "kernel.json")
    if not os.path.isfile(spec_file):
        raise UsageError(f"no kernelspec named {name!r} in {os.path.dirname(path)}")
    try:
        with open(spec_file, encoding="utf-8") as f:
            argv = json.load(f).get("argv") or []
    except (OSError, ValueError, AttributeError):
        argv = []
    if not force and not is_rpyc_spec(argv):
        raise UsageError(f"{name!r} ({path}) is not an rpyc_ipy kernel; use --force to "
                         "remove it anyway")
    shutil.rmtree(path)
    return path


# -- the command line ---------------------------------------------------------------------------


class _RefusePassword(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        parser.error("passwords are never written into kernel.json: use --password-env VAR "
                     "(an environment variable), --credentials-file FILE (owner-only), or "
                     "let the kernel ask when the first cell runs")


def _location_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true",
                       help="your Jupyter data directory (the default for install)")
    where.add_argument("--sys-prefix", action="store_true",
                       help=f"this Python environment ({sys.prefix})")
    where.add_argument("--prefix", metavar="PREFIX",
                       help="PREFIX/share/jupyter/kernels (e.g. another environment)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``install``/``list``/``remove`` subcommands to ``parser``; each sets
    ``args.kernel_action``, and :func:`run` does the work."""
    sub = parser.add_subparsers(title="actions", metavar="ACTION", dest="kernel_action")

    install = sub.add_parser(
        "install", help="install a kernelspec whose cells run on a server",
        description="Install a Jupyter kernelspec for the remote kernel. Its argv carries "
                    "the connection settings; never the password, which the kernel reads "
                    "from --password-env or --credentials-file, or asks for.")
    install.add_argument("--name", required=True, help="kernelspec name (letters, digits, . _ -)")
    install.add_argument("--display-name", help="the name shown in Jupyter")
    install.add_argument("--host", required=True, help="the server")
    install.add_argument("--port", type=int, default=DEFAULT_PORT,
                         help=f"its port (default {DEFAULT_PORT})")
    auth = install.add_argument_group("authentication (one of SRP or certificates)")
    auth.add_argument("--srp-user", metavar="USER", help="log in with TLS-SRP as USER")
    auth.add_argument("--password-env", metavar="VAR",
                      help="the kernel reads the SRP password from environment variable VAR")
    auth.add_argument("--credentials-file", metavar="FILE",
                      help="the kernel reads the SRP password from FILE (first line; the "
                           "file must be owner-only)")
    auth.add_argument("--password", nargs="?", action=_RefusePassword, help=argparse.SUPPRESS)
    auth.add_argument("--cert", metavar="FILE", help="TLS client certificate (PEM)")
    auth.add_argument("--key", metavar="FILE", help="TLS client private key (PEM)")
    auth.add_argument("--ca", metavar="FILE", help="CA that signed the server certificate")
    auth.add_argument("--fingerprint", metavar="SHA256", help="pin the server certificate")
    auth.add_argument("--tls", action="store_true",
                      help="TLS verified against the system CA store")
    misc = install.add_argument_group("behaviour")
    misc.add_argument("--classic", action="store_true",
                      help="the server is a classic RPyC server (runs anything sent to it)")
    misc.add_argument("--insecure", action="store_true",
                      help="allow plaintext TCP to a host that is not this machine")
    misc.add_argument("--timeout", type=float, metavar="S",
                      help="seconds to connect and authenticate (default 10)")
    misc.add_argument("--session-name", metavar="NAME",
                      help="the session's name in %%local cells (default 'remote')")
    misc.add_argument("--interrupt-mode", choices=("signal", "message"), default="signal",
                      help="how Jupyter interrupts the kernel (default signal)")
    misc.add_argument("--kernel-arg", action="append", default=[], metavar="--Class.trait=V",
                      help="another setting for the kernel's argv, e.g. "
                           "--kernel-arg=--RPyCPolicy.trust_remote_display=True (repeatable)")
    misc.add_argument("--python", metavar="PATH",
                      help=f"the interpreter that runs the kernel (default {sys.executable})")
    _location_arguments(install)
    install.set_defaults(kernel_action="install")

    listing = sub.add_parser("list", help="list the rpyc_ipy kernelspecs Jupyter sees")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(kernel_action="list")

    remove = sub.add_parser("remove", help="remove an rpyc_ipy kernelspec")
    remove.add_argument("name", help="the kernelspec name")
    remove.add_argument("--force", action="store_true",
                        help="remove it even if it is not an rpyc_ipy kernelspec")
    _location_arguments(remove)
    remove.set_defaults(kernel_action="remove")
    parser.set_defaults(kernel_action=None)


def run(args: argparse.Namespace) -> int:
    """Do what :func:`add_arguments` parsed; returns the exit status.

    Raises :class:`~rpyc_ipy.errors.UsageError` (one line) when the settings
    cannot work.
    """
    action = getattr(args, "kernel_action", None)
    if action == "install":
        user = args.user or not (args.sys_prefix or args.prefix)
        destination = install_kernel_spec(
            args.name, host=args.host, port=args.port, srp_user=args.srp_user,
            password_env=args.password_env, credentials_file=args.credentials_file,
            cert=args.cert, key=args.key, ca=args.ca, fingerprint=args.fingerprint,
            tls=args.tls, classic=args.classic, insecure=args.insecure, timeout=args.timeout,
            session_name=args.session_name, display_name=args.display_name,
            interrupt_mode=args.interrupt_mode, extra=args.kernel_arg, user=user,
            sys_prefix=args.sys_prefix, prefix=args.prefix, python=args.python)
        print(f"installed kernelspec {args.name!r} in {destination}", flush=True)
        return 0
    if action == "list":
        specs = rpyc_kernel_specs()
        if args.json:
            print(json.dumps(specs, indent=1, sort_keys=True))
            return 0
        if not specs:
            print("no rpyc_ipy kernelspecs (install one with "
                  f"`{PROG} install --name N --host H --port P ...`)")
            return 0
        rows = [("NAME", "RUNS CELLS ON", "DIRECTORY")]
        for name, info in specs.items():
            argv = (info.get("spec") or {}).get("argv") or []
            settings = spec_settings(argv)
            if "host" in settings:
                user = f"{settings['srp_user']}@" if settings.get("srp_user") else ""
                target = f"{user}{settings['host']}:{settings.get('port', DEFAULT_PORT)}"
            else:
                target = "this kernel (%load_ext rpyc_ipy)"
            rows.append((name, target, str(info.get("resource_dir", ""))))
        widths = [max(len(row[i]) for row in rows) for i in range(2)]
        for row in rows:
            print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}")
        return 0
    if action == "remove":
        path = remove_kernel_spec(args.name, user=args.user, sys_prefix=args.sys_prefix,
                                  prefix=args.prefix, force=args.force)
        print(f"removed kernelspec {args.name!r} ({path})", flush=True)
        return 0
    raise UsageError(f"say what to do: {', '.join(ACTIONS)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Manage kernelspecs of the rpyc_ipy remote kernel. Without an action "
                    "(as Jupyter runs it: -f CONNECTION_FILE ...) this module starts the "
                    "kernel itself.")
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rpyc_ipy.kernel install|list|remove ...``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.kernel_action is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return run(args)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except OSError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        return 1
