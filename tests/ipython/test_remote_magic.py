"""%%remote and %remote: results by value, live streaming, -o, fan-out, errors, timeouts,
and the classic fallback against our SlaveService and the real rpyc 6.0.2 one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from ipy_rig import WAIT, connect, run
from ipy_servers import ServerProcess, spawn
from IPython.core.interactiveshell import InteractiveShell

from rpyc_ipy import BaseNetref
from rpyc_ipy.ipython.display import RemoteResult
from rpyc_ipy.ipython.execution import RemoteExecutionError, RemoteTimeoutError


@pytest.fixture(scope="module")
def classic_server(server_dir: Path) -> Iterator[ServerProcess]:
    server = spawn("classic", server_dir)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def rpyc_classic_server(server_dir: Path) -> Iterator[ServerProcess]:
    pytest.importorskip("rpyc")
    server = spawn("rpyc-classic", server_dir)
    yield server
    server.stop()


def test_last_expression_is_the_cells_result_by_value(ip: InteractiveShell,
                                                      exec_server: ServerProcess) -> None:
    connect(ip, "s", exec_server)
    result, captured = run(ip, "%%remote\nprint('hello')\nx = [1, 2, 3]\nsum(x)")
    assert result.error_in_exec is None
    assert isinstance(result.result, RemoteResult) and repr(result.result) == "6"
    assert captured.stdout.startswith("hello\n")
    # the namespace persists, and the trailing ; silences the result
    result, _ = run(ip, "%%remote\nx.append(4)\nlen(x);")
    assert result.result is None
    result, _ = run(ip, "%remote len(x)")
    assert repr(result.result) == "4"


def test_output_streams_while_the_cell_runs(ip: InteractiveShell, exec_server: ServerProcess,
                                            tmp_path: Path) -> None:
    # the cell waits for a file that we write only once "0" has arrived here: output held
    # back until the end would leave the cell waiting in vain
    session = connect(ip, "s", exec_server)
    go = tmp_path / "seen 0"
    arrivals: list[str] = []

    def on_stream(name: str, text: str) -> None:
        arrivals.append(text)
        if "0\n" in "".join(arrivals):
            go.touch()

    outcome = session.execute(
        "import os, sys, time\nprint(0, flush=True)\n"
        f"for _ in range(200):  # up to 10 s\n    if os.path.exists({str(go)!r}):\n"
        "        break\n    time.sleep(0.05)\n"
        f"print('released' if os.path.exists({str(go)!r}) else 'never released', flush=True)\n"
        "for i in (1, 2):\n    print(i, flush=True)\nprint('err', file=sys.stderr)",
        on_stream=on_stream, timeout=WAIT)
    assert outcome.status == "ok"
    assert "".join(arrivals) == "0\nreleased\n1\n2\nerr\n"


def test_fd_level_output_of_c_code_is_captured(ip: InteractiveShell,
                                               exec_server: ServerProcess) -> None:
    connect(ip, "s", exec_server)
    _, captured = run(ip, "%%remote\nimport ctypes, os\nos.write(1, b'from fd 1\\n')\n"
                             "ctypes.CDLL(None).printf(b'from printf\\n')")
    assert "from fd 1" in captured.stdout and "from printf" in captured.stdout


def test_display_calls_and_output_variable(ip: InteractiveShell,
                                           exec_server: ServerProcess) -> None:
    connect(ip, "s", exec_server)
    _, captured = run(ip, "%%remote -o data\ndisplay({'k': 1})\n{'a': [1, 2.5], "
                                  "'b': (None, b'x')}")
    assert captured.outputs[0].data["text/plain"] == "{'k': 1}"
    assert ip.user_ns["data"] == {"a": [1, 2.5], "b": (None, b"x")}
    # not plain data: -o keeps a netref to it
    run(ip, "%%remote -o mod\nimport os\nos")
    assert isinstance(ip.user_ns["mod"], BaseNetref) and ip.user_ns["mod"].sep == "/"


def test_remote_html_is_sanitized_unless_trusted(ip: InteractiveShell,
                                                 exec_server: ServerProcess) -> None:
    connect(ip, "s", exec_server)
    cell = ("%%remote\nclass H:\n    def _repr_html_(self): return '<b onclick=\"x()\">bold</b>'\n"
            "    def __repr__(self): return 'H()'\nH()")
    result, _ = run(ip, cell)
    assert result.result.data == {"text/plain": "H()", "text/html": "<b>bold</b>"}
    ip.run_line_magic("config", "RPyCPolicy.sanitize_remote_html = False")
    result, _ = run(ip, cell)
    assert result.result.data == {"text/plain": "H()"}
    ip.run_line_magic("config", "RPyCPolicy.trust_remote_display = True")
    result, _ = run(ip, cell)
    assert result.result.data["text/html"] == '<b onclick="x()">bold</b>'


def test_remote_errors_show_the_remote_traceback(ip: InteractiveShell,
                                                 exec_server: ServerProcess) -> None:
    connect(ip, "s", exec_server)
    result, _ = run(ip, "%%remote\ndef f():\n    raise ValueError('bad value')\nf()")
    error = result.error_in_exec
    assert isinstance(error, RemoteExecutionError) and error.ename == "ValueError"
    rendered = "\n".join(error._render_traceback_())
    assert "session 's'" in rendered and "bad value" in rendered
    assert "raise ValueError" in rendered  # the remote source line
    assert "rpyc_ipy" not in rendered.split("session 's'")[1]  # no engine frames
    result, _ = run(ip, "%%remote\ndef broken(:")
    assert result.error_in_exec.ename == "SyntaxError"
    # the session still works, SystemExit does not stop the server
    result, _ = run(ip, "%%remote\nraise SystemExit(3)")
    assert result.error_in_exec.ename == "SystemExit"
    assert repr(run(ip, "%remote 'alive'")[0].result) == "'alive'"


def test_fan_out_runs_concurrently_with_labelled_output(ip: InteractiveShell,
                                                        exec_server: ServerProcess) -> None:
    connect(ip, "a", exec_server)
    connect(ip, "b", exec_server)
    # each session runs in a worker process of its own: the two cells meet in a folder,
    # each leaving a file and waiting for the other's; one after the other, the first
    # would wait there alone until it gave up
    key = f"fan_out_{uuid.uuid4().hex}"
    result, captured = run(
        ip, f"%%remote -s a,b -o got\nimport os, pathlib, tempfile, time\n"
            f"meet = pathlib.Path(tempfile.gettempdir(), {key!r})\n"
            "meet.mkdir(exist_ok=True)\n(meet / str(os.getpid())).touch()\n"
            f"for _ in range({int(WAIT * 50)}):\n"
            "    if len(list(meet.iterdir())) >= 2: break\n"
            "    time.sleep(0.01)\n"
            "else:\n    raise RuntimeError('the other session never came')\n"
            "print('line one')\nprint('line two')\n'done'")
    assert result.error_in_exec is None, "the sessions ran one after the other"
    lines = captured.stdout.splitlines()
    for name in ("a", "b"):
        assert f"[{name}] line one" in lines and f"[{name}] line two" in lines
    assert ip.user_ns["got"] == {"a": "done", "b": "done"}
    result, _ = run(ip, "%%remote --all\nundefined_name")
    error = result.error_in_exec
    assert isinstance(error, RemoteExecutionError) and len(error.outcomes) == 2
    rendered = "\n".join(error._render_traceback_())
    assert "session 'a'" in rendered and "session 'b'" in rendered and "NameError" in rendered


def test_timeout_cancels_the_cell(ip: InteractiveShell, exec_server: ServerProcess) -> None:
    connect(ip, "s", exec_server)
    # run() waits at most ipy_rig.WAIT, far below the sleep: the timeout cut it short
    result, _ = run(ip, "%%remote --timeout 0.5\nimport time\ntime.sleep(120)")
    assert isinstance(result.error_in_exec, RemoteTimeoutError)
    result, _ = run(ip, "%remote 1")  # answered while the abandoned sleep still runs
    assert repr(result.result) == "1"


def test_code_is_not_expanded_locally(ip: InteractiveShell, exec_server: ServerProcess) -> None:
    connect(ip, "s", exec_server)
    ip.user_ns["local_only"] = 5
    result, _ = run(ip, "%remote '{local_only} $local_only'")
    assert repr(result.result) == "'{local_only} $local_only'"


@pytest.mark.parametrize("kind", ["classic", "rpyc-classic"])
def test_classic_servers_run_cells_with_the_shipped_engine(
        ip: InteractiveShell, kind: str, request: pytest.FixtureRequest) -> None:
    server = request.getfixturevalue("classic_server" if kind == "classic"
                                     else "rpyc_classic_server")
    session = connect(ip, "c", server, "--classic")
    assert session.kind == "classic" and session.has_engine
    result, captured = run(ip, "%%remote\nimport os\nprint('pid', os.getpid())\n6 * 7")
    assert result.error_in_exec is None, result.error_in_exec
    assert repr(result.result) == "42" and captured.stdout.startswith("pid ")
    assert session.conn.eval("6 * 7") == 42  # the classic namespace is the cells' namespace
    result, _ = run(ip, "%%remote\n1/0")
    assert result.error_in_exec.ename == "ZeroDivisionError"
    assert "classic" in session._repr_html_()
    assert "runs cells in the server's own process" in repr(session)  # no worker there


def test_classic_falls_back_to_plain_execute_and_eval(
        ip: InteractiveShell, classic_server: ServerProcess,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import rpyc_ipy.ipython.session as session_module

    def refuse(conn: object, **_: object) -> None:
        raise RuntimeError("no engine here")

    monkeypatch.setattr(session_module, "install_engine", refuse)
    session = connect(ip, "c", classic_server, "--classic")
    assert session.kind == "classic" and not session.has_engine
    assert "no engine here" in session.fallback_reason
    result, _ = run(ip, "%%remote\ny = 20\ny + 1")
    assert repr(result.result) == "21"
    assert session.ns["y"] == 20
    result, _ = run(ip, "%%remote\nint('x')")
    assert result.error_in_exec.ename == "ValueError"


def test_a_plain_service_does_not_run_cells(ip: InteractiveShell,
                                            classic_server: ServerProcess) -> None:
    session = connect(ip, "p", classic_server)  # a classic server, without --classic
    assert session.kind == "service" and session.info["service"] == "SLAVE"
    result, _ = run(ip, "%remote 1")
    assert "does not run cells" in str(result.error_in_exec)
    assert "reconnect with --classic" in repr(session)


def test_no_stream_shows_the_output_at_the_end(ip: InteractiveShell,
                                               exec_server: ServerProcess) -> None:
    connect(ip, "s", exec_server)
    result, captured = run(ip, "%%remote --no-stream\nprint('one')\n'two'")
    assert captured.stdout.startswith("one\n") and repr(result.result) == "'two'"


@pytest.mark.parametrize("classic", [False, True])
def test_a_server_dying_mid_cell_ends_the_cell(ip: InteractiveShell, server_dir: Path,
                                               classic: bool) -> None:
    server = spawn("classic" if classic else "exec", server_dir)
    try:
        connect(ip, "s", server, "--classic" if classic else "")
        import threading

        threading.Timer(0.5, server.stop).start()
        # run() waits at most ipy_rig.WAIT, far below the sleep: the lost server ended it
        result, _ = run(ip, "%%remote\nimport time\ntime.sleep(120)")
        assert isinstance(result.error_in_exec, RemoteExecutionError)
        assert "Connection" in str(result.error_in_exec)
    finally:
        server.stop()
