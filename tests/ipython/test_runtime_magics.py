"""The notebook surface of the server runtime: sessions that outlive connections
(re-attach, ``--new``, ``--end``), background jobs (``%%remote --bg``, ``%rpyc_jobs``,
``%rpyc_result``), a worker's death and ``%rpyc_restart``, and a cell that survives
its connection dropping.

Jobs wait on a flag file the test creates; nothing sleeps to synchronise. Every cell
ends within ipy_rig.WAIT or fails its test (see ``ipy_rig.run``)."""

from __future__ import annotations

import _thread
import os
import re
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ipy_rig import WAIT, connect, run
from ipy_servers import ServerProcess, spawn
from IPython.core.interactiveshell import InteractiveShell
from waitkit import wait_until

from rpyc_ipy.ipython.execution import RemoteExecutionError
from rpyc_ipy.ipython.session import SessionError


@pytest.fixture
def name(ip: InteractiveShell) -> Iterator[str]:
    """A session name of this test's own (sessions outlive connections on the server);
    the session is ended on the server afterwards."""
    session_name = f"rt_{uuid.uuid4().hex[:8]}"
    yield session_name
    if session_name in ip.user_ns:
        run(ip, f"%rpyc_disconnect {session_name} --end")


def waiting_cell(flag: Path, before: str = "waiting", after: str = "finished",
                 result: str = "'result'") -> str:
    """Code that prints ``before``, waits for ``flag``, prints ``after`` and returns ``result``."""
    return ("import pathlib, time\n"
            f"print({before!r}, flush=True)\n"
            f"while not pathlib.Path({str(flag)!r}).exists():\n"
            "    time.sleep(0.01)\n"
            f"print({after!r}, flush=True)\n"
            f"{result}")


def when_shown(text: str, then: Callable[[], None]) -> threading.Thread:
    """On a thread: once ``text`` is in the cell's captured stdout, call ``then``."""
    def watch() -> None:
        wait_until(lambda: text in getattr(sys.stdout, "getvalue", str)(), WAIT,
                   what=f"{text!r} in the cell's output")
        then()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def start_job(ip: InteractiveShell, name: str, code: str) -> str:
    result, captured = run(ip, f"%%remote --bg -s {name}\n{code}")
    assert result.success and result.result is None
    found = re.fullmatch(rf"started job (\S+) on session '{name}': %rpyc_result {name} (\S+) "
                         r"shows it\n", captured.stdout)
    assert found and found.group(1) == found.group(2), captured.stdout
    return found.group(1)


def test_reconnecting_keeps_the_namespace_and_new_starts_afresh(
        ip: InteractiveShell, exec_server: ServerProcess, name: str) -> None:
    first = connect(ip, name, exec_server)
    assert first.has_worker and first.remote["reattached"] is False
    assert f"pid {first.remote['pid']} (started fresh); cells run in ipython" in repr(first)
    run(ip, f"%remote -s {name} kept = 41")
    _, captured = run(ip, f"%rpyc_disconnect {name}")
    assert "stays on the server" in captured.stdout and first.closed

    again = connect(ip, name, exec_server)
    assert again.remote["pid"] == first.remote["pid"]
    assert "(re-attached)" in repr(again) and "(re-attached)" in again._repr_html_()
    result, _ = run(ip, f"%remote -s {name} kept + 1")
    assert repr(result.result) == "42"

    fresh = connect(ip, name, exec_server, "--new")
    assert fresh.remote["reattached"] is False and fresh.remote["pid"] != first.remote["pid"]
    result, _ = run(ip, f"%remote -s {name} 'kept' in dir()")
    assert repr(result.result) == "False"


def test_disconnect_end_ends_the_session_on_the_server(
        ip: InteractiveShell, exec_server: ServerProcess, name: str) -> None:
    connect(ip, name, exec_server)
    run(ip, f"%remote -s {name} kept = 1")
    _, captured = run(ip, f"%rpyc_disconnect {name} --end")
    assert f"session '{name}' ended on the server" in captured.stdout
    again = connect(ip, name, exec_server)
    assert again.remote["reattached"] is False
    result, _ = run(ip, f"%remote -s {name} 'kept' in dir()")
    assert repr(result.result) == "False"


