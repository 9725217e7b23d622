"""Server strategies: where each client's connection runs.

* :class:`ThreadedServer`: every client served at once; plain and TLS clients
  are read from one event loop (:mod:`rpyc_ipy.servers.loop`), TLS-SRP clients
  by a thread each (requests of one client still run on that connection's
  bounded pool).
* :class:`ThreadPoolServer`: at most ``nbThreads`` clients served at once;
  later clients wait in line (their authentication still has its deadline).
* :class:`OneShotServer`: serves exactly one client, then closes.
"""

from __future__ import annotations

import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rpyc_ipy.errors import UsageError
from rpyc_ipy.servers.base import Server
from rpyc_ipy.servers.pending import Slot
from rpyc_ipy.servers.workers import WorkerPool, check_processes, receive_socket

__all__ = ["OneShotServer", "ThreadPoolServer", "ThreadedServer"]


class ThreadedServer(Server):
    """Serves every client at once, none waiting for another.

    Each client gets a thread for its handshake; after that, plain and TLS
    clients are read from one shared event loop whose leader runs quick
    requests itself and hands leadership on when a request runs long (see
    :mod:`rpyc_ipy.servers.loop`), so an idle client holds no thread; TLS-SRP
    clients keep their thread. Either way a client's requests run on that
    connection's bounded pool.

    ``processes=N`` (opt-in, POSIX) serves from N forked worker processes: this
    process accepts and hands each client to a worker in turn, which serves it
    for its whole life (:mod:`rpyc_ipy.servers.workers`). The service's state is
    then per worker (two clients may see different instances of a module-level
    counter), ``clients`` stays empty here, and ``max_connections`` and the
    pending limits apply in each worker. The workers are forked by ``start()``
    (or ``start_in_background()``) and stop with ``close()`` or Ctrl-C.
    """

    multiplex_clients = True

    def __init__(self, *args: Any, processes: int = 1, **kwargs: Any) -> None:
        self.processes = check_processes(processes)
        if self.processes > 1 and kwargs.get("channel_handler") is not None:
            raise UsageError("ThreadedServer(processes=...) cannot take a channel_handler: a "
                             "data channel must reach the process of its session; use processes=1")
        super().__init__(*args, **kwargs)
        self._workers: WorkerPool | None = None
        if self.processes > 1 and self._loop is not None:
            self._loop.close()  # the workers read their clients, each with a loop of its own
            self._loop = None

    @property
    def worker_pids(self) -> list[int]:
        """The process ids of the workers (empty with ``processes=1`` or before ``start``)."""
        return [] if self._workers is None else self._workers.pids

    def _starting(self) -> None:
        if self.processes > 1:
            self._workers = WorkerPool(self.processes, self._serve_as_worker)

    def _dispatch(self, sock: socket.socket, address: Any, slot: Slot) -> None:
        workers = self._workers
        if workers is None:
            threading.Thread(target=self._handle_client, args=(sock, address, slot),
                             name=f"rpyc_ipy-client-{address}", daemon=True).start()
            return
        try:  # the worker takes its own pending slot: ours is given back at once
            if not workers.hand_over(sock):
                self.logger.error("refusing %s: no worker process is left", address)
        finally:
            sock.close()
            slot.release()
            with self._clients_lock:
                self._handshakes -= 1

    def _serve_as_worker(self, channel: socket.socket) -> None:
        """A worker's life: serve the clients handed over on ``channel`` until it ends."""
        self._workers = None
        self.registration = None  # the server registers its port, once
        self.listener.close()
        self._loop = self._new_loop()
        while (sock := receive_socket(channel)) is not None:
            try:
                address: Any = sock.getpeername()
            except OSError:  # gone already
                sock.close()
                continue
            self._admit(sock, address or "local")
        self.close()

    def close(self) -> None:
        super().close()
        workers = self._workers
        if workers is not None:
            workers.stop()


class ThreadPoolServer(Server):
    """Serves at most ``nbThreads`` clients at once on a fixed pool.

    rpyc's ``requestBatchSize`` is refused: here a client holds its pool thread for
    its whole session, so there are no batches of requests to size.
    """

    def __init__(self, *args: Any, nbThreads: int = 20, **kwargs: Any) -> None:
        if "requestBatchSize" in kwargs:
            raise UsageError(
                "ThreadPoolServer(requestBatchSize=...) is not supported: each client keeps "
                "one pool thread for its whole session; remove the argument")
        if not isinstance(nbThreads, int) or isinstance(nbThreads, bool) or nbThreads < 1:
            raise UsageError(f"ThreadPoolServer(nbThreads={nbThreads!r}): give a whole number >= 1")
        super().__init__(*args, **kwargs)
        self._pool = ThreadPoolExecutor(max_workers=nbThreads, thread_name_prefix="rpyc_ipy-pool")

    def _dispatch(self, sock: socket.socket, address: Any, slot: Slot) -> None:
        self._pool.submit(self._handle_client, sock, address, slot)

    def close(self) -> None:
        super().close()
        self._pool.shutdown(wait=False, cancel_futures=True)


class OneShotServer(Server):
    """Serves one client, then stops accepting and closes."""

    def _dispatch(self, sock: socket.socket, address: Any, slot: Slot) -> None:
        self._active = False
        try:
            self.listener.close()
        except OSError:
            pass
        try:  # in the accepting thread, as rpyc does: start() returns when the client leaves
            self._handle_client(sock, address, slot)
        finally:
            self.close()
