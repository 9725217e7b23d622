"""The session worker: the process that runs one notebook session's cells.

The server's supervisor (:mod:`rpyc_ipy.remote.supervisor`) starts one per session::

    python -m rpyc_ipy.remote.worker --fd 3 --channels 4 --parent 1234 --settings '{}'

and speaks the RPyC protocol to it over the inherited socket ``--fd`` (one end of a
socketpair: there is no address anybody else could connect to). The worker serves
:class:`WorkerService`, the :class:`~rpyc_ipy.remote.engine.Engine` API, there. On
``--channels`` the supervisor passes more sockets, one per client whose bytes the
server relays (:mod:`rpyc_ipy.remote.relay`): each is served the same way, on the
same engine.

Cells run on the main thread, one at a time, so an interrupt is a real ``SIGINT``:
``time.sleep``, blocking reads and signal-aware C code stop with
``KeyboardInterrupt``. The other threads (the connection's) block ``SIGINT``, so a
signal the supervisor sends to the process lands on the main thread too. A ``SIGINT``
while a cell is on its way to the main thread stops it as it starts; one between cells,
with none waiting, is ignored. Background jobs run on threads of their own.

Cells run through IPython (:mod:`rpyc_ipy.remote.ipyshell`: ``!cmd``, ``%magics``)
when it is importable here, as plain Python otherwise; the setting ``shell``
chooses: ``"ipython"`` (required), ``"python"`` (never).

The worker ends when the supervisor's end of the socket closes, and dies with the
server process (``PR_SET_PDEATHSIG`` where Linux offers it).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import queue
import resource
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

from rpyc_ipy.core.connection import Connection
from rpyc_ipy.core.service import Service
from rpyc_ipy.remote.cells import CellShell
from rpyc_ipy.remote.engine import ENGINE_API, Engine
from rpyc_ipy.remote.files import default_roots
from rpyc_ipy.transports.sockets import SocketTransport

__all__ = ["MainThreadRunner", "WorkerService", "main", "start_shell"]

#: what the supervisor may set (``--settings``), with the type each takes
SETTINGS: dict[str, type] = {
    "allow_pickle": bool,
    "capture_fd": bool,
    "max_buffered_output": int,
    "user": str,
    "session": str,
    "limits": dict,
    "shell": str,
    "file_roots": list,
}
#: the values of the ``shell`` setting (without it: IPython where importable)
SHELLS = ("ipython", "python")

_PR_SET_PDEATHSIG = 1


class MainThreadRunner:
    """Runs submitted cells on the main thread, in order (see the module docstring)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.main_ident = threading.main_thread().ident

    def submit(self, run: Callable[[], None]) -> None:
        self._queue.put(run)

    def signal_thread(self, ident: int) -> bool:
        signal.pthread_kill(ident, signal.SIGINT)
        return True

    def stop(self) -> None:
        self._queue.put(None)

    def run_until_stopped(self) -> None:
        """The main thread's loop; returns after :meth:`stop`."""
        while True:
            try:
                run = self._queue.get()
                if run is None:
                    return
                run()
            except KeyboardInterrupt:
                continue  # landed between cells (the engine handles those inside one)


class WorkerService(Service):
    """The engine, for the supervisor and the relayed clients: an ``exposed_`` method
    for every name in :data:`~rpyc_ipy.remote.engine.ENGINE_API`, so a client's netref
    calls each in one request."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine


def _delegate(name: str, method: str) -> Callable[..., Any]:
    def call(self: WorkerService, *args: Any) -> Any:
        return getattr(self.engine, method)(*args)

    call.__name__ = call.__qualname__ = f"exposed_{name}"
    call.__doc__ = getattr(Engine, method).__doc__
    return call


for _name, _method in ENGINE_API.items():
    setattr(WorkerService, f"exposed_{_name}", _delegate(_name, _method))


def parse_settings(text: str) -> dict[str, Any]:
    """The ``--settings`` JSON, checked against :data:`SETTINGS`."""
    settings = json.loads(text)
    if not isinstance(settings, dict):
        raise ValueError("--settings must be a JSON object")
    for key, value in settings.items():
        kind = SETTINGS.get(key)
        if kind is None:
            raise ValueError(f"unknown worker setting {key!r}")
        if type(value) is not kind:
            raise ValueError(f"worker setting {key!r} must be a {kind.__name__}")
    if settings.get("shell", SHELLS[0]) not in SHELLS:
        raise ValueError(f"worker setting 'shell' must be one of {', '.join(SHELLS)}")
    return settings


def start_shell(choice: str | None, namespace: dict[str, Any]) -> CellShell | None:
    """IPython on ``namespace`` for the cells, or ``None`` for plain Python: ``choice``
    is a :data:`SHELLS` value, or ``None`` for IPython if it can be imported."""
    if choice == "python":
        return None
    try:
        from rpyc_ipy.remote.ipyshell import IPythonCells
    except ImportError as exc:
        if choice == "ipython" or (exc.name or "").startswith("rpyc_ipy"):
            raise
        return None
    return IPythonCells.start(namespace)


def apply_limits(limits: dict[str, Any]) -> None:
    """Lower this process's resource limits: ``{"RLIMIT_NOFILE": n, ...}`` (soft and hard)."""
    for name, value in limits.items():
        which = getattr(resource, name, None) if name.startswith("RLIMIT_") else None
        if not isinstance(which, int) or type(value) is not int or value < 0:
            raise ValueError(f"unknown or invalid resource limit {name}={value!r}")
        resource.setrlimit(which, (value, value))


