"""RPyC's ``rpyc.utils.factory``: ways to connect, from :mod:`rpyc_ipy.factory`."""

from rpyc_ipy.core.service import MasterService, SlaveService, VoidService
from rpyc_ipy.errors import DiscoveryError, ForbiddenError
from rpyc_ipy.factory import (
    connect,
    connect_by_service,
    connect_multiprocess,
    connect_pipes,
    connect_stdpipes,
    connect_stream,
    connect_subproc,
    connect_thread,
    discover,
    list_services,
    ssl_connect,
    unix_connect,
)
from rpyc_ipy.lib import spawn
from rpyc_ipy.servers.registry import UDPRegistryClient

__all__ = ["DiscoveryError", "ForbiddenError", "MasterService", "SlaveService",
           "UDPRegistryClient", "VoidService", "connect", "connect_by_service",
           "connect_multiprocess", "connect_pipes", "connect_stdpipes", "connect_stream",
           "connect_subproc", "connect_thread", "discover", "list_services", "spawn",
           "ssl_connect", "unix_connect"]
