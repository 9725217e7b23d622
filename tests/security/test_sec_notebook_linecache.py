"""Cell sources leave ``linecache`` when their session ends (issue 13, item 10).

* in-process: a classic server runs our engine in its own process, one per client;
  once the client has gone, that engine's cell sources are gone from the server's
  linecache (the server here runs in the test's process, so the test reads it);
* worker runtime: an execution server's session runs in a worker process, whose
  linecache ends with it when the session ends.
"""

from __future__ import annotations

import ast
import gc
import linecache
import os
from collections.abc import Callable, Iterator

import pytest
from IPython.core.interactiveshell import InteractiveShell
from notebook_rig import WAIT, exec_server, new_shell, reset, run_captured
from waitkit import wait_until

import rpyc_ipy

CELL_PREFIX = "<remote-cell-"  #: how the engine names a cell's source in linecache
MARK = "linecache_marker_0451"


@pytest.fixture(scope="module")
def ip() -> Iterator[InteractiveShell]:
    yield from new_shell()


def _cells() -> list[str]:
    return [name for name in list(linecache.cache) if name.startswith(CELL_PREFIX)]


def test_a_classic_servers_engine_forgets_its_cells_when_the_client_goes(
        ip: InteractiveShell, start_server: Callable[..., rpyc_ipy.ThreadedServer]) -> None:
    server = start_server(rpyc_ipy.SlaveService)
    before = set(_cells())
    try:
        run_captured(ip, f"%rpyc_connect c=127.0.0.1:{server.port} --classic")
        for n in range(3):
            result, _ = run_captured(ip, f"%%remote\nvalue_{n} = {n}")
            assert result.error_in_exec is None
        assert len(set(_cells()) - before) == 3  # the sources are there while it lives
        run_captured(ip, "%rpyc_disconnect c")

        def forgotten() -> bool:
            gc.collect()
            return not set(_cells()) - before

        wait_until(forgotten, WAIT, what="the cells to leave linecache")
    finally:
        reset(ip)


def test_a_workers_cells_end_with_its_session(ip: InteractiveShell) -> None:
    with exec_server() as port:
        try:
            run_captured(ip, f"%rpyc_connect w=127.0.0.1:{port}")
            session = ip.user_ns["w"]
            run_captured(ip, f"%%remote\n{MARK} = 1")
            outcome = session.execute(  # the cell files holding the marked source
                f"import linecache, os\n(os.getpid(), sum(1 for v in list(linecache.cache."
                f"values()) if {MARK!r} + ' = 1' in ''.join(v[2])))")
            pid, cells = ast.literal_eval(outcome.data["text/plain"])
            assert cells >= 1 and pid == session.remote["pid"]
            run_captured(ip, "%rpyc_disconnect w --end")

            def ended() -> bool:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return True
                return False

            wait_until(ended, WAIT, what="the session's worker to end, and its linecache")
        finally:
            reset(ip)
