"""TLS with certificates on the stdlib :mod:`ssl` module: the server-side authenticator.

Build one :class:`SSLAuthenticator` per server and pass it as the server's
``authenticator``; each accepted socket comes back as an ``ssl.SSLSocket`` plus the
client certificate (``getpeercert()``) as credentials. Clients connect with
:func:`rpyc_ipy.auth.tls_client.create_client_context` and
:func:`rpyc_ipy.auth.tls_client.wrap_client_socket`.

Differences from RPyC's authenticator of the same name, all on the safe side:

* the ``SSLContext`` is built and checked once, at construction (a bad key or path
  fails there, not at the first client);
* TLS 1.2 is the minimum; ``ssl_version`` may only select TLS 1.2 or "best available";
* ``cert_reqs`` other than ``CERT_NONE`` requires ``ca_certs``: client certificates
  are never checked against the system's public CA store;
* the handshake has a deadline (``handshake_timeout``).
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Callable
from typing import Any

from rpyc_ipy.auth.base import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    AuthResult,
    Deadline,
    check_timeout,
    close_quietly,
    handshake_timed_out,
    wait_readable,
    wait_writable,
)
from rpyc_ipy.errors import AuthenticationError, ConfigError

__all__ = ["SSLAuthenticator", "describe_tls_error", "drive_ssl_handshake", "tls_handshake"]

# PROTOCOL_TLS and PROTOCOL_SSLv23 are the same "negotiate the best" value.
_NEGOTIATE = {ssl.PROTOCOL_TLS, ssl.PROTOCOL_TLS_SERVER}
_TLS12_ONLY = getattr(ssl, "PROTOCOL_TLSv1_2", None)
_VERIFY_MODES = {ssl.CERT_NONE, ssl.CERT_OPTIONAL, ssl.CERT_REQUIRED}


def drive_ssl_handshake(tls: ssl.SSLSocket, deadline: Deadline, what: str = "TLS") -> None:
    """Run ``tls.do_handshake()`` on a non-blocking socket until done or ``deadline``.

    Raises ``AuthenticationError`` on timeout; TLS and socket errors propagate (map
    them with :func:`describe_tls_error`).
    """
    while True:
        try:
            tls.do_handshake()
            return
        except ssl.SSLWantReadError:
            ready = wait_readable(tls, deadline)
        except ssl.SSLWantWriteError:
            ready = wait_writable(tls, deadline)
        if not ready:
            raise handshake_timed_out(what, deadline.timeout or 0.0)


def describe_tls_error(exc: BaseException) -> str:
    """One line saying why a TLS handshake failed, for ``AuthenticationError``."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError | ConnectionError):
        return "TLS handshake failed: the peer closed the connection"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or exc.strerror or str(exc)
        return f"TLS handshake failed: {reason}"
    return f"TLS handshake failed: {exc}"


def tls_handshake(
    sock: socket.socket,
    context: ssl.SSLContext,
    timeout: float,
    *,
    server_side: bool,
    server_hostname: str | None = None,
    check: Callable[[ssl.SSLSocket], None] | None = None,
) -> ssl.SSLSocket:
    """Wrap ``sock`` with ``context`` and run the handshake within ``timeout`` seconds,
    then ``check(tls)`` if given (raising ``AuthenticationError`` to refuse the peer).

    The one set-up both halves share (:class:`SSLAuthenticator` and
    :func:`rpyc_ipy.auth.tls_client.wrap_client_socket`). Returns the
    ``ssl.SSLSocket`` back in ``sock``'s original timeout mode; on any failure
    ``sock`` is closed and ``AuthenticationError`` raised.
    """
    try:
        original_timeout = sock.gettimeout()
        sock.setblocking(False)
        tls = context.wrap_socket(sock, server_side=server_side, do_handshake_on_connect=False,
                                  server_hostname=server_hostname)
    except (OSError, ValueError) as exc:
        close_quietly(sock)
        raise AuthenticationError(describe_tls_error(exc)) from exc
    try:
        drive_ssl_handshake(tls, Deadline(timeout))
        if check is not None:
            check(tls)
        tls.settimeout(original_timeout)
    except AuthenticationError:
        close_quietly(tls)
        raise
    except (OSError, ValueError) as exc:
        close_quietly(tls)
        raise AuthenticationError(describe_tls_error(exc)) from exc
    except BaseException:  # Ctrl-C during the handshake: the socket is ours to close
        close_quietly(tls)
        raise
    return tls


