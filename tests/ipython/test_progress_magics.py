"""Progress of long notebook work through the magics: connecting (its steps, in order, and
Ctrl-C during a handshake), %rpyc_push / %rpyc_pull (one bar over the values; a stop
binds nothing), and %%remote on several sessions (sessions done)."""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Iterator

import pytest
from ipy_rig import WAIT, connect, run
from ipy_servers import ServerProcess
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from rpyc_ipy.ipython.execution import CellInterrupted

MIB = 1 << 20


@pytest.fixture
def progress_now(ip: InteractiveShell) -> InteractiveShell:
    """Progress shows from the first moment (the default waits 0.5 s)."""
    ip.run_line_magic("config", "RPyCMagics.progress_delay = 0")
    return ip


def drawn(stderr: str) -> list[str]:
    """The states a terminal progress line went through, in order."""
    return [part.strip() for part in stderr.split("\r")[1:]]


def stages(lines: list[str], label: str) -> list[str]:
    out: list[str] = []
    for line in lines:
        if line.startswith(label) and "[" in line:
            stage = line.split("[", 1)[1].split("]", 1)[0]
            if not out or out[-1] != stage:
                out.append(stage)
    return out


def test_connect_shows_its_steps_in_order(progress_now: InteractiveShell,
                                          srp_server: ServerProcess, srp_password: str) -> None:
    with capture_output() as captured:
        progress_now.run_line_magic(
            "rpyc_connect", f"s=127.0.0.1:{srp_server.port} --srp-user alice "
                            f"--password-env {srp_password}")
    lines = drawn(captured.stderr)
    assert stages(lines, "connect s") == [
        f"connecting to 127.0.0.1:{srp_server.port}", "SRP login", "identifying the server",
        "starting the session's worker", "opening the data channel"]
    assert lines[-1].startswith("connect s, done in ")


def test_tls_and_plaintext_connects_name_their_own_steps(
        progress_now: InteractiveShell, tls_server: ServerProcess,
        exec_server: ServerProcess) -> None:
    d = tls_server.dir
    with capture_output() as captured:
        progress_now.run_line_magic(
            "rpyc_connect", f"lab=127.0.0.1:{tls_server.port} --ca {d}/ca.pem "
                            f"--cert {d}/client.pem --key {d}/client.key")
        progress_now.run_line_magic("rpyc_connect", f"s=127.0.0.1:{exec_server.port}")
    lines = drawn(captured.stderr)
    assert stages(lines, "connect lab")[:3] == [
        f"connecting to 127.0.0.1:{tls_server.port}", "TLS handshake", "identifying the server"]
    assert stages(lines, "connect s")[:3] == [
        f"connecting to 127.0.0.1:{exec_server.port}", "first request",
        "identifying the server"]


def test_a_quick_connect_shows_nothing(ip: InteractiveShell, exec_server: ServerProcess) -> None:
    ip.run_line_magic("config", "RPyCMagics.progress_delay = 3600")
    with capture_output() as captured:
        ip.run_line_magic("rpyc_connect", f"s=127.0.0.1:{exec_server.port}")
    assert "connect s" not in captured.stderr


