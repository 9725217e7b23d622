"""rpyc_ipy: work with a remote Python process from Jupyter, over an RPyC 6.0.2
wire-compatible protocol core.

RPyC's public names work here (``import rpyc_ipy as rpyc`` for common code)::

    import rpyc_ipy

    class Calculator(rpyc_ipy.Service):
        def exposed_add(self, a, b):
            return a + b

    with rpyc_ipy.ThreadedServer(Calculator, port=0) as server:
        server.start_in_background()
        with rpyc_ipy.connect("127.0.0.1", server.port) as conn:
            conn.root.add(1, 2)

In IPython or Jupyter: ``%load_ext rpyc_ipy`` then ``%rpyc_connect``.
Across a network, authenticate: :func:`srp_connect` (username/password) or
:func:`ssl_connect` (certificates), and a server with an authenticator.
"""

from __future__ import annotations

from typing import Any

from rpyc_ipy import classic, lib, utils
from rpyc_ipy._lazy import lazy_attributes
from rpyc_ipy._version import __version__
from rpyc_ipy.core.async_result import AsyncResult
from rpyc_ipy.core.budget import FrameBudget
from rpyc_ipy.core.connection import Connection
from rpyc_ipy.core.helpers import BgServingThread, async_, buffiter, spawn, timed
from rpyc_ipy.core.netref import BaseNetref
from rpyc_ipy.core.policy import DEFAULT_CONFIG, SecurityPolicy
from rpyc_ipy.core.service import (
    ClassicService,
    MasterService,
    Service,
    SlaveService,
    VoidService,
    exposed,
    restricted,
    service,
)
from rpyc_ipy.core.vinegar import GenericException
from rpyc_ipy.errors import (
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
from rpyc_ipy.factory import (
    connect,
    connect_by_service,
    connect_pipes,
    connect_socket,
    connect_stdpipes,
    connect_stream,
    connect_subproc,
    connect_thread,
    discover,
    list_services,
    srp_connect,
    ssl_connect,
    unix_connect,
)
from rpyc_ipy.lib import setup_logger
from rpyc_ipy.protocol import brine, vinegar
from rpyc_ipy.servers import OneShotServer, ThreadedServer, ThreadPoolServer
from rpyc_ipy.servers.forking import ForkingServer

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
    "ForkingServer",
    "FrameBudget",
    "GenericException",
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
    "connect_by_service",
    "connect_pipes",
    "connect_socket",
    "connect_stdpipes",
    "connect_stream",
    "connect_subproc",
    "connect_thread",
    "discover",
    "exposed",
    "lib",
    "list_services",
    "load_ipython_extension",
    "restricted",
    "service",
    "setup_logger",
    "spawn",
    "srp_connect",
    "ssl_connect",
    "timed",
    "unix_connect",
    "unload_ipython_extension",
    "utils",
    "vinegar",
]

# the authenticators load ssl / tlslite-ng; import them on first use
_LAZY = {
    "SSLAuthenticator": "rpyc_ipy.auth.tls_server",
    "SRPAuthenticator": "rpyc_ipy.auth.srp_server",
    "UserDB": "rpyc_ipy.auth.userdb",
}

__getattr__ = lazy_attributes(__name__, _LAZY, globals())


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext rpyc_ipy``: register the magics, settings and display hooks."""
    from rpyc_ipy.ipython.extension import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext rpyc_ipy``: remove everything the extension registered."""
    from rpyc_ipy.ipython.extension import unload_ipython_extension as unload

    unload(ipython)
