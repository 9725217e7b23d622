"""The server side of notebook work.

:class:`ExecutionService` is what a server grants to run notebook cells for an
authenticated client (``rpyc-ipy serve --notebook``; the import path is
``rpyc_ipy.remote:ExecutionService``). Each client works in a session: a worker
process of its own (:mod:`rpyc_ipy.remote.worker`), started and watched by the
server (:mod:`rpyc_ipy.remote.supervisor`), kept across dropped connections and
reaped when idle (:class:`SessionRegistry`, configured by :class:`RuntimeSettings`).
In the worker, an :class:`~rpyc_ipy.remote.engine.Engine` runs the cells: a
namespace, IPython's cell semantics, streamed output, interrupts, completion,
inspection, browsing, and values moved by value.

The engine modules (``values``, ``capture``, ``cancel``, ``joblog``, ``bundle``,
``introspect``, ``engine``) use only the standard library, so a client can ship
them by source to a classic RPyC server that lacks rpyc_ipy
(:mod:`rpyc_ipy.remote.bootstrap`).

In a cell, long loops can poll :func:`cancelled` to stop cleanly when the
user presses stop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rpyc_ipy._lazy import lazy_attributes

if TYPE_CHECKING:
    from rpyc_ipy.remote.cancel import cancelled
    from rpyc_ipy.remote.engine import Engine
    from rpyc_ipy.remote.namespace import NamespaceView
    from rpyc_ipy.remote.service import ExecutionService
    from rpyc_ipy.remote.sessions import RuntimeSettings, SessionRegistry

__all__ = ["Engine", "ExecutionService", "NamespaceView", "RuntimeSettings", "SessionRegistry",
           "cancelled"]

# loaded on first use: a session worker (python -m rpyc_ipy.remote.worker) imports this
# package first and needs none of the server's side
_LAZY = {
    "cancelled": "rpyc_ipy.remote.cancel",
    "Engine": "rpyc_ipy.remote.engine",
    "NamespaceView": "rpyc_ipy.remote.namespace",
    "ExecutionService": "rpyc_ipy.remote.service",
    "RuntimeSettings": "rpyc_ipy.remote.sessions",
    "SessionRegistry": "rpyc_ipy.remote.sessions",
}

__getattr__ = lazy_attributes(__name__, _LAZY, globals())
