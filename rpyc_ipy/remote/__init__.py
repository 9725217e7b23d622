"""The server side of notebook work.

:class:`ExecutionService` is what a server grants to run notebook cells for an
authenticated client (``rpyc-ipy serve`` offers it with a flag; the import
path is ``rpyc_ipy.remote:ExecutionService``). It wraps an
:class:`~rpyc_ipy.remote.engine.Engine`: a namespace, cells run with IPython's
semantics, streamed output, cancel, completion, inspection, browsing, and
values moved by value.

The engine modules (``values``, ``capture``, ``cancel``, ``bundle``,
``introspect``, ``engine``) use only the standard library, so a client can ship
them by source to a classic RPyC server that lacks rpyc_ipy
(:mod:`rpyc_ipy.remote.bootstrap`).

In a cell, long loops can poll :func:`cancelled` to stop cleanly when the
user presses stop.
"""

from __future__ import annotations

from rpyc_ipy.remote.cancel import cancelled
from rpyc_ipy.remote.engine import Engine
from rpyc_ipy.remote.service import ExecutionService, NamespaceView

__all__ = ["Engine", "ExecutionService", "NamespaceView", "cancelled"]
