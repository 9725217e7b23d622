"""Authenticators (server side) and the SRP user database.

* :class:`~rpyc_ipy.auth.tls_server.SSLAuthenticator`: TLS with certificates (stdlib ``ssl``).
* :class:`~rpyc_ipy.auth.srp_server.SRPAuthenticator`: TLS-SRP username/password (tlslite-ng).
* :class:`~rpyc_ipy.auth.userdb.UserDB`: the verifier file SRP logins are checked against.
* :class:`~rpyc_ipy.auth.throttle.LoginThrottle`: how many failed SRP logins an
  address or a user name gets before it is locked out for a while.
* :mod:`rpyc_ipy.auth.base`: the contract every authenticator follows.

Client-side counterparts live in :mod:`rpyc_ipy.auth.tls_client` and
:mod:`rpyc_ipy.auth.srp_client`. Names are imported lazily: importing this package
does not load tlslite-ng.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rpyc_ipy._lazy import lazy_attributes
from rpyc_ipy.auth.base import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    Authenticator,
    AuthResult,
    Credentials,
    SocketLike,
)
from rpyc_ipy.errors import AuthenticationError

if TYPE_CHECKING:
    from rpyc_ipy.auth.srp_server import SRPAuthenticator
    from rpyc_ipy.auth.srp_socket import TLSLiteSocket
    from rpyc_ipy.auth.throttle import LoginThrottle
    from rpyc_ipy.auth.tls_server import SSLAuthenticator
    from rpyc_ipy.auth.userdb import UserDB

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "AuthResult",
    "AuthenticationError",
    "Authenticator",
    "Credentials",
    "LoginThrottle",
    "SRPAuthenticator",
    "SSLAuthenticator",
    "SocketLike",
    "TLSLiteSocket",
    "UserDB",
]

_LAZY = {
    "SSLAuthenticator": "rpyc_ipy.auth.tls_server",
    "LoginThrottle": "rpyc_ipy.auth.throttle",
    "SRPAuthenticator": "rpyc_ipy.auth.srp_server",
    "TLSLiteSocket": "rpyc_ipy.auth.srp_socket",
    "UserDB": "rpyc_ipy.auth.userdb",
}

__getattr__ = lazy_attributes(__name__, _LAZY, globals())


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
