"""Errors a person can act on: every error path of the magics ends in one or two lines
that say what happened and what to do, never a traceback through our own modules.

Each test runs the failing cell in a real InteractiveShell against a real server on
127.0.0.1 and scans everything the cell printed (:func:`assert_no_internals`)."""

from __future__ import annotations

import _thread
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from ipy_rig import WAIT, connect, run
from ipy_servers import ServerProcess
from IPython.core.interactiveshell import InteractiveShell

import rpyc_ipy
from rpyc_ipy.errors import AuthenticationError, ConnectionClosed
from rpyc_ipy.ipython.execution import CellInterrupted, RemoteTimeoutError

ROOT = Path(__file__).resolve().parents[2]
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


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_front_end_without_stdin_is_told_what_to_do(srp_server: ServerProcess,
                                                       tmp_path: Path) -> None:
    """In nbclient (no stdin), a wrong port is said before the password is asked for,
    and the missing prompt is one line naming --password-env."""
    import nbformat
    from nbclient import NotebookClient

    cells = ["%load_ext rpyc_ipy",
             f"%rpyc_connect s=127.0.0.1:{_closed_port()} --srp-user alice",
             f"%rpyc_connect s=127.0.0.1:{srp_server.port} --srp-user alice"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    NotebookClient(nb, kernel_name="python3", timeout=int(WAIT), startup_timeout=60,
                   allow_errors=True).execute(env=env, stderr=subprocess.DEVNULL)
    outputs = [cell.outputs for cell in nb.cells]
    assert not outputs[0]
    refused, no_stdin = ("\n".join("\n".join(o.get("traceback", ())) + o.get("text", "")
                                   for o in cell) for cell in outputs[1:])
    assert "cannot connect to 127.0.0.1:" in refused and "refused" in refused
    assert "password" not in refused
    assert "--password-env VAR" in no_stdin
    for text in (refused, no_stdin):
        assert "StdinNotImplementedError" not in text
        for marker in INTERNALS:
            assert marker not in text, f"{marker!r} shown to the user:\n{text}"
        assert len(text.strip().splitlines()) <= 2, text


def test_a_closed_session_says_how_to_get_back(ip: InteractiveShell,
                                               exec_server: ServerProcess) -> None:
    session = connect(ip, "s", exec_server)
    session.conn.close()
    if session.control is not None:
        session.control.close()
    for cell in ("%remote 1", "%rpyc_push s x", "%rpyc_restart s", "%rpyc_jobs s"):
        ip.user_ns["x"] = 1
        result, captured = run(ip, cell)
        assert result.error_in_exec is not None
        text = assert_no_internals(captured)
        assert "session 's' is closed" in text
        assert f"%rpyc_connect s=127.0.0.1:{exec_server.port}" in text
    connect(ip, "s", exec_server)  # what the message says to do
    result, _ = run(ip, "%remote 6 * 7")
    assert repr(result.result) == "42"


def test_plaintext_to_a_tls_srp_server_fails_at_connect_time(srp_server: ServerProcess,
                                                             tls_server: ServerProcess) -> None:
    """connect() makes its first request at once: a TLS server fails it there, with the
    option to use, instead of returning a connection that fails on first use."""
    with pytest.raises(ConnectionClosed) as srp:  # an EOFError, as in RPyC
        rpyc_ipy.connect("127.0.0.1", srp_server.port)
    assert f"127.0.0.1:{srp_server.port} speaks TLS, not plaintext RPyC" in str(srp.value)
    with pytest.raises(ConnectionClosed) as tls:  # OpenSSL resets rather than answering
        rpyc_ipy.connect("127.0.0.1", tls_server.port)
    for message in (str(srp.value), str(tls.value)):
        assert "ssl_connect or srp_connect" in message and "--srp-user" in message
        assert "compression flag" not in message


def test_the_magic_names_the_option_for_a_tls_server(ip: InteractiveShell,
                                                     srp_server: ServerProcess) -> None:
    result, captured = run(ip, f"%rpyc_connect s=127.0.0.1:{srp_server.port}")
    assert result.error_in_exec is not None
    text = assert_no_internals(captured)
    assert "speaks TLS, not plaintext RPyC" in text and "--srp-user USER" in text
    assert len(text.strip().splitlines()) == 1


def test_a_handshake_with_the_wrong_method_names_the_right_one(
        exec_server: ServerProcess, srp_server: ServerProcess,
        tls_server: ServerProcess) -> None:
    attempts = {
        "ssl_connect to TLS-SRP": (lambda: rpyc_ipy.ssl_connect(
            "127.0.0.1", srp_server.port, verify=False, timeout=WAIT), "srp_connect"),
        "ssl_connect to plaintext": (lambda: rpyc_ipy.ssl_connect(
            "127.0.0.1", exec_server.port, verify=False, timeout=WAIT), "with connect()"),
        "srp_connect to certificates": (lambda: rpyc_ipy.srp_connect(
            "127.0.0.1", tls_server.port, "alice", "not-the-password", timeout=WAIT),
            "ssl_connect (%rpyc_connect --ca FILE"),
        "srp_connect to plaintext": (lambda: rpyc_ipy.srp_connect(
            "127.0.0.1", exec_server.port, "alice", "not-the-password", timeout=WAIT),
            "with connect()"),
    }
    for what, (attempt, hint) in attempts.items():
        with pytest.raises(AuthenticationError) as failed:
            attempt()
        assert hint in str(failed.value), (what, str(failed.value))
    with pytest.raises(AuthenticationError) as refused:  # the right method: no hint
        rpyc_ipy.srp_connect("127.0.0.1", srp_server.port, "alice", "not-the-password",
                             timeout=WAIT)
    assert "ssl_connect" not in str(refused.value)


def test_a_cell_that_ignores_the_stop_button_ends_in_one_line_too(
        ip: InteractiveShell, exec_server: ServerProcess,
        interrupt_soon: threading.Timer) -> None:
    connect(ip, "stubborn", exec_server, "--new")
    ip.magics_manager.registry["RPyCMagics"].interrupt_grace = 0.5
    try:
        interrupt_soon.start()
        result, captured = run(ip, "%%remote\nimport signal, time\n"
                                   "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                                   "time.sleep(120)")
    finally:
        ip.magics_manager.registry["RPyCMagics"].interrupt_grace = 5.0
        run(ip, "%rpyc_disconnect stubborn --end")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    text = assert_no_internals(captured)
    assert "the cell on stubborn was stopped; stubborn got a fresh worker" in text


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts TCP connections and never says a word."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield int(listener.getsockname()[1])


def test_a_silent_server_fails_the_connect_in_one_line(ip: InteractiveShell,
                                                       silent_port: int) -> None:
    ip.run_line_magic("config", "RPyCMagics.progress_delay = 60")  # no progress line
    result, captured = run(ip, f"%rpyc_connect s=127.0.0.1:{silent_port} --timeout 0.5")
    assert result.error_in_exec is not None
    text = assert_no_internals(captured)
    assert "did not answer as a plaintext RPyC server (no reply within 0.5 s)" in text
    assert len(text.strip().splitlines()) == 1


def test_interrupting_a_connect_ends_in_one_line(ip: InteractiveShell, silent_port: int,
                                                  interrupt_soon: threading.Timer) -> None:
    interrupt_soon.start()
    result, captured = run(ip, f"%rpyc_connect s=127.0.0.1:{silent_port} --timeout {WAIT}")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    text = assert_no_internals(captured)
    assert (f"KeyboardInterrupt: stopped connecting to 127.0.0.1:{silent_port} (first "
            "request); nothing is left open") in text
