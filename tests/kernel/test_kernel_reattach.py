"""The remote kernel and its server-side session: a cut connection is re-attached (the
namespace is kept, a running cell completes), a Jupyter restart starts the session
afresh (a new worker)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kernelkit import (
    WAIT,
    Cell,
    KernelRig,
    NotebookServer,
    TcpRelay,
    plain,
    process_gone,
    start_kernel,
    worker_of,
)
from waitkit import wait_until

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def relay(server: NotebookServer) -> Iterator[TcpRelay]:
    """The server behind a relay the test can cut."""
    front = TcpRelay(server.port)
    yield front
    front.close()


@pytest.fixture
def rig(server: NotebookServer, relay: TcpRelay, tmp_path: Path) -> Iterator[KernelRig]:
    """A remote kernel that reaches the server through ``relay``."""
    kernel = start_kernel(tmp_path / "prefix", server, name="reattach", port=relay.port)
    yield kernel
    kernel.shutdown()


def worker_pid(rig: KernelRig, server: NotebookServer) -> int:
    cell = rig.run("import os\nos.getpid()")
    assert cell.status == "ok", cell.text
    assert worker_of(cell.result, server.pid)
    assert cell.result is not None
    return int(cell.result["text/plain"])


def test_a_connection_cut_while_a_cell_runs_is_reattached_and_the_cell_completes(
        server: NotebookServer, relay: TcpRelay, rig: KernelRig, tmp_path: Path) -> None:
    assert rig.run("kept = 41").status == "ok"
    pid = worker_pid(rig, server)
    flag = tmp_path / "flag"
    steps: list[str] = []

    def cut_then_release(cell: Cell) -> bool:
        if not steps and "before" in cell.stream():  # the cell runs: cut the network
            assert relay.drop() > 0
            steps.append("cut")
        elif steps == ["cut"] and "re-attached" in cell.stream("stderr"):
            flag.touch()  # only now may the cell go on
            steps.append("released")
        return steps == ["cut", "released"]

    cell = rig.run(f"import os, time\nprint('before', flush=True)\n"
                   f"while not os.path.exists({str(flag)!r}):\n    time.sleep(0.02)\n"
                   "print('after', flush=True)\nkept + 1", during=cut_then_release)
    assert steps == ["cut", "released"]
    assert cell.status == "ok", cell.text
    assert cell.stream() == "before\nafter\n"
    assert cell.result == {"text/plain": "42"}
    notes = plain(cell.stream("stderr"))
    assert f"the connection to session 'remote' dropped; re-attached (worker {pid})" in notes
    assert relay.accepted > relay.dropped  # the new connection went through the relay

    after = rig.run("kept")  # the same namespace, the same worker, no more notes
    assert after.result == {"text/plain": "41"}
    assert after.stream("stderr") == ""
    assert worker_pid(rig, server) == pid


def test_a_connection_cut_between_cells_is_reattached_by_the_next_cell(
        server: NotebookServer, relay: TcpRelay, rig: KernelRig) -> None:
    assert rig.run("kept = 'still here'").status == "ok"
    pid = worker_pid(rig, server)
    assert relay.drop() > 0

    cell = rig.run("print(kept)")
    assert cell.status == "ok", cell.text
    assert cell.stream() == "still here\n"
    notes = plain(cell.stream("stderr"))
    assert f"the connection to 127.0.0.1:{relay.port} was lost" in notes
    assert (f"re-attached to session 'remote' (worker {pid}): its namespace is as you "
            "left it") in notes
    assert "new remote namespace" not in notes
    assert worker_pid(rig, server) == pid
    again = rig.run("print('steady')")
    assert again.stream() == "steady\n" and again.stream("stderr") == ""


@pytest.mark.parametrize("now", [False, True], ids=["graceful", "killed"])
def test_a_kernel_restart_starts_the_session_afresh_in_a_new_worker(
        server: NotebookServer, tmp_path: Path, now: bool) -> None:
    rig = start_kernel(tmp_path / "prefix", server, name=f"restart-{now}")
    try:
        assert rig.run("kept = 1").status == "ok"
        old = worker_pid(rig, server)

        rig.km.restart_kernel(now=now)
        rig.kc.wait_for_ready(timeout=WAIT)

        first = rig.run("import os\nos.getpid()")
        assert first.status == "ok", first.text
        assert worker_of(first.result, server.pid)
        assert first.result is not None and int(first.result["text/plain"]) != old
        assert "re-attached" not in plain(first.stream("stderr"))
        assert rig.run("kept").reply["ename"] == "NameError"
        wait_until(lambda: process_gone(old), WAIT, what=f"the old worker {old} to end")
    finally:
        rig.shutdown()
