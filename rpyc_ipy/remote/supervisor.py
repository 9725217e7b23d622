"""Starting, signalling and burying session workers, from the server process.

A :class:`WorkerProcess` is one running ``python -m rpyc_ipy.remote.worker``, its
RPyC connection over a socketpair, and the watcher that notices its end::

    spec = WorkerSpec(user="alice", session="lab")
    worker = WorkerProcess.spawn(spec, on_exit=lambda w: print(w.exit_cause))
    worker.root.execute("print(1)")     # the worker's engine, as a netref
    worker.interrupt()                  # SIGINT to the worker's process group
    worker.terminate()                  # SIGTERM, then SIGKILL after a grace period

Workers are started from one long-lived thread (:class:`Spawner`): Linux ties
``PR_SET_PDEATHSIG`` to the thread that created the process, and a worker must die
with the server, not with whichever request thread asked for it.

A worker leads a process group of its own, so signals reach the subprocesses its
cells start too. Its environment is an allow-list (the server's secrets stay in the
server); with :class:`RunAs` it runs under another OS account, with that account's
groups, home directory and umask 077.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import IO, Any

from rpyc_ipy.core.async_result import AsyncResult
from rpyc_ipy.core.connection import Connection
from rpyc_ipy.core.service import VoidService
from rpyc_ipy.errors import ConnectionClosed, RPyCError, WorkerError
from rpyc_ipy.protocol import consts
from rpyc_ipy.transports.sockets import SocketTransport

__all__ = ["RunAs", "Spawner", "WorkerProcess", "WorkerSpec", "describe_exit"]

#: environment variables a worker inherits from the server (names, and prefixes ending in _)
ENV_ALLOWED = ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
               "HOME", "USER", "LOGNAME", "SHELL", "LC_", "CUDA_", "NVIDIA_", "OMP_", "MKL_",
               "OPENBLAS_", "HF_", "XDG_")
#: how much of a worker's own stdout/stderr (outside cells) is kept for its death report
STDERR_TAIL = 8 << 10
#: the socketpair's buffers each way (the kernel caps them at net.core.[wr]mem_max)
SOCKET_BUFFER = 4 << 20
#: how long a new worker may take to answer its first request
START_TIMEOUT = 60.0

_SIGNAL_HINTS = {
    signal.SIGKILL: "killed (out of memory, a resource limit, or killed from outside)",
    signal.SIGSEGV: "crashed with a segmentation fault in native code",
    signal.SIGABRT: "aborted (a fatal error in native code)",
    signal.SIGBUS: "crashed with a bus error in native code",
    signal.SIGFPE: "crashed with a floating point exception in native code",
    signal.SIGTERM: "terminated",
    signal.SIGXCPU: "stopped: it used up its CPU time limit",
}


@dataclass(frozen=True)
class RunAs:
    """The OS account a worker runs as (the server must be root to use one)."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    name: str

    @classmethod
    def for_account(cls, name: str) -> RunAs:
        """The account ``name`` from the password database, with its groups."""
        import pwd

        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise WorkerError(f"there is no OS account {name!r} to run workers as") from None
        groups = tuple(os.getgrouplist(name, entry.pw_gid))
        return cls(entry.pw_uid, entry.pw_gid, groups, entry.pw_dir, name)


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker is started with; :meth:`settings` is what it receives."""

    user: str
    session: str
    allow_pickle: bool = False
    capture_fd: bool = True
    max_buffered_output: int = 4 << 20
    limits: Mapping[str, int] = field(default_factory=dict)
    run_as: RunAs | None = None
    python: str = sys.executable
    #: ``"ipython"`` or ``"python"`` for the cells; ``None``: IPython where importable
    shell: str | None = None
    #: folders the session's file transfers may use; empty: the worker's working
    #: directory and its account's home
    file_roots: tuple[str, ...] = ()

    def settings(self) -> str:
        settings = {"user": self.user, "session": self.session,
                    "allow_pickle": self.allow_pickle, "capture_fd": self.capture_fd,
                    "max_buffered_output": self.max_buffered_output,
                    "limits": dict(self.limits)}
        if self.shell is not None:
            settings["shell"] = self.shell
        if self.file_roots:
            settings["file_roots"] = list(self.file_roots)
        return json.dumps(settings)

    def environment(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items()
               if key in ENV_ALLOWED or any(key.startswith(p) for p in ENV_ALLOWED
                                            if p.endswith("_"))}
        if self.run_as is not None:
            env.update(HOME=self.run_as.home, USER=self.run_as.name, LOGNAME=self.run_as.name)
        env["PYTHONUNBUFFERED"] = "1"
        return env


def _socketpair() -> tuple[socket.socket, socket.socket]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    for end in (ours, theirs):  # large values cross in fewer, larger writes
        end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
    return ours, theirs


def describe_exit(returncode: int) -> str:
    """One line for how a worker ended, from its exit status."""
    if returncode < 0:
        try:
            sig = signal.Signals(-returncode)
        except ValueError:
            return f"killed by signal {-returncode}"
        hint = _SIGNAL_HINTS.get(sig, "killed")
        return f"{hint} ({sig.name})"
    if returncode == 0:
        return "exited"
    return f"exited with status {returncode}"


class Spawner:
    """One long-lived thread that starts every worker (see the module docstring)."""

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = \
            queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="rpyc_ipy-spawner", daemon=True)
        self._thread.start()

    def call(self, make: Callable[[], Any]) -> Any:
        """Run ``make`` on the spawner thread and return what it returned."""
        done: Future[Any] = Future()
        self._requests.put((make, done))
        return done.result()

    def _run(self) -> None:
        while True:
            make, done = self._requests.get()
            try:
                done.set_result(make())
            except BaseException as exc:
                done.set_exception(exc)


_default_spawner: Spawner | None = None
_spawner_lock = threading.Lock()


def default_spawner() -> Spawner:
    global _default_spawner
    with _spawner_lock:
        if _default_spawner is None:
            _default_spawner = Spawner()
        return _default_spawner


class WorkerProcess:
    """A running worker; see the module docstring. Make one with :meth:`spawn`."""

    def __init__(self, spec: WorkerSpec, process: subprocess.Popen[bytes], conn: Connection,
                 channels: socket.socket, on_exit: Callable[[WorkerProcess], Any] | None
                 ) -> None:
        self.spec = spec
        self.process = process
        self.pid = process.pid
        self.conn = conn
        self._channels = channels
        self._channels_lock = threading.Lock()
        self.exited = threading.Event()
        #: the worker's engine service, as a netref
        self.root: Any = None
        self.exit_cause: str | None = None
        self._on_exit = on_exit
        self._tail: collections.deque[bytes] = collections.deque()
        self._tail_size = 0
        self._terminating = False
        assert process.stdout is not None
        threading.Thread(target=self._read_output, args=(process.stdout,),
                         name=f"rpyc_ipy-worker-{self.pid}-output", daemon=True).start()
        threading.Thread(target=self._watch, name=f"rpyc_ipy-worker-{self.pid}-watch",
                         daemon=True).start()

    @classmethod
    def spawn(cls, spec: WorkerSpec, *, on_exit: Callable[[WorkerProcess], Any] | None = None,
              spawner: Spawner | None = None) -> WorkerProcess:
        """Start a worker and wait (bounded) until it answers."""
        ours, theirs = _socketpair()
        # the channel socket carries the sockets of relayed clients (open_channel)
        channels, their_channels = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            process = (spawner or default_spawner()).call(
                lambda: cls._popen(spec, theirs, their_channels))
        except OSError as exc:
            ours.close()
            channels.close()
            if isinstance(exc, PermissionError) and spec.run_as is not None:
                raise WorkerError(
                    f"the account {spec.run_as.name!r} cannot run {spec.python} "
                    f"({exc.strerror}): install Python and rpyc_ipy where every account "
                    "can read them") from None
            raise WorkerError(f"cannot start a session worker: {exc}") from None
        finally:
            theirs.close()
            their_channels.close()
        # no timeout on requests: a cell may run for days; the first answer is bounded
        conn = Connection(VoidService, SocketTransport(ours),
                          {"sync_request_timeout": None, "allow_pickle": spec.allow_pickle})
        worker = cls(spec, process, conn, channels, on_exit)
        try:
            first = conn.async_request(consts.HANDLE_GETROOT)
            first.wait(START_TIMEOUT)
            worker.root = first.value
        except (RPyCError, OSError, TimeoutError) as exc:
            worker.terminate(grace=1.0)
            worker.exited.wait(5.0)
            cause = worker.exit_cause or f"{type(exc).__name__}: {exc}"
            raise WorkerError(f"the session worker did not start: {cause}{worker.last_words()}"
                              ) from None
        return worker

    @staticmethod
    def _popen(spec: WorkerSpec, sock: socket.socket, channels: socket.socket
               ) -> subprocess.Popen[bytes]:
        fd, channel_fd = sock.fileno(), channels.fileno()
        argv = [spec.python, "-m", "rpyc_ipy.remote.worker", "--fd", str(fd),
                "--channels", str(channel_fd), "--parent", str(os.getpid()),
                "--settings", spec.settings()]
        extra: dict[str, Any] = {}
        if spec.run_as is not None:
            home = spec.run_as.home
            extra = {"user": spec.run_as.uid, "group": spec.run_as.gid,
                     "extra_groups": list(spec.run_as.groups),
                     "cwd": home if os.path.isdir(home) else "/"}
        return subprocess.Popen(argv, pass_fds=(fd, channel_fd), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=spec.environment(), start_new_session=True, umask=0o077,
                                **extra)

    # -- talking to it ------------------------------------------------------------------

    def call(self, method: str, *args: Any) -> Any:
        """``root.method(*args)`` in one request (no separate attribute fetch)."""
        return self.conn.sync_request(consts.HANDLE_CALLATTR, self.root, method, args, ())

    def call_async(self, method: str, *args: Any) -> AsyncResult:
        """:meth:`call` without waiting for the reply."""
        return self.conn.async_request(consts.HANDLE_CALLATTR, self.root, method, args, ())

    def open_channel(self) -> socket.socket:
        """A new socket to the worker, served there as a connection of its own: the
        server relays a client's bytes over it (:mod:`rpyc_ipy.remote.relay`)."""
        ours, theirs = _socketpair()
        try:
            with self._channels_lock:
                socket.send_fds(self._channels, [b"c"], [theirs.fileno()])
        except OSError as exc:
            ours.close()
            raise WorkerError(f"the session worker does not take connections: {exc}") from None
        finally:
            theirs.close()
        return ours

    @property
    def alive(self) -> bool:
        return not self.exited.is_set()

    # -- signals ------------------------------------------------------------------------

    def interrupt(self) -> bool:
        """``SIGINT`` to the worker's process group; False if it is gone."""
        return self._signal_group(signal.SIGINT)

    def terminate(self, grace: float = 2.0) -> None:
        """``SIGTERM`` to the group, ``SIGKILL`` if it is still there after ``grace``;
        returns once the worker is gone (or the kill was sent)."""
        self._terminating = True
        self._signal_group(signal.SIGTERM)
        if not self.exited.wait(grace):
            self._signal_group(signal.SIGKILL)
            self.exited.wait(grace)
        # the group may outlive its leader (a cell's subprocess that ignored SIGTERM)
        self._signal_group(signal.SIGKILL)

    def _signal_group(self, sig: int) -> bool:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    # -- its end ------------------------------------------------------------------------

    def last_words(self) -> str:
        """The last line the worker printed outside a cell, if any, for a report."""
        text = b"".join(self._tail).decode("utf-8", "replace").strip()
        if not text:
            return ""
        return ": " + text.splitlines()[-1][:300]

    def _read_output(self, stream: IO[bytes]) -> None:
        with contextlib.suppress(OSError, ValueError):
            for chunk in iter(lambda: os.read(stream.fileno(), 4096), b""):
                self._tail.append(chunk)
                self._tail_size += len(chunk)
                while self._tail_size > STDERR_TAIL and len(self._tail) > 1:
                    self._tail_size -= len(self._tail.popleft())
        stream.close()

    def _watch(self) -> None:
        returncode = self.process.wait()
        self.exit_cause = describe_exit(returncode)
        with contextlib.suppress(ConnectionClosed, OSError):
            self.conn.close()
        with contextlib.suppress(OSError):
            self._channels.close()
        # the owner records why before anyone can see the worker gone (a re-attach in
        # between would otherwise find no worker and no cause)
        if self._on_exit is not None:
            self._on_exit(self)
        self.exited.set()

    @property
    def terminated_on_request(self) -> bool:
        """True if the worker ended because :meth:`terminate` was called."""
        return self._terminating
