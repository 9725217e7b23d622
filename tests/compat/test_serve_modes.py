"""``rpyc-ipy serve`` with rpyc_classic's options: ``--mode threaded|forking|oneshot|stdio``,
``--register`` (with ``--registry-type/-host/-port``) and ``--logfile``; real
subprocesses on 127.0.0.1."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from compatkit import WAIT
from waitkit import wait_until

import rpyc_ipy
from rpyc_ipy.utils.registry import RegistryServer, TCPRegistryClient, UDPRegistryClient


class Serving:
    """A running ``rpyc-ipy serve``; its port from the "serving" line."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "rpyc_ipy", "serve", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._first_line, args=(lines,), daemon=True).start()
        line = lines.get(timeout=WAIT)
        assert line.startswith("rpyc-ipy: serving"), (line, self.proc.stderr)
        self.port = int(line.split()[4].rsplit(":", 1)[1])

    def _first_line(self, lines: queue.Queue[str]) -> None:
        assert self.proc.stdout is not None
        lines.put(self.proc.stdout.readline())

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        _, stderr = self.proc.communicate(timeout=WAIT)
        return self.proc.returncode, stderr


@pytest.fixture
def serve() -> Iterator[Callable[..., Serving]]:
    started: list[Serving] = []

    def start(*args: str) -> Serving:
        server = Serving(*args)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            if server.proc.poll() is None:
                server.proc.kill()
            server.proc.communicate(timeout=WAIT)


def test_forking_mode_serves_each_client_in_a_process_of_its_own(
        serve: Callable[..., Serving]) -> None:
    server = serve("--classic", "--mode", "forking", "--port", "0")
    with rpyc_ipy.classic.connect("127.0.0.1", server.port) as first, \
            rpyc_ipy.classic.connect("127.0.0.1", server.port) as second:
        pids = {first.modules.os.getpid(), second.modules.os.getpid()}
        assert len(pids) == 2 and server.proc.pid not in pids
        assert first.modules.os.getppid() == server.proc.pid
    status, _ = server.stop()
    assert status == 0


def test_oneshot_mode_exits_after_its_client(serve: Callable[..., Serving]) -> None:
    server = serve("--classic", "--mode", "oneshot", "--port", "0")
    with rpyc_ipy.classic.connect("127.0.0.1", server.port) as conn:
        assert conn.eval("6 * 7") == 42
    assert server.proc.wait(timeout=WAIT) == 0


def test_stdio_mode_is_stdio() -> None:
    args = [sys.executable, "-m", "rpyc_ipy", "serve", "--classic", "--mode", "stdio"]
    with rpyc_ipy.classic.connect_subproc(args) as conn:
        assert conn.modules.os.getppid() == os.getpid()


@pytest.mark.parametrize("kind", ["udp", "tcp"])
def test_register_announces_the_server_until_it_stops(
        serve: Callable[..., Serving], registry: Callable[..., RegistryServer],
        kind: str, tmp_path: Path) -> None:
    registry_server = registry(kind)
    client = (UDPRegistryClient if kind == "udp" else TCPRegistryClient)(
        "127.0.0.1", port=registry_server.port, timeout=WAIT)
    log = tmp_path / "serve.log"
    server = serve("--classic", "--port", "0", "--register", "--registry-type", kind,
                   "--registry-host", "127.0.0.1", "--registry-port", str(registry_server.port),
                   "--logfile", str(log))
    wait_until(lambda: client.discover("SLAVE") == (("127.0.0.1", server.port),), WAIT,
               what="the served classic server registered")
    with rpyc_ipy.connect_by_service("SLAVE", registrar=client) as conn:
        assert conn.root.eval("1 + 1") == 2
    status, stderr = server.stop()
    assert status == 0
    assert client.discover("SLAVE") == ()  # unregistered before it exited
    assert "registry 127.0.0.1" in log.read_text()  # the log went to --logfile ...
    assert "connection" not in stderr  # ... and not to stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--notebook", "--mode", "forking"], "--mode forking does not apply"),
    (["--classic", "--stdio", "--mode", "oneshot"], "--mode oneshot does not apply"),
    (["--classic", "--stdio", "--register"], "does not apply to stdio"),
    (["--classic", "--register", "--registry-type", "tcp"], "needs --registry-host"),
])
def test_contradictory_options_are_refused(args: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "rpyc_ipy", "serve", *args],
                          capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 2
    assert message in done.stderr
