"""Errors a person can act on: every error path of the magics ends in one or two lines
that say what happened and what to do, never a traceback through our own modules.

Each test runs the failing cell in a real InteractiveShell against a real server on
127.0.0.1 and scans everything the cell printed (:func:`assert_no_internals`)."""

from __future__ import annotations

import _thread
import threading
from collections.abc import Iterator

import pytest
from ipy_rig import connect, run
from ipy_servers import ServerProcess
from IPython.core.interactiveshell import InteractiveShell

from rpyc_ipy.ipython.execution import CellInterrupted, RemoteTimeoutError

INTERNALS = ("rpyc_ipy/", "rpyc_ipy.ipython", "rpyc_ipy.core", "Traceback",
             "magics.py", "execution.py")


def assert_no_internals(captured: object, remote_traceback: bool = False) -> str:
    """All the text a captured cell showed; fails if it shows one of our frames (or any
    traceback, unless the cell's own remote traceback is expected)."""
    text = captured.stdout + captured.stderr  # type: ignore[attr-defined]
    for output in captured.outputs:  # type: ignore[attr-defined]
        text += str(output.data.get("text/plain", ""))
    for marker in INTERNALS:
        if marker == "Traceback" and remote_traceback:
            continue
        assert marker not in text, f"{marker!r} shown to the user:\n{text}"
    return text


@pytest.fixture
def interrupt_soon() -> Iterator[threading.Timer]:
    timer = threading.Timer(0.5, _thread.interrupt_main)
    yield timer
    timer.cancel()


def test_the_stop_button_ends_in_one_line(ip: InteractiveShell, exec_server: ServerProcess,
                                          interrupt_soon: threading.Timer) -> None:
    connect(ip, "s", exec_server)
    interrupt_soon.start()
    result, captured = run(ip, "%%remote\nimport time\ntime.sleep(120)")
    assert isinstance(result.error_in_exec, CellInterrupted)
    assert isinstance(result.error_in_exec, KeyboardInterrupt)  # "run all" stops
    text = assert_no_internals(captured)
    assert "KeyboardInterrupt: the cell on s was stopped" in text
    assert len(captured.stderr.strip().splitlines()) <= 4  # the progress notes and the line


def test_a_timeout_ends_in_one_line(ip: InteractiveShell, exec_server: ServerProcess) -> None:
    connect(ip, "s", exec_server)
    result, captured = run(ip, "%%remote --timeout 0.5\nimport time\ntime.sleep(120)")
    assert isinstance(result.error_in_exec, RemoteTimeoutError)
    text = assert_no_internals(captured)
    assert "RemoteTimeoutError: the cell ran longer than 0.5 s on s" in text


def test_a_remote_error_is_labelled_with_the_prompt_number(
        ip: InteractiveShell, exec_server: ServerProcess) -> None:
    connect(ip, "s", exec_server)
    ip.execution_count = 40  # the notebook's prompt differs from the server's cell count
    result, captured = run(ip, "%%remote\n1 / 0")
    assert result.error_in_exec is not None
    text = assert_no_internals(captured, remote_traceback=True)
    assert "Remote error on session 's' in cell [40]" in text
    assert "ZeroDivisionError" in text
