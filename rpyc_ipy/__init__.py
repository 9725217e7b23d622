"""rpyc_ipy: work with a remote Python process from Jupyter, over an RPyC 6.0.2
wire-compatible protocol core.

RPyC's public names work here (``import rpyc_ipy as rpyc`` for common code)::

    import rpyc_ipy

    class Calculator(rpyc_ipy.Service):
        def exposed_add(self, a, b):
            return a + b

    with rpyc_ipy.ThreadedServer(Calculator, port=0) as server:
        server.start()
        with rpyc_ipy.connect("127.0.0.1", server.port) as conn:
            conn.root.add(1, 2)

In IPython or Jupyter: ``%load_ext rpyc_ipy`` then ``%rpyc_connect``.
Across a network, authenticate: :func:`srp_connect` (username/password) or
:func:`ssl_connect` (certificates), and a server with an authenticator.
"""

from __future__ import annotations

from typing import Any

from . import classic
from ._lazy import lazy_attributes
from .async_result import AsyncResult
from .connection import Connection
from .errors import (
    AsyncResultTimeout,
    AuthenticationError,
    ConnectionClosed,
    ConnectionLost,
    PingError,
    ProtocolError,
    RemoteError,
    RPyCError,
    SecurityError,
)
from .factory import (
    connect,
    connect_socket,
    connect_stream,
    connect_subproc,
    connect_thread,
    srp_connect,
    ssl_connect,
    unix_connect,
)
from .netref import BaseNetref
from .policy import DEFAULT_CONFIG, SecurityPolicy
from .protocol import brine, vinegar
from .servers import OneShotServer, ThreadedServer, ThreadPoolServer
from .service import (
    ClassicService,
    MasterService,
    Service,
    SlaveService,
    VoidService,
    exposed,
    restricted,
    service,
)
from .utils import BgServingThread, async_, buffiter, spawn, timed

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_CONFIG",
    "AsyncResult",
    "AsyncResultTimeout",
    "AuthenticationError",
    "BaseNetref",
    "BgServingThread",
    "ClassicService",
    "Connection",
    "ConnectionClosed",
    "ConnectionLost",
    "MasterService",
    "OneShotServer",
    "PingError",
    "ProtocolError",
    "RPyCError",
    "RemoteError",
    "SRPAuthenticator",
    "SSLAuthenticator",
    "SecurityError",
    "SecurityPolicy",
    "Service",
    "SlaveService",
    "ThreadPoolServer",
    "ThreadedServer",
    "UserDB",
    "VoidService",
    "__version__",
    "async_",
    "brine",
    "buffiter",
    "classic",
    "connect",
    "connect_socket",
    "connect_stream",
    "connect_subproc",
    "connect_thread",
    "exposed",
    "load_ipython_extension",
    "restricted",
    "service",
    "spawn",
    "srp_connect",
    "ssl_connect",
    "timed",
    "unix_connect",
    "unload_ipython_extension",
    "vinegar",
]

# the authenticators load ssl / tlslite-ng; import them on first use
_LAZY = {
    "SSLAuthenticator": "rpyc_ipy.auth.tls",
    "SRPAuthenticator": "rpyc_ipy.auth.srp",
    "UserDB": "rpyc_ipy.auth.userdb",
}

__getattr__ = lazy_attributes(__name__, _LAZY, globals())


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext rpyc_ipy``: register the magics, settings and display hooks."""
    from .ipython.extension import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext rpyc_ipy``: remove everything the extension registered."""
    from .ipython.extension import unload_ipython_extension as unload

    unload(ipython)
