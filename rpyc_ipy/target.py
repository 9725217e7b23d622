"""Where a session connects and how it authenticates: one value, checked once.

::

    target = ConnectionTarget("10.0.0.5", 18861, srp_user="alice", password_env="GPU_PW")
    session = open_session(target, password=...)      # rpyc_ipy.ipython.session

``%rpyc_connect`` builds one from its arguments, the remote kernel from its
``RemoteKernel`` traits (the fields have the traits' names), the kernelspec
installer from its options; all of them get the same checks, in the constructor,
as a :class:`~rpyc_ipy.errors.TargetError` that says what to change.
:meth:`ConnectionTarget.settings` is what a kernelspec writes
(``--RemoteKernel.NAME=VALUE``), and ``ConnectionTarget(**settings)`` is the same
target again.

A target never holds a password, only where it comes from: the environment
variable named by ``password_env``, the owner-only ``credentials_file``, or a
prompt when neither is set; :func:`rpyc_ipy.credentials.read_password` reads it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields, replace
from functools import cached_property
from typing import Literal

from rpyc_ipy.errors import TargetError
from rpyc_ipy.transports.sockets import is_loopback

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_SESSION_NAME",
    "DEFAULT_TIMEOUT",
    "ConnectionTarget",
    "format_address",
]

#: the port of an rpyc_ipy server with TLS or TLS-SRP (RPyC's classic TLS port)
DEFAULT_PORT = 18821
DEFAULT_TIMEOUT = 10.0
DEFAULT_SESSION_NAME = "remote"

Auth = Literal["srp", "tls", "none"]
PasswordSource = Literal["env", "file", "prompt"]
Setting = str | int | float | bool

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def format_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets (``[::1]:18821``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class ConnectionTarget:
    """A server, its authentication and the session's name; see the module docstring.

    SRP when ``srp_user`` is set, TLS with certificates when any of ``cert``,
    ``key``, ``ca``, ``fingerprint`` or ``tls`` is, plaintext TCP otherwise
    (loopback only, unless ``insecure``). An empty string means "not set".
    """

    host: str
    port: int
    srp_user: str | None = None
    password_env: str | None = None
    credentials_file: str | None = None
    cert: str | None = None
    key: str | None = None
    ca: str | None = None
    fingerprint: str | None = None
    tls: bool = False
    classic: bool = False
    insecure: bool = False
    session_name: str = DEFAULT_SESSION_NAME
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        # traits say "not set" with "", argparse with None: both mean the same target
        for name in ("srp_user", "password_env", "credentials_file", "cert", "key", "ca",
                     "fingerprint"):
            if getattr(self, name) == "":
                object.__setattr__(self, name, None)
        if isinstance(self.timeout, int) and not isinstance(self.timeout, bool):
            object.__setattr__(self, "timeout", float(self.timeout))
        self._check()

    def _check(self) -> None:
        if not self.host or any(c.isspace() for c in self.host):
            raise TargetError(f"bad host {self.host!r}: give a host name or an address "
                              "such as 10.0.0.5")
        if type(self.port) is not int or not 0 < self.port < 65536:
            raise TargetError(f"port must be 1-65535, not {self.port!r}")
        if not self.session_name.isidentifier():
            raise TargetError(f"session name {self.session_name!r} is not a Python name "
                              "(the session is bound to it as a variable)")
        if type(self.timeout) is not float or not self.timeout > 0:
            raise TargetError(f"timeout must be > 0 seconds, not {self.timeout!r}")
        if self.srp_user is not None and self._certificates:
            raise TargetError("choose SRP (--srp-user) or certificates "
                              "(--cert/--key/--ca/--fingerprint/--tls), not both")
        if (self.password_env or self.credentials_file) and self.srp_user is None:
            raise TargetError("--password-env and --credentials-file go with --srp-user: "
                              "they say where the SRP password comes from")
        if self.password_env and self.credentials_file:
            raise TargetError("choose --password-env or --credentials-file, not both")
        if self.password_env and not _ENV_NAME.match(self.password_env):
            raise TargetError(f"--password-env takes the NAME of an environment variable, "
                              f"not {self.password_env!r}")
        if self.key and not self.cert:
            raise TargetError("--key needs --cert (the client certificate it belongs to)")
        if self.plaintext_beyond_loopback and not self.insecure:
            raise TargetError(f"{self.host} is not this machine: authenticate with --srp-user "
                              "or --cert/--key/--ca, or pass --insecure to send everything "
                              "in plaintext")

    # -- facts ------------------------------------------------------------------------------

    @property
    def _certificates(self) -> bool:
        return bool(self.cert or self.key or self.ca or self.fingerprint or self.tls)

    @property
    def auth(self) -> Auth:
        """``"srp"`` (TLS-SRP), ``"tls"`` (TLS with certificates) or ``"none"`` (plaintext)."""
        if self.srp_user is not None:
            return "srp"
        return "tls" if self._certificates else "none"

    @cached_property
    def plaintext_beyond_loopback(self) -> bool:
        """Plaintext TCP to a host that is not this machine (what ``insecure`` allows)."""
        return self.auth == "none" and not is_loopback(self.host)

    @property
    def password_source(self) -> PasswordSource | None:
        """Where the SRP password comes from; ``None`` when there is no SRP."""
        if self.srp_user is None:
            return None
        if self.password_env:
            return "env"
        return "file" if self.credentials_file else "prompt"

    @property
    def address(self) -> str:
        """``host:port`` (an IPv6 host in brackets)."""
        return format_address(self.host, self.port)

    @property
    def label(self) -> str:
        """``user@host:port`` with SRP, else ``host:port``: the target as people read it."""
        return f"{self.srp_user}@{self.address}" if self.srp_user else self.address

    # -- derived targets and settings -----------------------------------------------------------

    def settings(self) -> dict[str, Setting]:
        """``host``, ``port`` and every field that differs from its default, by name, in
        field order: the ``--RemoteKernel.NAME=VALUE`` arguments of a kernelspec."""
        out: dict[str, Setting] = {"host": self.host, "port": self.port}
        for field in fields(self)[2:]:
            value = getattr(self, field.name)
            if value != field.default:
                out[field.name] = value
        return out

    def with_absolute_paths(self) -> ConnectionTarget:
        """This target with its files as absolute paths, for a process that starts in
        another directory. A certificate or key that does not exist is refused; the
        credentials file may be created later."""
        credentials = _absolute(self.credentials_file) if self.credentials_file else None
        return replace(self, cert=_existing(self.cert, "--cert"),
                       key=_existing(self.key, "--key"), ca=_existing(self.ca, "--ca"),
                       credentials_file=credentials)


def _absolute(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def _existing(path: str | None, option: str) -> str | None:
    if path is None:
        return None
    full = _absolute(path)
    if not os.path.isfile(full):
        raise TargetError(f"{option} {path} does not exist (or is not a file)")
    return full
