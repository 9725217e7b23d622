"""Client-side TLS-SRP: log in to an ``SRPAuthenticator`` server with a username and
password, no certificates.

Typical use::

    sock = socket.create_connection((host, port), timeout=10)
    tls = srp_client_socket(sock, "alice", password)   # password from the caller
    # hand `tls` to the stream/transport; it has the socket surface the core uses

SRP authenticates both ends: a server that does not hold alice's verifier cannot
complete the handshake, so there is nothing to "verify" separately. This module
never reads a password from anywhere but its argument.
"""

from __future__ import annotations

import socket
from typing import Any

from rpyc_ipy.auth.base import DEFAULT_HANDSHAKE_TIMEOUT, close_quietly
from rpyc_ipy.auth.srp_socket import TLSLiteSocket, run_handshake, srp_settings
from rpyc_ipy.auth.userdb import password_bytes, username_bytes
from rpyc_ipy.errors import UsageError

__all__ = ["TLSLiteSocket", "srp_client_socket"]


def srp_client_socket(
    sock: socket.socket,
    username: str | bytes,
    password: str | bytes,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
) -> TLSLiteSocket:
    """TLS-SRP-handshake the connected ``sock`` as ``username`` with ``password``.

    Returns a :class:`TLSLiteSocket` (socket surface, original timeout mode). On any
    failure ``sock`` is closed and ``AuthenticationError`` raised; a wrong password
    and an unknown user give the same message. Bad arguments raise ``UsageError``.
    """
    try:
        user = username_bytes(username)
        pw = password_bytes(password)
    except UsageError:
        close_quietly(sock)
        raise
    settings = srp_settings()

    def start(conn: Any) -> Any:
        # tlslite wants bytearrays here, whatever the caller passed
        return conn.handshakeClientSRP(
            bytearray(user), bytearray(pw), settings=settings, async_=True
        )

    return run_handshake(sock, start, handshake_timeout, user.decode("utf-8"))
