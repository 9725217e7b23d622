"""Helpers for the kernel and notebook tests: real servers and real kernels on 127.0.0.1.

* :class:`NotebookServer`: ``rpyc-ipy serve --notebook --srp-db FILE --port P`` as a
  subprocess (its own session, so a kernel interrupt never reaches it), its port parsed
  from the "serving" line; it can be stopped and started again on the same port;
* :class:`TcpRelay`: a TCP relay in front of a server port that can drop every
  connection through it on demand (a real network drop, under the test's control);
* :class:`KernelRig`: a remote-kernel kernelspec installed into a temporary prefix and
  started with jupyter_client's ``KernelManager``; :meth:`KernelRig.run` executes one
  cell and collects its IOPub messages, with a timeout on every wait (all of them
  ``waitkit.wait_until``).

(A uniquely named module, not conftest, so tests can import from it.)
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from waitkit import wait_until

WAIT = 30.0  # upper bound for any single wait
REPO = Path(__file__).resolve().parents[2]
USER = "alice"
PASSWORD = "correct horse battery"
PASSWORD_ENV = "RPYC_IPY_TEST_KERNEL_PASSWORD"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SERVING = re.compile(r"rpyc-ipy: serving \S+ on 127\.0\.0\.1:(\d+) \(auth: (\w+)\)")


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for subprocesses: this checkout first on ``sys.path``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("NO_COLOR", None)
    env.update(extra or {})
    return env


def plain(text: str) -> str:
    """``text`` without terminal colours."""
    return ANSI.sub("", text)


def make_userdb(path: Path, users: dict[str, str] | None = None) -> Path:
    """An SRP user database with ``users`` (default: alice / PASSWORD)."""
    from rpyc_ipy.auth import UserDB

    db = UserDB.create(path, exist_ok=True)
    for name, password in (users or {USER: PASSWORD}).items():
        db.add(name, password)
    return path


class NotebookServer:
    """``rpyc-ipy serve --notebook --srp-db DB`` on 127.0.0.1; see the module docstring."""

    def __init__(self, directory: Path, port: int = 0,
                 tls: tuple[Path, Path, Path] | None = None) -> None:
        """SRP with alice/PASSWORD, or with ``tls=(cert, key, client_ca)`` mutual TLS."""
        self.dir = directory
        self.tls = tls
        if tls is None:
            db = directory / "users.json"
            self.auth_args = ["--srp-db", str(db if db.exists() else make_userdb(db))]
        else:
            cert, key, ca = tls
            self.auth_args = ["--cert", str(cert), "--key", str(key), "--ca", str(ca)]
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = WAIT) -> NotebookServer:
        self.starts += 1
        log = self.dir / f"server-{self.starts}.log"
        with open(log, "wb") as out:
            proc = self.proc = subprocess.Popen(
                [sys.executable, "-m", "rpyc_ipy", "serve", "--notebook", *self.auth_args,
                 "--host", "127.0.0.1", "--port", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=child_env(), start_new_session=True)

        def serving_or_exited() -> re.Match[str] | bool:
            return SERVING.search(log.read_text(errors="replace")) or proc.poll() is not None

        found = wait_until(serving_or_exited, timeout, step=0.05)
        if not isinstance(found, re.Match):
            text = log.read_text(errors="replace")
            self.stop()
            pytest.fail(f"the server did not start:\n{text}")
        self.port = int(found.group(1))
        assert found.group(2) == ("srp" if self.tls is None else "tls")
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def restart(self, timeout: float = WAIT) -> NotebookServer:
        """Stop, then serve again on the same port (a server restart)."""
        self.stop()
        failures: list[BaseException] = []

        def started() -> bool:
            try:
                self.start(timeout)
            except pytest.fail.Exception as exc:  # the port may linger briefly
                failures.append(exc)
                return False
            return True

        if not wait_until(started, timeout, step=0.2):
            raise failures[-1]
        return self


class TcpRelay:
    """Forwards every connection to 127.0.0.1:``port`` through its own listening port;
    :meth:`drop` cuts all the connections open now (both ends see them end), and new
    ones are relayed as before."""

    def __init__(self, port: int) -> None:
        self.target = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self.accepted = 0
        self.dropped = 0
        threading.Thread(target=self._accept, name="relay-accept", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=WAIT)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self.accepted += 1
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), name="relay-pump",
                                 daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):  # one side ended: end the other too
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def drop(self) -> int:
        """Cut every connection open now; returns how many pairs that was."""
        with self._lock:
            socks, self._open = self._open, []
            self.dropped += len(socks) // 2
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        return len(socks) // 2

    def close(self) -> None:
        self._listener.close()
        self.drop()


# -- kernels -----------------------------------------------------------------------------------


@dataclass
class Cell:
    """What one execute request produced: its reply and, in order, its IOPub messages
    as (msg_type, content)."""

    reply: dict[str, Any]
    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def status(self) -> str:
        return str(self.reply["status"])

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [content for msg_type, content in self.messages if msg_type == kind]

    def stream(self, name: str = "stdout") -> str:
        return "".join(c["text"] for c in self.of("stream") if c["name"] == name)

    @property
    def result(self) -> dict[str, Any] | None:
        results = self.of("execute_result")
        return results[0]["data"] if results else None

    @property
    def text(self) -> str:
        """Every output as text: streams, text/plain, tracebacks."""
        parts: list[str] = []
        for kind, content in self.messages:
            if kind == "stream":
                parts.append(content["text"])
            elif kind in ("execute_result", "display_data"):
                parts.append(str(content["data"].get("text/plain", "")))
            elif kind == "error":
                parts.append("\n".join(content["traceback"]))
        return plain("".join(parts))


class KernelRig:
    """A remote kernel started from a kernelspec in a temporary prefix."""

    def __init__(self, prefix: Path, name: str = "rpyc-test",
                 kernel_dirs: Sequence[Path] | None = None) -> None:
        """``kernel_dirs``: where to find the kernelspec (default: the prefix's)."""
        self.prefix = prefix
        self.name = name
        self.kernel_dirs = list(kernel_dirs) if kernel_dirs is not None else None
        self.km: Any = None
        self.kc: Any = None

    def install(self, **settings: Any) -> Path:
        from rpyc_ipy.kernel.install import install_kernel_spec

        return Path(install_kernel_spec(self.name, prefix=str(self.prefix), **settings))

    @property
    def kernel_dir(self) -> Path:
        return self.prefix / "share" / "jupyter" / "kernels"

    def start(self, env: dict[str, str] | None = None, timeout: float = WAIT) -> KernelRig:
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import KernelManager

        self.prefix.mkdir(parents=True, exist_ok=True)
        dirs = self.kernel_dirs if self.kernel_dirs is not None else [self.kernel_dir]
        ksm = KernelSpecManager(kernel_dirs=[str(d) for d in dirs])
        self.km = KernelManager(kernel_name=self.name, kernel_spec_manager=ksm)
        self.log = open(self.prefix / f"{self.name}-kernel.log", "wb")
        self.km.start_kernel(env=child_env(env), stderr=self.log)
        self.kc = self.km.client()
        self.kc.start_channels()
        try:
            self.kc.wait_for_ready(timeout=timeout)
        except RuntimeError:
            self.shutdown()
            raise
        return self

    def kernel_log(self) -> str:
        self.log.flush()
        return (self.prefix / f"{self.name}-kernel.log").read_text(errors="replace")

    def run(self, code: str, timeout: float = WAIT, allow_stdin: bool = False,
            during: Callable[[Cell], bool] | None = None, stop_on_error: bool = False,
            on_stdin: Callable[[dict[str, Any]], None] | None = None) -> Cell:
        """Execute ``code``; return its reply and IOPub messages.

        ``during(cell)`` is called with the messages so far while the cell runs; it
        returns True once it has done its job (e.g. interrupted the kernel when the
        cell's first output arrived). ``on_stdin`` answers input requests.
        """
        kc = self.kc
        msg_id = kc.execute(code, allow_stdin=allow_stdin, stop_on_error=stop_on_error)
        cell = Cell(reply={})
        acted = during is None

        def idle() -> bool:  # reads at most one IOPub message, waiting 0.05 s for it
            nonlocal acted
            if not acted and during is not None:
                acted = during(cell)
            if on_stdin is not None and kc.stdin_channel.msg_ready():
                on_stdin(kc.get_stdin_msg(timeout=1))
            try:
                msg = kc.get_iopub_msg(timeout=0.05)
            except queue.Empty:
                return False
            if msg["parent_header"].get("msg_id") != msg_id:
                return False
            kind = msg["msg_type"]
            if kind == "status" and msg["content"]["execution_state"] == "idle":
                return True
            if kind not in ("status", "execute_input"):
                cell.messages.append((kind, msg["content"]))
            return False

        if not wait_until(idle, timeout, step=0.0):
            raise TimeoutError(f"the cell did not finish within {timeout} s; got "
                               f"{[kind for kind, _ in cell.messages]}\n{self.kernel_log()}")
        cell.reply = self.shell_reply(msg_id, timeout)
        return cell

    def shell_reply(self, msg_id: str, timeout: float = WAIT) -> dict[str, Any]:
        """The content of the shell reply to ``msg_id`` (replies to others are skipped)."""

        def reply_to_it() -> dict[str, Any] | None:
            try:
                reply = self.kc.get_shell_msg(timeout=0.2)
            except queue.Empty:
                return None
            if reply["parent_header"].get("msg_id") != msg_id:
                return None
            return dict(reply["content"])

        content = wait_until(reply_to_it, timeout, step=0.0, what=f"the reply to {msg_id}")
        assert content is not None
        return content

    def request(self, method: str, *args: Any, timeout: float = WAIT) -> dict[str, Any]:
        """A shell request (``complete``, ``inspect``, ``kernel_info``...) and its reply."""
        return self.shell_reply(getattr(self.kc, method)(*args), timeout)

    def shutdown(self) -> None:
        if self.kc is not None:
            self.kc.stop_channels()
            self.kc = None
        if self.km is not None:
            try:
                self.km.shutdown_kernel(now=False)
            except Exception:
                self.km.shutdown_kernel(now=True)
            self.km = None
        if getattr(self, "log", None) is not None:
            self.log.close()


def settings_for(server: NotebookServer, **extra: Any) -> dict[str, Any]:
    """install_kernel_spec settings for ``server`` with SRP and the password env var."""
    settings: dict[str, Any] = {"host": "127.0.0.1", "port": server.port, "srp_user": USER,
                                "password_env": PASSWORD_ENV}
    settings.update(extra)
    return settings


def start_kernel(prefix: Path, server: NotebookServer, name: str = "rpyc-test",
                 env: dict[str, str] | None = None, **extra: Any) -> KernelRig:
    rig = KernelRig(prefix, name)
    rig.install(**settings_for(server, **extra))
    return rig.start({PASSWORD_ENV: PASSWORD, **(env or {})})


def python_argv(*args: str) -> Sequence[str]:
    return [sys.executable, *args]


def parent_of(pid: int) -> int:
    """The parent of a process on this machine: for a session's worker, its server."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def process_gone(pid: int) -> bool:
    """True once process ``pid`` has ended (a zombie counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def worker_of(result: dict[str, str] | None, server_pid: int) -> bool:
    """True if a cell's ``os.getpid()`` result is a worker process of that server."""
    return result is not None and parent_of(int(result["text/plain"])) == server_pid
