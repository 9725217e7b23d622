"""RPyC's ``rpyc.utils.authenticators``: server-side authenticators.

``SSLAuthenticator`` is :class:`rpyc_ipy.auth.tls_server.SSLAuthenticator`;
``SRPAuthenticator`` (passwords over TLS-SRP) is ours.
"""

from rpyc_ipy.auth.srp_server import SRPAuthenticator
from rpyc_ipy.auth.tls_server import SSLAuthenticator
from rpyc_ipy.errors import AuthenticationError

__all__ = ["AuthenticationError", "SRPAuthenticator", "SSLAuthenticator"]
