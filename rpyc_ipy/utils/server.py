"""RPyC's ``rpyc.utils.server``: the servers, from :mod:`rpyc_ipy.servers`."""

from rpyc_ipy.errors import AuthenticationError
from rpyc_ipy.lib import spawn, spawn_waitready
from rpyc_ipy.servers.base import Server
from rpyc_ipy.servers.forking import ForkingServer
from rpyc_ipy.servers.registry import UDPRegistryClient
from rpyc_ipy.servers.threaded import OneShotServer, ThreadedServer, ThreadPoolServer

__all__ = ["AuthenticationError", "ForkingServer", "OneShotServer", "Server", "ThreadPoolServer",
           "ThreadedServer", "UDPRegistryClient", "spawn", "spawn_waitready"]
