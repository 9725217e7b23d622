"""RPyC's ``rpyc.core.vinegar``: exceptions to and from the wire, from
:mod:`rpyc_ipy.protocol.vinegar`.

``dump``/``load`` speak RPyC's payload but take keyword options (what to include,
whether to rebuild custom classes) instead of RPyC's positional flags.
``GenericException`` is :class:`~rpyc_ipy.errors.RemoteError`: the base of every
exception rebuilt from a peer (RPyC uses it only for classes it cannot import).
"""

from rpyc_ipy.errors import RemoteError as GenericException
from rpyc_ipy.protocol.vinegar import dump, load

__all__ = ["REMOTE_LINE", "REMOTE_LINE_END", "REMOTE_LINE_START", "GenericException", "dump",
           "load"]

#: how a remote traceback is introduced in a rebuilt exception's text (as RPyC does)
REMOTE_LINE_START = "\n\n========= Remote Traceback "
REMOTE_LINE_END = " =========\n"
REMOTE_LINE = f"{REMOTE_LINE_START}({{}}){REMOTE_LINE_END}"
