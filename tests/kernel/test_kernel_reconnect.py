"""When the server restarts or is down, the next cell says so clearly and reconnects (a
new remote namespace: the session there is gone). A cut connection to a server that
still runs is re-attached instead: test_kernel_reattach.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kernelkit import WAIT, Cell, KernelRig, NotebookServer, plain, start_kernel, worker_of

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[NotebookServer]:
    (tmp_path / "server").mkdir()
    srv = NotebookServer(tmp_path / "server").start()
    yield srv
    srv.stop()


@pytest.fixture
def rig(own_server: NotebookServer, tmp_path: Path) -> Iterator[KernelRig]:
    kernel = start_kernel(tmp_path / "prefix", own_server, name="reconnect")
    yield kernel
    kernel.shutdown()


def test_a_restarted_server_is_reconnected_by_the_next_cell(own_server: NotebookServer,
                                                            rig: KernelRig) -> None:
    first = rig.run("import os\nbefore = 1\nos.getpid()")
    assert first.status == "ok", first.text
    assert worker_of(first.result, own_server.pid)
    old_pid = own_server.pid
    own_server.restart()
    assert own_server.pid != old_pid

    cell = rig.run("import os\nprint('after the restart')\nos.getpid()")
    assert cell.status == "ok", cell.text
    notes = plain(cell.stream("stderr"))
    assert f"the connection to 127.0.0.1:{own_server.port} was lost" in notes
    assert "reconnecting" in notes
    assert f"reconnected to 127.0.0.1:{own_server.port}" in notes
    assert "new remote namespace" in notes
    assert cell.stream() == "after the restart\n"
    assert worker_of(cell.result, own_server.pid)
    card = cell.of("display_data")
    assert card and "RemoteSession 'remote'" in card[0]["data"]["text/plain"]

    gone = rig.run("before")  # the namespace is new, as the note said
    assert gone.reply["ename"] == "NameError"
    again = rig.run("print('steady')")  # no more notes once reconnected
    assert again.stream() == "steady\n" and again.stream("stderr") == ""


def test_a_server_that_is_down_gives_a_clear_error_until_it_is_back(
        own_server: NotebookServer, rig: KernelRig) -> None:
    assert rig.run("1").status == "ok"
    own_server.stop()
    cell = rig.run("2", timeout=30)
    assert cell.status == "error"
    text = cell.text
    assert f"cannot connect to 127.0.0.1:{own_server.port}" in text
    assert "The next cell tries again." in text
    assert "was lost" in plain(cell.stream("stderr"))
    own_server.restart()
    cell = rig.run("3")
    assert cell.result == {"text/plain": "3"}
    assert "reconnected" in plain(cell.stream("stderr"))


def test_a_connection_lost_during_a_cell_ends_the_cell_and_the_next_one_reconnects(
        own_server: NotebookServer, rig: KernelRig) -> None:
    assert rig.run("1").status == "ok"
    stopped: list[bool] = []

    def kill_server(cell: Cell) -> bool:  # once the cell's first output shows it runs
        if "working" not in cell.stream():
            return False
        own_server.stop()
        stopped.append(True)
        return True

    # ended within WAIT, far below the sleep: the lost connection ended it
    cell = rig.run("import time\nprint('working', flush=True)\ntime.sleep(300)",
                   during=kill_server, timeout=WAIT)
    assert stopped
    assert cell.status == "error"
    assert "was lost while the cell ran; the next cell reconnects" in cell.text
    own_server.restart()
    cell = rig.run("'back'")
    assert cell.result == {"text/plain": "'back'"}
    assert "reconnected" in plain(cell.stream("stderr"))


def test_a_session_closed_in_a_local_cell_is_reopened_by_the_next_remote_cell(
        rig: KernelRig) -> None:
    assert rig.run("1").status == "ok"
    closed = rig.run("%%local\n%rpyc_disconnect remote")
    assert closed.status == "ok", closed.text
    cell = rig.run("'again'")
    assert cell.result == {"text/plain": "'again'"}
    notes = plain(cell.stream("stderr"))
    assert "session 'remote' was closed" in notes and "reconnected" in notes
    assert rig.run("%%local\nremote.closed").result == {"text/plain": "False"}
