"""The notebook side: the IPython extension, its magics and settings, and sessions.

``%load_ext rpyc_ipy`` installs it (:mod:`.extension`). Code that wants sessions
without magics (the kernel, scripts) uses :func:`open_session` on a
:class:`~rpyc_ipy.target.ConnectionTarget`, and :class:`RemoteSession`, directly;
they do not need IPython.
"""

from __future__ import annotations

from rpyc_ipy.ipython.execution import (
    CellInterrupted,
    ExecutionOutcome,
    RemoteExecution,
    RemoteExecutionError,
    RemoteTimeoutError,
)
from rpyc_ipy.ipython.registry import SessionRegistry
from rpyc_ipy.ipython.session import RemoteSession, SessionError, open_session

__all__ = [
    "CellInterrupted",
    "ExecutionOutcome",
    "RemoteExecution",
    "RemoteExecutionError",
    "RemoteSession",
    "RemoteTimeoutError",
    "SessionError",
    "SessionRegistry",
    "open_session",
]
