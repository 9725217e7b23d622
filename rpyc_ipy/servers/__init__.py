"""Servers: accept loop + authenticator hook + a strategy for running clients."""

from .base import Authenticator, Server
from .threaded import OneShotServer, ThreadedServer, ThreadPoolServer

__all__ = ["Authenticator", "OneShotServer", "Server", "ThreadPoolServer", "ThreadedServer"]
