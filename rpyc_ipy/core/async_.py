"""RPyC's ``rpyc.core.async_``: the result of an asynchronous request.

A thin module over :mod:`rpyc_ipy.core.async_result` for code ported from RPyC.
"""

from rpyc_ipy.core.async_result import AsyncResult
from rpyc_ipy.errors import AsyncResultTimeout
from rpyc_ipy.lib import Timeout

__all__ = ["AsyncResult", "AsyncResultTimeout", "Timeout"]
