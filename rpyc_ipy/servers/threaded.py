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

__all__ = ["OneShotServer", "ThreadPoolServer", "ThreadedServer"]


class ThreadedServer(Server):
    """Serves every client at once, none waiting for another.

    Each client gets a thread for its handshake; after that, plain and TLS
    clients are read from one shared event loop whose leader runs quick
    requests itself and hands leadership on when a request runs long (see
    :mod:`rpyc_ipy.servers.loop`), so an idle client holds no thread; TLS-SRP
    clients keep their thread. Either way a client's requests run on that
    connection's bounded pool.
    """

    multiplex_clients = True

    def _dispatch(self, sock: socket.socket, address: Any, slot: Slot) -> None:
        threading.Thread(target=self._handle_client, args=(sock, address, slot),
                         name=f"rpyc_ipy-client-{address}", daemon=True).start()


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
