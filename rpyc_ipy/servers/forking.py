"""A server that serves each client in a child process of its own (POSIX only).

The child is forked right after ``accept``: it authenticates and serves that one
client, then exits; nothing it does touches the parent's memory. Children end
when their client disconnects (closing the server stops accepting, it does not
cut off served clients). At most ``max_connections`` children live at once.
A client's pending slot (``max_pending_connections``, ``max_pending_per_address``)
is given back when its child is forked: the parent cannot see when the child's
client logs in, and a logged-in client must not hold a slot.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from rpyc_ipy.errors import UsageError
from rpyc_ipy.servers.base import Server
from rpyc_ipy.servers.pending import Slot

__all__ = ["ForkingServer"]


class ForkingServer(Server):
    """Forks a child per client; see the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if not hasattr(os, "fork"):
            raise UsageError("ForkingServer needs os.fork (POSIX); use ThreadedServer")
        super().__init__(*args, **kwargs)
        self.children: set[int] = set()

    def _dispatch(self, sock: socket.socket, address: Any, slot: Slot) -> None:
        self._reap()
        if len(self.children) >= self.max_connections:
            self.logger.warning("refusing %s: %d children already", address, len(self.children))
            sock.close()
            pid = -1
        else:
            pid = os.fork()
        if pid == 0:
            self._serve_in_child(sock, address, slot)
        slot.release()
        with self._clients_lock:
            self._handshakes -= 1  # the child authenticates, not us
        if pid > 0:
            sock.close()
            self.children.add(pid)

    def _serve_in_child(self, sock: socket.socket, address: Any, slot: Slot) -> None:
        status = 1
        try:
            self.listener.close()
            self._handle_client(sock, address, slot)
            status = 0
        finally:
            os._exit(status)  # never return into the parent's accept loop

    def _reap(self) -> None:
        """Collect the children that have exited (they would stay zombies)."""
        for pid in list(self.children):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self.children.discard(pid)

    def close(self) -> None:
        super().close()
        self._reap()