def test_a_background_job_is_listed_and_its_output_streams(
        ip: InteractiveShell, exec_server: ServerProcess, name: str, tmp_path: Path) -> None:
    flag = tmp_path / "go"
    connect(ip, name, exec_server)
    job = start_job(ip, name, waiting_cell(flag))
    _, captured = run(ip, f"%rpyc_jobs {name}")
    table = captured.outputs[0].data["text/plain"]
    row = next(line for line in table.splitlines() if line.startswith(job))
    assert " job " in row and "running" in row and " s " in row and "import pathlib" in row
    assert job in captured.outputs[0].data["text/html"]

    # the job cannot finish before the flag, and the flag waits for its first output
    when_shown("waiting", flag.touch)
    result, captured = run(ip, f"%rpyc_result {name}")
    assert result.success and repr(result.result) == "'result'"
    assert captured.stdout.split("\n")[:2] == ["waiting", "finished"]
    _, captured = run(ip, f"%rpyc_jobs {name}")
    row = next(line for line in captured.outputs[0].data["text/plain"].splitlines()
               if line.startswith(job))
    assert " ok " in row


def test_a_job_runs_on_while_the_notebook_is_disconnected(
        ip: InteractiveShell, exec_server: ServerProcess, name: str, tmp_path: Path) -> None:
    flag = tmp_path / "go"
    connect(ip, name, exec_server)
    job = start_job(ip, name, waiting_cell(flag, result="6 * 7"))
    run(ip, f"%rpyc_disconnect {name}")
    flag.touch()
    again = connect(ip, name, exec_server)
    assert again.remote["reattached"] is True
    result, captured = run(ip, f"%rpyc_result {name} {job}")
    assert repr(result.result) == "42"
    assert "waiting\nfinished\n" in captured.stdout


def test_the_stop_button_stops_waiting_not_the_job(
        ip: InteractiveShell, exec_server: ServerProcess, name: str, tmp_path: Path) -> None:
    flag = tmp_path / "go"
    connect(ip, name, exec_server)
    job = start_job(ip, name, waiting_cell(flag))
    when_shown("waiting", _thread.interrupt_main)
    result, captured = run(ip, f"%rpyc_result {job}")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    shown = captured.stdout + captured.stderr  # the one line that ends the cell
    assert f"stopped waiting; job {job} keeps running" in shown
    assert "Traceback" not in shown and "rpyc_ipy/" not in shown
    _, captured = run(ip, f"%rpyc_jobs {name}")
    assert "running" in captured.outputs[0].data["text/plain"]
    flag.touch()
    result, _ = run(ip, f"%rpyc_result {job}")
    assert repr(result.result) == "'result'"


def test_cancel_stops_a_job_and_its_result_says_so(
        ip: InteractiveShell, exec_server: ServerProcess, name: str, tmp_path: Path) -> None:
    connect(ip, name, exec_server)
    job = start_job(ip, name, waiting_cell(tmp_path / "never"))
    _, captured = run(ip, f"%rpyc_result --cancel {job}")
    assert f"job {job} on session '{name}': cancelling" in captured.stdout
    result, captured = run(ip, f"%rpyc_result {name} {job}")
    assert isinstance(result.error_in_exec, RemoteExecutionError)
    assert result.error_in_exec.outcomes[0].status == "cancelled"
    shown = captured.stdout + captured.stderr
    # a job is not this cell: its label is the server's cell count, said as such
    assert f"Remote error on session '{name}' (remote cell" in shown
    assert "rpyc_ipy/" not in shown and "rpyc_ipy.ipython" not in shown, shown
    _, captured = run(ip, f"%rpyc_result --cancel {job}")
    assert "not running" in captured.stdout


