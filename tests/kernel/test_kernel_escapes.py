"""The remote kernel's notes and error replies never carry a server's terminal escapes
(issue 13, item 8): a real kernel (jupyter_client) against a hostile server whose cell
is "cancelled" with a note full of OSC 52, OSC 0 and ``ESC[2J``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kernelkit import KernelRig

import rpyc_ipy

pytestmark = pytest.mark.timeout(120)

ESC = "\x1b]52;c;cHduZWQ=\x07\x1b]0;owned\x07\x1b[2J"


class CancellingService(rpyc_ipy.Service):
    """Claims to be an execution service; every cell ends "cancelled" with a hostile note."""

    def exposed_hello(self, client: Any = None) -> Any:
        return (("engine", "1"), ("features", ("execute",)))

    def exposed_execute(self, code: str, emit: Any, options: Any = ()) -> Any:
        emit((("stream", "stderr", f"printed {ESC}\n"),))
        return ("cancelled", 1, None, (), None, f"stopped {ESC} by the server", None)


@pytest.fixture
def kernel(tmp_path: Path, start_server: Callable[..., rpyc_ipy.ThreadedServer]
           ) -> Iterator[KernelRig]:
    server = start_server(CancellingService)
    rig = KernelRig(tmp_path / "prefix", "rpyc-escapes")
    rig.install(host="127.0.0.1", port=server.port)
    rig.start()
    try:
        yield rig
    finally:
        rig.shutdown()


def test_the_kernel_notes_and_error_reply_are_sanitized(kernel: KernelRig) -> None:
    cell = kernel.run("anything")
    everything = json.dumps([cell.reply, *cell.messages])
    assert "stopped" in everything and "printed" in everything
    assert "\\u001b]" not in everything and "\\u001b[2J" not in everything