def _build_server_context(
    keyfile: str | None,
    certfile: str,
    ca_certs: str | None,
    cert_reqs: ssl.VerifyMode,
    ssl_version: int | None,
    ciphers: str | None,
) -> ssl.SSLContext:
    if ssl_version is not None and ssl_version not in _NEGOTIATE and ssl_version != _TLS12_ONLY:
        raise ConfigError(
            f"ssl_version={ssl_version!r} is not accepted: use None (TLS 1.2 or newer) or "
            "ssl.PROTOCOL_TLSv1_2"
        )
    if cert_reqs != ssl.CERT_NONE and ca_certs is None:
        # RPyC would fall back to the system CA store here, which would let anyone
        # holding a publicly issued certificate in. Demand an explicit CA file.
        raise ConfigError("cert_reqs other than CERT_NONE needs ca_certs (the CA file)")
    # PROTOCOL_TLS_SERVER, not SSLContext(ssl_version): the version constants are
    # deprecated; the range is set below instead.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ssl_version is not None and ssl_version == _TLS12_ONLY:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    try:
        ctx.load_cert_chain(certfile, keyfile=keyfile)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load certificate {certfile!r} / key {keyfile!r}: {exc}") from exc
    if ca_certs is not None:
        try:
            ctx.load_verify_locations(cafile=ca_certs)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load CA file {ca_certs!r}: {exc}") from exc
    if ciphers is not None:
        try:
            ctx.set_ciphers(ciphers)
        except ssl.SSLError as exc:
            raise ConfigError(f"invalid cipher list {ciphers!r}: {exc}") from exc
    ctx.verify_mode = cert_reqs
    return ctx


class SSLAuthenticator:
    """Server-side TLS authenticator; call it with each accepted socket.

    ``SSLAuthenticator(keyfile, certfile, ca_certs=None, cert_reqs=None,
    ssl_version=None, ciphers=None, *, handshake_timeout=10.0)``, the argument list
    of RPyC's. With ``ca_certs`` given, client certificates are required (mutual
    TLS) unless ``cert_reqs`` says otherwise. ``keyfile`` may be ``None`` when the
    key is inside ``certfile``.

    ``auth(sock)`` returns ``(ssl_socket, getpeercert())`` with the socket back in
    its original blocking mode, or closes ``sock`` and raises ``AuthenticationError``.
    """

    def __init__(
        self,
        keyfile: str | os.PathLike[str] | None,
        certfile: str | os.PathLike[str],
        ca_certs: str | os.PathLike[str] | None = None,
        cert_reqs: int | None = None,
        ssl_version: int | None = None,
        ciphers: str | None = None,
        *,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    ) -> None:
        self.keyfile = os.fspath(keyfile) if keyfile is not None else None
        self.certfile = os.fspath(certfile)
        self.ca_certs = os.fspath(ca_certs) if ca_certs else None
        if cert_reqs is None:
            cert_reqs = ssl.CERT_REQUIRED if self.ca_certs else ssl.CERT_NONE
        if cert_reqs not in _VERIFY_MODES:
            raise ConfigError(f"cert_reqs must be an ssl.CERT_* value, got {cert_reqs!r}")
        self.cert_reqs = ssl.VerifyMode(cert_reqs)
        self.ssl_version = ssl_version
        self.ciphers = ciphers
        self.handshake_timeout = check_timeout(handshake_timeout)
        #: The one server context, shared by every connection (it is thread-safe).
        self.context = _build_server_context(
            self.keyfile, self.certfile, self.ca_certs, self.cert_reqs, ssl_version, ciphers
        )

    def __call__(self, sock: socket.socket) -> AuthResult:
        """Run the server-side TLS handshake on ``sock``; see the class docstring."""
        tls = tls_handshake(sock, self.context, self.handshake_timeout, server_side=True)
        credentials: dict[str, Any] | None = tls.getpeercert()
        return AuthResult(tls, credentials)

    def __repr__(self) -> str:
        mode = {ssl.CERT_NONE: "no client cert", ssl.CERT_OPTIONAL: "optional client cert"}
        return (
            f"<SSLAuthenticator {self.certfile!r} "
            f"{mode.get(self.cert_reqs, 'client cert required')}>"
        )
