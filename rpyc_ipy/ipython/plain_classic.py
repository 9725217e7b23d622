"""Cells on a classic server that could not take the engine: plain ``execute``/``eval``.

:class:`~rpyc_ipy.ipython.session.RemoteSession` falls back to :class:`PlainClassic`
when shipping the engine fails (an old Python there, a restricted server); cells then
run without streaming or cancel.
"""

from __future__ import annotations

import ast
import threading
from typing import TYPE_CHECKING

from rpyc_ipy.core.connection import Connection
from rpyc_ipy.core.netref import BaseNetref
from rpyc_ipy.ipython.execution import ExecutionOutcome
from rpyc_ipy.ipython.text import netref_text

if TYPE_CHECKING:
    from rpyc_ipy.ipython.execution import RemoteExecution

__all__ = ["PlainClassic"]


class PlainClassic:
    """Cells on a classic server through plain ``execute``/``eval`` (no streaming,
    no cancel): the fallback when the engine cannot be shipped there."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def run(self, code: str, execution: RemoteExecution) -> None:
        thread = threading.Thread(target=self._run, args=(code, execution),
                                  name="rpyc_ipy-classic", daemon=True)
        thread.start()

    def _run(self, code: str, execution: RemoteExecution) -> None:
        try:
            tree = ast.parse(code)
        except SyntaxError as exc:
            execution.finish(ExecutionOutcome(execution.session.name, "error",
                                               error=("SyntaxError", str(exc), str(exc))))
            return
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr) and \
                not code.rstrip().endswith(";"):
            last = ast.get_source_segment(code, tree.body[-1])
            del tree.body[-1]
        try:
            if tree.body:
                self.conn.execute(ast.unparse(tree))
            value = self.conn.eval(last) if last else None
        except Exception as exc:
            tb = getattr(exc, "remote_traceback", "") or f"{type(exc).__name__}: {exc}"
            name = getattr(exc, "remote_type", "") or type(exc).__name__
            execution.finish(ExecutionOutcome(execution.session.name, "error",
                                               error=(name.rsplit(".", 1)[-1], str(exc), tb)))
            return
        outcome = ExecutionOutcome(execution.session.name, "ok")
        if value is not None:
            text = netref_text(value, 10_000) if isinstance(value, BaseNetref) else repr(value)
            outcome.data = {"text/plain": text}
            if execution.options.get("want_value"):
                outcome.value = value
        execution.finish(outcome)

    def cancel(self, exec_id: str, force: bool = False) -> str:
        return "not supported"
