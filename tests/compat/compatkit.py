"""Helpers for tests/compat: registries served from threads of this process, and
Python scripts run as real subprocesses (a uniquely named module, not conftest, so
tests can import from it)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rpyc_ipy.utils.registry import RegistryServer, TCPRegistryServer, UDPRegistryServer

WAIT = 20.0  #: upper bound of any single wait
KINDS = {"udp": UDPRegistryServer, "tcp": TCPRegistryServer}


@pytest.fixture
def registry() -> Iterator[Callable[..., RegistryServer]]:
    """``registry(kind, **kwargs)``: our UDP or TCP registry on 127.0.0.1 port 0,
    serving from a thread, closed at the end of the test."""
    started: list[tuple[RegistryServer, threading.Thread]] = []

    def start(kind: str = "udp", **kwargs: Any) -> RegistryServer:
        server = KINDS[kind](host="127.0.0.1", port=0, **kwargs)
        thread = threading.Thread(target=server.start, name="registry", daemon=True)
        thread.start()
        started.append((server, thread))
        return server

    try:
        yield start
    finally:
        for server, thread in started:
            server.close()
            thread.join(WAIT)
            assert not thread.is_alive()


def run_script(tmp_path: Path, source: str, *args: str, timeout: float = 60.0
               ) -> subprocess.CompletedProcess[str]:
    """Run ``source`` (dedented) as a script in a fresh interpreter; bounded."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    return subprocess.run([sys.executable, str(script), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=tmp_path)