def die_with_parent(parent: int) -> None:
    """Be killed when the server process ends; exit now if it already has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the line above ran
        os._exit(1)


def take_channels(channels: socket.socket, engine: Engine, config: dict[str, Any]) -> None:
    """Serve every socket the supervisor passes (a relayed client) as a connection of its
    own, on the same engine; returns when the supervisor closes the channel socket."""
    while True:
        try:
            _, fds, _, _ = socket.recv_fds(channels, 16, 4)
        except OSError:
            return
        if not fds:
            return  # the supervisor closed its end
        for fd in fds:
            conn = Connection(WorkerService(engine), SocketTransport(socket.socket(fileno=fd)),
                              config)
            threading.Thread(target=conn.serve_all, name="rpyc_ipy-worker-client",
                             daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rpyc_ipy.remote.worker",
                                     description="A notebook session's worker (started by "
                                                 "rpyc-ipy serve --notebook, not by hand).")
    parser.add_argument("--fd", type=int, required=True, help="the supervisor's socket")
    parser.add_argument("--channels", type=int, required=True,
                        help="a socket on which the supervisor passes relayed clients' sockets")
    parser.add_argument("--parent", type=int, required=True, help="the server's pid")
    parser.add_argument("--settings", default="{}", help="JSON, see SETTINGS")
    args = parser.parse_args(argv)
    settings = parse_settings(args.settings)
    apply_limits(settings.get("limits", {}))
    die_with_parent(args.parent)

    # every thread made from here on inherits the blocked SIGINT, except the main
    # thread's own cells (see the module docstring)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    runner = MainThreadRunner()
    namespace: dict[str, Any] = {}
    engine = Engine(namespace, capture_fd=settings.get("capture_fd", True),
                    allow_pickle=settings.get("allow_pickle", False),
                    info={"service": "rpyc_ipy.remote.ExecutionService",
                          "user": settings.get("user"), "session": settings.get("session")},
                    cell_runner=runner,
                    max_buffered_output=settings.get("max_buffered_output", 4 << 20),
                    shell=start_shell(settings.get("shell"), namespace),
                    file_roots=settings.get("file_roots") or default_roots())
    sock = socket.socket(fileno=args.fd)
    config = {"allow_public_attrs": True, "allow_setattr": True, "allow_delattr": True,
              "allow_pickle": settings.get("allow_pickle", False)}
    conn = Connection(WorkerService(engine), SocketTransport(sock), config)

    def serve() -> None:
        try:
            conn.serve_all()
        finally:
            runner.stop()

    threading.Thread(target=serve, name="rpyc_ipy-worker-serve", daemon=True).start()
    channels = socket.socket(fileno=args.channels)
    threading.Thread(target=take_channels, args=(channels, engine, config),
                     name="rpyc_ipy-worker-channels", daemon=True).start()

    def on_sigint(signum: int, frame: Any) -> None:
        if engine.in_user_code_on(runner.main_ident):
            raise KeyboardInterrupt
        # not in a cell's code: the cell about to start stops (a SIGINT between cells,
        # with none waiting, stops nothing)
        engine.interrupt_before_user_code()

    signal.signal(signal.SIGINT, on_sigint)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    runner.run_until_stopped()
    engine.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # daemon threads may sit in user code: do not wait for them
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
