"""ThreadedServer(processes=N): clients are handed to forked workers in turn, each
connection lives in one worker, close() and Ctrl-C stop every worker, and a
worker never outlives its server. Real processes and sockets on 127.0.0.1."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from waitkit import wait_until

import rpyc_ipy
from rpyc_ipy.errors import UsageError

pytestmark = [pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
              pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
WAIT = 30.0


class Where(rpyc_ipy.Service):
    calls = 0  # per process: each worker has its own

    def exposed_pid(self) -> int:
        return os.getpid()

    def exposed_count(self) -> int:
        Where.calls += 1
        return Where.calls


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie nobody reaped yet counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_clients_are_served_by_the_workers_in_turn() -> None:
    server = rpyc_ipy.ThreadedServer(Where, port=0, listener_timeout=0.2, processes=2)
    try:
        server.start_in_background()
        workers = server.worker_pids
        assert len(workers) == 2 and os.getpid() not in workers
        conns = [rpyc_ipy.connect("127.0.0.1", server.port) for _ in range(4)]
        # round robin: each worker serves two of the four, every request of a client
        # goes to the process that accepted it
        assert [c.root.pid() for c in conns] == [workers[0], workers[1]] * 2
        assert [c.root.pid() for c in reversed(conns)] == [workers[1], workers[0]] * 2
        # the service's state is per process
        assert [c.root.count() for c in conns] == [1, 1, 2, 2]
        assert not server.clients  # the workers hold the connections, not this process
    finally:
        server.close()
    assert all(_gone(pid) for pid in workers)  # close() reaped them
    for conn in conns:
        with pytest.raises((rpyc_ipy.errors.ConnectionClosed, OSError)):
            conn.root.pid()
        conn.close()


class Gated(rpyc_ipy.Service):
    gate_fd = -1  # the read end of a pipe the test opens; workers inherit it

    def exposed_wait_for_gate(self) -> str:
        ready, _, _ = select.select([Gated.gate_fd], [], [], WAIT)
        return "opened" if ready else "timed out"

    def exposed_add(self, a: int, b: int) -> int:
        return a + b

    def exposed_sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def test_a_long_request_in_a_worker_does_not_hold_up_its_other_clients() -> None:
    # the hand-on from a long request needs the watchdog thread: start it here first,
    # so the workers are forked from a process that has one (a child must start its own)
    with rpyc_ipy.ThreadedServer(Gated, port=0, listener_timeout=0.2) as local:
        local.start_in_background()
        with rpyc_ipy.connect("127.0.0.1", local.port) as conn:
            conn.root.sleep(0.05)
    read_fd, write_fd = os.pipe()
    Gated.gate_fd = read_fd
    try:
        with rpyc_ipy.ThreadedServer(Gated, port=0, listener_timeout=0.2,
                                     processes=2) as server:
            server.start_in_background()
            conns = [rpyc_ipy.connect("127.0.0.1", server.port) for _ in range(3)]
            try:
                blocked = rpyc_ipy.async_(conns[0].root.wait_for_gate)()
                # conns[2] lives in the same worker as conns[0] (in turn: 0, 1, 0)
                assert conns[2].root.add(1, 2) == 3
                assert not blocked.ready
                os.write(write_fd, b"x")
                blocked.wait()
                assert blocked.value == "opened"
            finally:
                for conn in conns:
                    conn.close()
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_a_worker_that_dies_is_left_out_and_the_others_serve() -> None:
    with rpyc_ipy.ThreadedServer(Where, port=0, listener_timeout=0.2, processes=2) as server:
        server.start_in_background()
        dead, alive = server.worker_pids
        os.kill(dead, signal.SIGKILL)
        assert wait_until(lambda: _gone(dead), WAIT)
        for _ in range(3):
            with rpyc_ipy.connect("127.0.0.1", server.port) as conn:
                assert conn.root.pid() == alive
        assert server.worker_pids == [alive]


_SERVE = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {root!r})
    import rpyc_ipy
    class Where(rpyc_ipy.Service):
        def exposed_pid(self):
            return os.getpid()
    server = rpyc_ipy.ThreadedServer(Where, port=0, listener_timeout=0.2, processes=2)
    print(server.port, flush=True)
    server.start()
    print("closed", flush=True)
""")


def _serve_in_process() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-c", _SERVE.format(root=str(ROOT))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def _worker_pids(port: int, count: int) -> list[int]:
    conns = [rpyc_ipy.connect("127.0.0.1", port) for _ in range(count)]
    try:
        return sorted({c.root.pid() for c in conns})
    finally:
        for conn in conns:
            conn.close()


@pytest.mark.parametrize("how", ["ctrl-c", "sigkill"])
def test_no_worker_outlives_its_server(how: str) -> None:
    proc, port = _serve_in_process()
    try:
        workers = _worker_pids(port, 2)
        assert len(workers) == 2 and proc.pid not in workers
        if how == "ctrl-c":  # a terminal's Ctrl-C: SIGINT to the whole process group
            os.killpg(proc.pid, signal.SIGINT)
            out, err = proc.communicate(timeout=WAIT)
            assert proc.returncode == 0 and "closed" in out
            assert "Traceback" not in err
        else:  # the server dies without a word: the workers see their channel end
            proc.kill()
            proc.wait(timeout=WAIT)
        assert wait_until(lambda: all(_gone(pid) for pid in workers), WAIT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=WAIT)


def test_processes_must_be_a_whole_number_and_fork_must_exist(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(UsageError, match="whole number"):
            rpyc_ipy.ThreadedServer(Where, port=0, processes=bad)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="channel_handler"):
        rpyc_ipy.ThreadedServer(Where, port=0, processes=2,
                                channel_handler=lambda transport, credentials: None)
    monkeypatch.delattr(os, "fork")  # as on Windows
    with pytest.raises(UsageError, match=r"os\.fork"):
        rpyc_ipy.ThreadedServer(Where, port=0, processes=2)
    with rpyc_ipy.ThreadedServer(Where, port=0, processes=1) as server:  # the default needs none
        assert server.worker_pids == []

