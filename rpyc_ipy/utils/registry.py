"""RPyC's ``rpyc.utils.registry``: the service registry, from :mod:`rpyc_ipy.servers.registry`."""

from rpyc_ipy.servers.registry import (
    DEFAULT_PRUNING_TIMEOUT,
    MAX_DGRAM_SIZE,
    REGISTRY_PORT,
    RegistryClient,
    RegistryServer,
    TCPRegistryClient,
    TCPRegistryServer,
    UDPRegistryClient,
    UDPRegistryServer,
)

__all__ = ["DEFAULT_PRUNING_TIMEOUT", "MAX_DGRAM_SIZE", "REGISTRY_PORT", "RegistryClient",
           "RegistryServer", "TCPRegistryClient", "TCPRegistryServer", "UDPRegistryClient",
           "UDPRegistryServer"]
