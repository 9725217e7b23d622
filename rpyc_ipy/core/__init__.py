"""The protocol core: connections, netrefs, services, the security policy and its gate.

Everything here runs over any :class:`~rpyc_ipy.core.transport.Transport`; nothing
here opens a socket. Start with :mod:`rpyc_ipy.core.connection` (a connection over a
transport), :mod:`rpyc_ipy.core.service` (what one side exposes) and
:mod:`rpyc_ipy.core.policy` (what the peer may do, and the one ``authorize`` gate).
"""

# RPyC's ``rpyc.core`` names and submodules, for code ported from RPyC; loaded on first
# use, so that importing one core module does not import them all
import importlib
from typing import Any

from rpyc_ipy._lazy import lazy_attributes

#: the submodules ``rpyc.core`` offers as attributes
RPYC_SUBMODULES = ("async_", "brine", "consts", "netref", "protocol", "service", "vinegar")

__all__ = ["DEFAULT_CONFIG", "AsyncResult", "AsyncResultTimeout", "BaseNetref", "ClassicService",
           "Connection", "GenericException", "MasterService", "Service", "SlaveService",
           "VoidService"]

_lazy = lazy_attributes(__name__, {
    "AsyncResult": "rpyc_ipy.core.async_result",
    "AsyncResultTimeout": "rpyc_ipy.errors",
    "BaseNetref": "rpyc_ipy.core.netref",
    "ClassicService": "rpyc_ipy.core.service",
    "Connection": "rpyc_ipy.core.connection",
    "DEFAULT_CONFIG": "rpyc_ipy.core.policy",
    "GenericException": "rpyc_ipy.core.vinegar",
    "MasterService": "rpyc_ipy.core.service",
    "Service": "rpyc_ipy.core.service",
    "SlaveService": "rpyc_ipy.core.service",
    "VoidService": "rpyc_ipy.core.service",
}, globals())


def __getattr__(name: str) -> Any:
    if name in RPYC_SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    return _lazy(name)
