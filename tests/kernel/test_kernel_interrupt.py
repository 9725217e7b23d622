"""Interrupting the remote kernel (interrupt_mode "signal" and "message") stops the
remote work with a SIGINT in its worker, and the kernel answers the next cell at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from kernelkit import WAIT, Cell, NotebookServer, plain, start_kernel

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("mode", ["signal", "message"])
def test_interrupt_cancels_a_remote_sleep_and_the_kernel_answers_again(
        server: NotebookServer, tmp_path: Path, mode: str) -> None:
    rig = start_kernel(tmp_path / "prefix", server, name=f"interrupt-{mode}",
                       interrupt_mode=mode)
    try:
        assert rig.km.kernel_spec.interrupt_mode == mode
        assert rig.run("n = 0").status == "ok"
        sent: list[bool] = []

        def interrupt(cell: Cell) -> bool:  # once the cell's first output shows it runs
            if not cell.of("stream"):
                return False
            sent.append(True)
            rig.km.interrupt_kernel()
            return True

        # ended within WAIT, far below the sleep: the interrupt cut it short
        cell = rig.run("import time\nprint('sleeping', flush=True)\ntime.sleep(300)",
                       during=interrupt, timeout=WAIT)
        assert sent, "the interrupt was never sent"
        assert cell.status == "error"
        assert cell.reply["ename"] == "KeyboardInterrupt"
        assert "sleeping\n" in cell.stream()
        notes = plain(cell.stream("stderr"))
        assert "interrupting the cell on remote" in notes
        assert "remote: stopped by an interrupt (SIGINT)" in notes, notes  # the sleep ended
        assert "cancelled on 127.0.0.1" in cell.text

        cell = rig.run("1 + 1", timeout=10)  # not held up by the remote sleep
        assert cell.result == {"text/plain": "2"}

        # a busy loop is stopped on the server, not just abandoned by the kernel
        sent.clear()
        cell = rig.run("print('looping', flush=True)\nwhile True:\n    n += 1",
                       during=interrupt, timeout=WAIT)
        assert sent, "the interrupt was never sent"
        assert cell.reply["ename"] == "KeyboardInterrupt"
        assert "remote: stopped by an interrupt (SIGINT)" in plain(cell.stream("stderr"))
        # the worker runs one cell at a time: that these answer at all means the loop ended
        first = rig.run("n").result
        assert first is not None and int(first["text/plain"]) > 0
        assert rig.run("n").result == first, "the remote loop kept running"
    finally:
        rig.shutdown()
