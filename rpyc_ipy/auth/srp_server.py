"""TLS-SRP: username and password, no certificates: the server-side authenticator.

``SRPAuthenticator(userdb)`` takes a :class:`~rpyc_ipy.auth.userdb.UserDB` or the path
of one. Each accepted socket is taken through a TLS 1.2 SRP handshake (tlslite-ng)
against the verifiers in that file; the result is a
:class:`~rpyc_ipy.auth.srp_socket.TLSLiteSocket` and the username (``str``) as
credentials. A wrong password and an unknown user fail identically: same alert on
the wire, same work on the server, same ``AuthenticationError`` text
(:data:`~rpyc_ipy.auth.srp_socket.BAD_CREDENTIALS`).

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
from rpyc_ipy.auth.srp_socket import BAD_CREDENTIALS, run_handshake, srp_settings
from rpyc_ipy.auth.userdb import UserDB
from rpyc_ipy.errors import AuthenticationError, ConfigError

__all__ = ["SRPAuthenticator"]

log = logging.getLogger("rpyc_ipy.auth")


class _VerifierView:
    """The mapping tlslite's server handshake reads: ``view[username] -> (N, g, s, v)``.

    Never raises ``KeyError``: unknown users get the database's fake entry.
    """

    def __init__(self, db: UserDB) -> None:
        self._db = db

    def __bool__(self) -> bool:  # tlslite tests "if verifierDB"
        return True

    def __getitem__(self, username: bytes) -> tuple[int, int, bytearray, int]:
        n, g, salt, v = self._db.srp_entry(username)
        return n, g, bytearray(salt), v


class SRPAuthenticator:
    """Server-side TLS-SRP authenticator; call it with each accepted socket.

    ``auth(sock)`` returns ``(TLSLiteSocket, username)`` or closes ``sock`` and
    raises ``AuthenticationError``. The whole handshake must finish within
    ``handshake_timeout`` seconds.
    """

    def __init__(
        self,
        userdb: UserDB | str | os.PathLike[str],
        *,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    ) -> None:
        self.userdb = userdb if isinstance(userdb, UserDB) else UserDB(userdb)
        self.handshake_timeout = check_timeout(handshake_timeout)
        self._view = _VerifierView(self.userdb)
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

        def start(conn: Any) -> Any:
            return conn.handshakeServerAsync(verifierDB=self._view, settings=self._settings)

        tls = run_handshake(sock, start, self.handshake_timeout, None)
        # Defence in depth: a successful proof can only come from a stored
        # verifier, but never hand out credentials for a name we do not hold.
        if not self.userdb.contains(tls.username):
            close_quietly(tls)
            raise AuthenticationError(BAD_CREDENTIALS)
        return AuthResult(tls, tls.username)

    def __repr__(self) -> str:
        return f"<SRPAuthenticator {self.userdb.path!r}>"
