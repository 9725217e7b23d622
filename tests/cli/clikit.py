"""Helpers for the CLI tests: run ``python -m rpyc_ipy`` as a real subprocess, read
its "serving" line with a timeout, collect its stderr, and always kill it.

(A uniquely named module, not conftest, so tests can import from it.)
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from waitkit import wait_until

WAIT = 20.0  # upper bound for any single wait
HERE = Path(__file__).resolve().parent
#: ``rpyc-ipy: serving NAME on HOST:PORT (auth: KIND)``
SERVING = re.compile(r"^rpyc-ipy: serving (\S+) on (\S+):(\d+) \(auth: (\w+)\)$")


def cli(*args: str) -> list[str]:
    """The argv that runs ``rpyc-ipy ARGS`` with this interpreter."""
    return [sys.executable, "-m", "rpyc_ipy", *args]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("NO_COLOR", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(*args: str, input: str | None = None, timeout: float = WAIT,
            new_session: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``rpyc-ipy ARGS`` to completion (bounded); stdin is ``input`` or empty."""
    return subprocess.run(
        cli(*args),
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(),
        start_new_session=new_session,
    )


class ServerProcess:
    """A running ``rpyc-ipy serve``; :meth:`start` returns once it printed its address."""

    def __init__(self, args: Sequence[str]) -> None:
        self.args = list(args)
        self.proc = subprocess.Popen(
            cli(*self.args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
        )
        self._stdout: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        self._stderr_changed = threading.Condition()
        self._threads = [
            threading.Thread(target=self._pump_stdout, daemon=True),
            threading.Thread(target=self._pump_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self.name = self.host = self.auth = ""
        self.port = 0

    def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._stdout.put(line.rstrip("\n"))
        self._stdout.put(None)

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._stderr_changed:
                self._stderr.append(line)
                self._stderr_changed.notify_all()
        with self._stderr_changed:
            self._stderr_changed.notify_all()

    def start(self, timeout: float = WAIT) -> ServerProcess:
        """Wait for the "serving" line and parse it; fail with stderr if it never comes."""
        def serving_line() -> re.Match[str] | None:
            try:
                line = self._stdout.get(timeout=0.2)
            except queue.Empty:
                return None
            if line is None:
                self.proc.wait(timeout=WAIT)
                pytest.fail(f"server exited ({self.proc.returncode}) before serving; "
                            f"stderr:\n{self.stderr}")
            return SERVING.match(line)

        match = wait_until(serving_line, timeout, step=0.0)
        if match is None:
            pytest.fail(f"no 'serving' line within {timeout} s; stderr:\n{self.stderr}")
        self.name, self.host, port, self.auth = match.groups()
        self.port = int(port)
        return self

    @property
    def stderr(self) -> str:
        with self._stderr_changed:
            return "".join(self._stderr)

    def wait_for_stderr(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        """Block until ``pattern`` (a regex) appears on stderr; fail after ``timeout``."""
        regex = re.compile(pattern)

        def appeared() -> re.Match[str] | None:
            with self._stderr_changed:
                if not regex.search("".join(self._stderr)):
                    self._stderr_changed.wait(0.2)  # woken by the next line
                return regex.search("".join(self._stderr))

        match = wait_until(appeared, timeout, step=0.0)
        if match is None:
            pytest.fail(f"{pattern!r} not on stderr within {timeout} s:\n{self.stderr}")
        return match

    def stop(self, sig: int = signal.SIGINT, timeout: float = WAIT) -> int:
        """Send ``sig`` and return the exit status (fails if it does not exit in time)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            status = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"server did not exit within {timeout} s of signal {sig}")
        for thread in self._threads:
            thread.join(WAIT)
        return status

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:  # pragma: no cover - the kernel is stuck
                pass
        for thread in self._threads:  # the pipes reach EOF once the process is gone
            thread.join(WAIT)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


@pytest.fixture
def serve_cli() -> Iterator[Callable[..., ServerProcess]]:
    """``serve_cli(args)`` starts ``rpyc-ipy serve ARGS`` (waits for its address);
    every process started is killed at the end of the test, whatever happened."""
    started: list[ServerProcess] = []

    def start(args: Sequence[str], timeout: float = WAIT) -> ServerProcess:
        server = ServerProcess(["serve", *args])
        started.append(server)
        return server.start(timeout)

    try:
        yield start
    finally:
        for server in started:
            server.kill()
