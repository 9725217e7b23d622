"""The stop button: a remote sleep(120) is stopped by SIGINT in the session's worker,
KeyboardInterrupt propagates, and the same session answers again.

Every cell here ends within ipy_rig.WAIT or fails its test (see ``ipy_rig.run``)."""

from __future__ import annotations

import _thread
import threading
from collections.abc import Iterator

import pytest
from ipy_rig import WAIT, connect, run
from ipy_servers import ServerProcess
from IPython.core.interactiveshell import InteractiveShell


@pytest.fixture
def interrupt_soon() -> Iterator[threading.Timer]:
    """Deliver KeyboardInterrupt to the main thread after 0.5 s (as the stop button does)."""
    timer = threading.Timer(0.5, _thread.interrupt_main)
    yield timer
    timer.cancel()


def test_stop_button_cancels_a_remote_sleep(ip: InteractiveShell, exec_server: ServerProcess,
                                            interrupt_soon: threading.Timer) -> None:
    session = connect(ip, "s", exec_server)
    interrupt_soon.start()
    result, captured = run(ip, "%%remote\nimport time\nprint('sleeping', flush=True)\n"
                               "time.sleep(120)")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    assert "sleeping" in captured.stdout
    assert "interrupting the cell on s" in captured.stderr
    assert "stopped by an interrupt (SIGINT)" in captured.stderr  # the sleep itself ended
    assert session.execute("1 + 1", timeout=WAIT).data["text/plain"] == "2"
    assert session.info["engine"] and not session.closed


def test_interrupting_a_busy_loop_in_a_notebook_cell(ip: InteractiveShell,
                                                     exec_server: ServerProcess,
                                                     interrupt_soon: threading.Timer) -> None:
    connect(ip, "s", exec_server)
    interrupt_soon.start()
    result, captured = run(ip, "%%remote\nn = 0\nwhile True:\n    n += 1")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)  # so "run all" stops
    assert "by an interrupt (SIGINT)" in captured.stderr
    result, _ = run(ip, "%remote n > 0")
    assert repr(result.result) == "True"


def test_a_printing_loop_stops_cooperatively(ip: InteractiveShell, exec_server: ServerProcess,
                                             interrupt_soon: threading.Timer) -> None:
    connect(ip, "s", exec_server)
    # the loop stops at its next print; a long grace keeps a loaded machine from reaching
    # the SIGINT step first
    ip.magics_manager.registry["RPyCMagics"].cancel_grace = 10.0
    interrupt_soon.start()
    result, captured = run(ip, "%%remote\nimport time\nwhile True:\n"
                               "    print('tick')\n    time.sleep(0.01)")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    assert "tick" in captured.stdout and "stopped at its next output" in captured.stderr
