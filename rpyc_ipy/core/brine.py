"""RPyC's ``rpyc.core.brine``: the value serializer, from :mod:`rpyc_ipy.protocol.brine`.

``dump``/``load``/``dumpable`` take and give the same bytes as RPyC's; ``load``
also takes decoding limits (see :class:`rpyc_ipy.protocol.limits.Limits`).
"""

from rpyc_ipy.protocol.brine import dump, dumpable, load

__all__ = ["dump", "dumpable", "load"]
