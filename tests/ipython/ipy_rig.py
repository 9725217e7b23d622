"""Helpers for the IPython tests (a uniquely named module, so tests can import it)."""

from __future__ import annotations

import _thread
import threading
from typing import Any

from ipy_servers import ServerProcess
from IPython.core.interactiveshell import InteractiveShell

from rpyc_ipy.ipython.session import RemoteSession

PASSWORD_ENV = "RPYC_IPY_TEST_PASSWORD"
WAIT = 20.0  # upper bound for any cell; remote sleeps that must be cut short are far longer


def connect(ip: InteractiveShell, name: str, server: ServerProcess, options: str = ""
            ) -> RemoteSession:
    """``%rpyc_connect name=127.0.0.1:port options``; returns the session."""
    from IPython.utils.capture import capture_output

    with capture_output():
        ip.run_line_magic("rpyc_connect", f"{name}=127.0.0.1:{server.port} {options}")
    return ip.user_ns[name]


class RequestCounter:
    """Counts the requests a connection sends (wraps its ``async_request``)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.count = 0
        self.handlers: list[int] = []
        self._original = conn.async_request
        conn.async_request = self

    def __call__(self, handler: int, *args: Any) -> Any:
        self.count += 1
        self.handlers.append(handler)
        return self._original(handler, *args)

    def reset(self) -> None:
        self.count = 0
        self.handlers.clear()

    def remove(self) -> None:
        if self.conn.__dict__.get("async_request") is self:
            del self.conn.async_request




def run(ip: InteractiveShell, cell: str, store_history: bool = False) -> tuple[Any, Any]:
    """Run a cell with output captured: ``(result, captured)``.

    The wait is bounded: a cell still running after WAIT seconds is interrupted (as the
    stop button does) and fails the test, so "the cell ends" is an event the test waits
    for, never a duration it measures.
    """
    from IPython.utils.capture import capture_output

    overran = threading.Event()

    def stop() -> None:
        overran.set()
        _thread.interrupt_main()

    watchdog = threading.Timer(WAIT, stop)
    watchdog.start()
    try:
        with capture_output() as captured:
            result = ip.run_cell(cell, store_history=store_history)
    finally:
        watchdog.cancel()
    assert not overran.is_set(), f"the cell was still running after {WAIT} s:\n{cell}"
    return result, captured


def html_of(captured: Any) -> str:
    """All text/html a captured cell displayed, joined."""
    return "".join(o.data.get("text/html", "") for o in captured.outputs)


def completions(ip: InteractiveShell, text: str, cursor: int | None = None) -> list[Any]:
    """IPython's completions for ``text`` (cursor at the end by default)."""
    from IPython.core.completer import provisionalcompleter

    with provisionalcompleter():
        return list(ip.Completer.completions(text, len(text) if cursor is None else cursor))
