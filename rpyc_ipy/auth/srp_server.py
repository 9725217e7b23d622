"""TLS-SRP: username and password, no certificates: the server-side authenticator.

``SRPAuthenticator(userdb)`` takes a :class:`~rpyc_ipy.auth.userdb.UserDB` or the path
of one. Each accepted socket is taken through a TLS 1.2 SRP handshake (tlslite-ng)
against the verifiers in that file; the result is a
:class:`~rpyc_ipy.auth.srp_socket.TLSLiteSocket` and the username (``str``) as
credentials. A wrong password and an unknown user fail identically: same alert on
the wire, same work on the server, same throttling, same ``AuthenticationError``
text (:data:`~rpyc_ipy.auth.srp_socket.BAD_CREDENTIALS`, followed on the server by
the user name tried).

Password guessing is throttled per source address and per user name
(:class:`~rpyc_ipy.auth.throttle.LoginThrottle`): the check runs when the
ClientHello names the user, before the server does any SRP arithmetic, and a login
it refuses gets an ``access_denied`` alert
(:data:`~rpyc_ipy.auth.srp_socket.THROTTLED` on our clients) whether or not the
user exists. The server's error, and so its log line, names the user tried (escaped
and cut short: the name comes from the peer).

The file is re-read when it changes on disk (``rpyc-ipy users add`` takes effect
for the next connection); if it becomes unreadable, every login fails until it is
fixed, rather than continuing with stale data.

Clients connect with :func:`rpyc_ipy.auth.srp_client.srp_client_socket`.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from rpyc_ipy.auth import aes
from rpyc_ipy.auth.base import DEFAULT_HANDSHAKE_TIMEOUT, AuthResult, check_timeout, close_quietly
from rpyc_ipy.auth.srp_socket import (
    BAD_CREDENTIALS,
    LoginRefused,
    run_handshake,
    send_refusal_alert,
    srp_settings,
)
from rpyc_ipy.auth.throttle import LoginThrottle, address_key, printable_name
from rpyc_ipy.auth.userdb import UserDB
from rpyc_ipy.errors import AuthenticationError, ConfigError

__all__ = ["SRPAuthenticator"]

log = logging.getLogger("rpyc_ipy.auth")


class _VerifierView:
    """The mapping tlslite's server handshake reads: ``view[username] -> (N, g, s, v)``.

    One per handshake. Never raises ``KeyError``: unknown users get the database's
    fake entry. The lookup is where a login names its user, so it is also where the
    throttle counts the attempt, or refuses it (:class:`LoginRefused`).
    """

    def __init__(self, db: UserDB, throttle: LoginThrottle, peer: str,
                 raw: socket.socket) -> None:
        self._db = db
        self._throttle = throttle
        self._raw = raw
        self.peer = peer
        self.username: bytes | None = None  # as the peer sent it, once it has

    def __bool__(self) -> bool:  # tlslite tests "if verifierDB"
        return True

    def __getitem__(self, username: bytes) -> tuple[int, int, bytearray, int]:
        self.username = bytes(username)
        refusal = self._throttle.attempt(self.peer, self.username)
        if refusal is not None:
            send_refusal_alert(self._raw)
            locked = "this address" if refusal.kind == "address" else "this user name"
            raise LoginRefused(f"TLS-SRP login refused: too many failed logins; {locked} is "
                               f"locked for {refusal.wait:.1f} s more")
        n, g, salt, v = self._db.srp_entry(username)
        return n, g, bytearray(salt), v


class SRPAuthenticator:
    """Server-side TLS-SRP authenticator; call it with each accepted socket.

    ``auth(sock)`` returns ``(TLSLiteSocket, username)`` or closes ``sock`` and
    raises ``AuthenticationError``. The whole handshake must finish within
    ``handshake_timeout`` seconds. ``throttle`` limits password guessing (default:
    a :class:`~rpyc_ipy.auth.throttle.LoginThrottle` with its default settings).
    """

    def __init__(
        self,
        userdb: UserDB | str | os.PathLike[str],
        *,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self.userdb = userdb if isinstance(userdb, UserDB) else UserDB(userdb)
        self.handshake_timeout = check_timeout(handshake_timeout)
        self.throttle = throttle if throttle is not None else LoginThrottle()
        self._settings = srp_settings()  # validated once; tlslite copies it per handshake
        aes.ensure_installed()

    def __call__(self, sock: socket.socket) -> AuthResult:
        """Run the server side of the TLS-SRP handshake on ``sock``."""
        try:
            self.userdb.refresh()
        except ConfigError as exc:
            log.error("refusing TLS-SRP logins: %s", exc)
            close_quietly(sock)
            raise AuthenticationError("TLS-SRP user database unavailable") from exc

        try:
            peer = address_key(sock.getpeername())
        except OSError as exc:  # gone before we started
            close_quietly(sock)
            raise AuthenticationError("TLS-SRP handshake failed: the peer closed the "
                                      "connection") from exc
        view = _VerifierView(self.userdb, self.throttle, peer, sock)

        def start(conn: Any) -> Any:
            return conn.handshakeServerAsync(verifierDB=view, settings=self._settings)

        try:
            tls = run_handshake(sock, start, self.handshake_timeout, None)
        except AuthenticationError as exc:
            if view.username is None:
                raise
            # the log line of a failed login says which user was tried
            raise AuthenticationError(f"{exc} (user {printable_name(view.username)})") from exc
        # Defence in depth: a successful proof can only come from a stored
        # verifier, but never hand out credentials for a name we do not hold.
        if view.username is None or not self.userdb.contains(tls.username):
            close_quietly(tls)
            raise AuthenticationError(BAD_CREDENTIALS)
        self.throttle.succeeded(peer, view.username)
        return AuthResult(tls, tls.username)

    def __repr__(self) -> str:
        return f"<SRPAuthenticator {self.userdb.path!r}>"
