"""RPyC's ``rpyc.core.consts``: the wire constants, from :mod:`rpyc_ipy.protocol.consts`."""

from rpyc_ipy.protocol.consts import *  # noqa: F403
from rpyc_ipy.protocol.consts import STOP_ITERATION_PAYLOAD
from rpyc_ipy.protocol.consts import __all__ as _protocol_names

__all__ = [*_protocol_names, "EXC_STOP_ITERATION", "STREAM_CHUNK"]

#: RPyC's name for the vinegar payload of a bare StopIteration
EXC_STOP_ITERATION = STOP_ITERATION_PAYLOAD
#: the chunk size classic-mode file copies use
STREAM_CHUNK = 64000