class SilentServer:
    """Accepts one connection, reads the client's hello and never answers: a
    handshake that hangs."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.hello = threading.Event()
        self.peer_closed = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(WAIT)
        conn, _ = self.listener.accept()
        conn.settimeout(WAIT)
        with conn:
            for _ in range(1000):  # the client's hello, then EOF when it closes
                if not conn.recv(65536):
                    self.peer_closed.set()
                    return
                self.hello.set()

    def close(self) -> None:
        self.listener.close()
        self.thread.join(WAIT)


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def test_ctrl_c_during_a_handshake_is_one_line_and_closes_the_socket(
        ip: InteractiveShell, silent_server: SilentServer, srp_password: str) -> None:
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    main = threading.main_thread().ident
    assert main is not None

    def press_stop() -> None:  # Ctrl-C, once the client waits for the server's answer
        if silent_server.hello.wait(WAIT):
            signal.pthread_kill(main, signal.SIGINT)

    stopper = threading.Thread(target=press_stop, daemon=True)
    stopper.start()
    with pytest.raises(CellInterrupted) as stopped, capture_output():
        ip.run_line_magic("rpyc_connect", f"s=127.0.0.1:{silent_server.port} "
                                          f"--srp-user alice --password-env {srp_password}")
    stopper.join(WAIT)
    assert str(stopped.value) == (f"stopped connecting to 127.0.0.1:{silent_server.port} "
                                  "(SRP login); nothing is left open")
    assert len(stopped.value._render_traceback_()) == 1
    assert silent_server.peer_closed.wait(WAIT), "the client's socket was left open"
    assert "s" not in ip.user_ns


def test_push_of_several_values_shows_one_bar(progress_now: InteractiveShell,
                                              exec_server: ServerProcess) -> None:
    session = connect(progress_now, "s", exec_server, "--new")
    progress_now.user_ns.update(a=b"a" * (3 * MIB), b=b"b" * (3 * MIB), c="c" * (3 * MIB))
    with capture_output() as captured:
        progress_now.run_line_magic("rpyc_push", "s a b c")
    lines = drawn(captured.stderr)
    assert lines[0].startswith("push to s: 0 B of 9.0 MiB (0%)")
    assert lines[-1].startswith("push to s: 9.0 MiB of 9.0 MiB (100%), done in")
    assert "pushed to s: a (3.0 MiB), b (3.0 MiB), c (3.0 MiB)" in captured.stdout
    assert session.execute("len(a) + len(b) + len(c)").data["text/plain"] == str(9 * MIB)


def test_a_push_stopped_between_batches_binds_nothing(ip: InteractiveShell,
                                                      exec_server: ServerProcess) -> None:
    session = connect(ip, "s", exec_server, "--new")
    values = {name: name * 2000 for name in ("v", "w", "x", "y", "z")}
    reports: list[tuple[int, int]] = []

    def stop_midway(done: int, total: int) -> None:
        reports.append((done, total))
        if 0 < done < total:
            raise KeyboardInterrupt  # what the stop button raises between requests

    with pytest.raises(KeyboardInterrupt):
        session.push(values, on_progress=stop_midway, batch_bytes=3000)
    assert len(reports) == 2  # stopped after the first of five requests
    bound = "sorted(n for n in ('v', 'w', 'x', 'y', 'z') if n in globals())"
    assert session.execute(bound).data["text/plain"] == "[]"
    # the values it held there are dropped: the next push binds only its own names
    session.push({"p": 1, "q": "q" * 4000}, batch_bytes=3000)
    assert session.execute(bound).data["text/plain"] == "[]"
    assert session.execute("p, len(q)").data["text/plain"] == "(1, 4000)"
    reports.clear()
    session.push(values, on_progress=lambda done, total: reports.append((done, total)),
                 batch_bytes=3000)
    assert len(reports) == 6 and reports[-1][0] == reports[-1][1]
    assert session.execute(bound).data["text/plain"] == "['v', 'w', 'x', 'y', 'z']"


def test_pull_counts_values_and_a_stop_assigns_nothing(progress_now: InteractiveShell,
                                                       exec_server: ServerProcess) -> None:
    session = connect(progress_now, "s", exec_server, "--new")
    session.execute("a, b, c = 'x' * 100, list(range(10)), {'k': 1}")
    with capture_output() as captured:
        progress_now.run_line_magic("rpyc_pull", "s a b c")
    lines = drawn(captured.stderr)
    assert lines[0].startswith("pull from s: 0 of 3 (0%)")
    assert lines[-1].startswith("pull from s: 3 of 3 (100%), done in")
    assert progress_now.user_ns["c"] == {"k": 1}

    def stop_after_first(done: int, total: int) -> None:
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        session.pull(["a", "b", "c"], on_progress=stop_after_first)


def test_fan_out_counts_sessions_done(progress_now: InteractiveShell,
                                      exec_server: ServerProcess) -> None:
    try:
        for name in ("s1", "s2", "s3"):
            connect(progress_now, name, exec_server)
        result, captured = run(progress_now, "%%remote -s s1,s2,s3\nprint('hi')")
    finally:  # the shared server counts sessions per user: end these there
        run(progress_now, "%rpyc_disconnect --all --end")
    assert result.error_in_exec is None
    lines = [line for line in drawn(captured.stderr) if line.startswith("sessions done")]
    counts = [line.split(": ", 1)[1].split(" (", 1)[0] for line in lines]
    assert counts[0] == "0 of 3" or counts[0] == "1 of 3"
    for n in (1, 2, 3):
        assert f"{n} of 3" in counts
    assert lines[-1].startswith("sessions done: 3 of 3 (100%)") and "done in" in lines[-1]
    assert captured.stdout.count("hi") == 3


def test_pull_groups_small_values_and_fetches_large_ones_alone(
        ip: InteractiveShell, exec_server: ServerProcess) -> None:
    """Progress over a pull costs few requests: small values come in growing groups."""
    from ipy_rig import RequestCounter

    session = connect(ip, "s", exec_server, "--new")
    session.execute("small = {f's{i}': i for i in range(64)}\nglobals().update(small)\n"
                    "big0, big1, big2 = (bytes(3000) for _ in range(3))")
    counter = RequestCounter(session.conn)
    reports: list[tuple[int, int]] = []
    got = session.pull([f"s{i}" for i in range(64)],
                       on_progress=lambda done, total: reports.append((done, total)))
    assert got["s63"][0] == 63 and reports[-1] == (64, 64)
    assert counter.count == 7  # groups of 1, 2, 4, 8, 16, 32 and the last 1
    counter.reset()
    session.pull(["big0", "big1", "big2"], on_progress=lambda done, total: None,
                 batch_bytes=2000)
    assert counter.count == 3  # each over the batch size: one request each
    counter.remove()
