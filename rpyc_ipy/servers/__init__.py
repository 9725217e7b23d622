"""Servers: accept loop + authenticator hook + a strategy for running clients."""

from rpyc_ipy.servers.base import Authenticator, Server
from rpyc_ipy.servers.threaded import OneShotServer, ThreadedServer, ThreadPoolServer

__all__ = ["Authenticator", "OneShotServer", "Server", "ThreadPoolServer", "ThreadedServer"]