def test_job_magics_need_a_job(ip: InteractiveShell, exec_server: ServerProcess,
                               name: str) -> None:
    connect(ip, name, exec_server)
    result, _ = run(ip, f"%rpyc_result {name}")
    assert "no jobs on session" in str(result.error_in_exec)
    result, _ = run(ip, f"%rpyc_result {name} x999")
    assert "no job 'x999' on session" in str(result.error_in_exec)
    result, _ = run(ip, f"%%remote --bg -s {name} -o out\n1")
    assert "--bg starts a job on one session" in str(result.error_in_exec)


def test_a_killed_worker_is_one_line_and_restart_starts_a_fresh_one(
        ip: InteractiveShell, exec_server: ServerProcess, name: str) -> None:
    first = connect(ip, name, exec_server)
    run(ip, f"%remote -s {name} kept = 1")
    result, captured = run(ip, f"%%remote -s {name}\nimport os, signal\n"
                               "os.kill(os.getpid(), signal.SIGKILL)")
    error = result.error_in_exec
    assert isinstance(error, RemoteExecutionError)
    shown = error._render_traceback_()
    assert len(shown) == 1 and "SIGKILL" in shown[0] and "%rpyc_restart" in shown[0]
    assert f"the worker of session '{name}'" in shown[0]
    assert "Traceback" not in captured.stdout + captured.stderr
    assert "re-attach" not in captured.stderr

    again = connect(ip, name, exec_server)  # the card tells why
    assert "died:" in repr(again) and "SIGKILL" in repr(again)
    result, captured = run(ip, f"%remote -s {name} 1")
    assert len(result.error_in_exec._render_traceback_()) == 1
    assert "SIGKILL" in str(result.error_in_exec)

    _, captured = run(ip, f"%rpyc_restart {name}")
    assert f"session '{name}' restarted: a fresh worker (pid " in captured.stdout
    assert str(first.remote["pid"]) not in captured.stdout
    assert again.conn is not again.control  # cells go through a data channel again
    result, _ = run(ip, f"%remote -s {name} 'kept' in dir()")
    assert repr(result.result) == "False"
    assert "restarts" in repr(again)


def test_classic_sessions_have_no_worker_to_restart_and_no_jobs(ip: InteractiveShell,
                                                                server_dir: Path) -> None:
    server = spawn("classic", server_dir)
    try:
        connect(ip, "classic_s", server, "--classic")
        result, _ = run(ip, "%rpyc_restart classic_s")
        assert isinstance(result.error_in_exec, SessionError)
        assert "has no worker to restart" in str(result.error_in_exec)
        for line in ("%%remote --bg -s classic_s\n1", "%rpyc_jobs classic_s"):
            result, _ = run(ip, line)
            assert isinstance(result.error_in_exec, SessionError)
            assert "background jobs need an rpyc_ipy execution server" in \
                str(result.error_in_exec)
    finally:
        server.stop()


def test_a_dropped_connection_mid_cell_is_re_attached_and_the_output_replayed(
        ip: InteractiveShell, exec_server: ServerProcess, name: str, tmp_path: Path) -> None:
    flag = tmp_path / "go"
    session = connect(ip, name, exec_server)
    dropped = session.conn

    def drop_the_network() -> None:
        # shut the socket down under the connection, as a network drop does
        with socket.socket(fileno=os.dup(dropped.fileno())) as sock:
            sock.shutdown(socket.SHUT_RDWR)
        flag.touch()  # the cell prints on while nobody is attached

    when_shown("waiting", drop_the_network)
    cell = waiting_cell(flag, after="after", result="6 * 7").replace(
        "print('after', flush=True)", "for i in range(3):\n    print('after', i, flush=True)")
    result, captured = run(ip, f"%%remote -s {name}\n{cell}")
    assert result.success and repr(result.result) == "42"
    assert captured.stdout.split("\n")[:4] == ["waiting", "after 0", "after 1", "after 2"]
    assert "re-attached" in captured.stderr
    assert session.conn is not dropped and dropped.closed
