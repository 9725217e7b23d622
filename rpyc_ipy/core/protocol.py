"""RPyC's ``rpyc.core.protocol``: the connection and its default config.

A thin module over :mod:`rpyc_ipy.core.connection` and :mod:`rpyc_ipy.core.policy`
for code ported from RPyC (the sans-I/O protocol itself is :mod:`rpyc_ipy.protocol`).
"""

from rpyc_ipy.core.async_result import AsyncResult
from rpyc_ipy.core.connection import Connection
from rpyc_ipy.core.policy import DEFAULT_CONFIG
from rpyc_ipy.errors import PingError
from rpyc_ipy.lib import Timeout, get_id_pack, get_methods, hasattr_static, spawn

__all__ = ["DEFAULT_CONFIG", "AsyncResult", "Connection", "PingError", "Timeout",
           "get_id_pack", "get_methods", "hasattr_static", "spawn"]
