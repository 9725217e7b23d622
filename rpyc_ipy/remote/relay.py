"""A client's bytes relayed to its session's worker, undecoded, both ways.

The server decrypts and authenticates; the worker speaks the RPyC protocol with the
client directly, so a call costs no decoding in the server and a large value streams
through without being rebuilt there. A client opens such a *data channel* beside its
control connection (:mod:`rpyc_ipy.servers.channels`), and
:meth:`~rpyc_ipy.remote.service.ExecutionService.channel_handler` starts a
:class:`Relay` between it and a fresh socket of the session's worker.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from rpyc_ipy.core.transport import Transport
from rpyc_ipy.errors import ConnectionClosed

__all__ = ["Relay"]

log = logging.getLogger("rpyc_ipy.remote")

_CHUNK = 1 << 20


class Relay:
    """Copies bytes between ``client`` and ``worker`` until either side closes; then
    closes both and calls ``on_close``. One thread per direction."""

    def __init__(self, client: Transport, worker: Transport,
                 on_close: Callable[[], Any] | None = None) -> None:
        self.client = client
        self.worker = worker
        self._on_close = on_close
        self._done = threading.Event()
        self._closing = threading.Lock()

    def start(self) -> Relay:
        for source, sink, name in ((self.client, self.worker, "up"),
                                   (self.worker, self.client, "down")):
            threading.Thread(target=self._pump, args=(source, sink),
                             name=f"rpyc_ipy-relay-{name}", daemon=True).start()
        return self

    @property
    def closed(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def close(self) -> None:
        with self._closing:
            if self._done.is_set():
                return
            self._done.set()
        for transport in (self.client, self.worker):
            with contextlib.suppress(Exception):
                transport.close()
        if self._on_close is not None:
            self._on_close()

    def _pump(self, source: Transport, sink: Transport) -> None:
        buffer = memoryview(bytearray(_CHUNK))
        try:
            while not self._done.is_set():
                try:
                    received = source.recv_into(buffer)
                except TimeoutError:
                    continue
                if not received:
                    break
                if source.supports_nowait:
                    received = _gather(source, buffer, received)
                # the send ends before the next read reuses the buffer: no copy needed
                sink.send_parts([buffer[:received]])
        except (ConnectionClosed, OSError) as exc:
            log.debug("relay ends: %s", exc)
        finally:
            self.close()


def _gather(source: Transport, buffer: memoryview, filled: int) -> int:
    """``filled`` plus what else has already arrived, up to the buffer's end: a TLS
    read returns one record (16 KiB), so without this a large upload would be relayed
    in 16 KiB sends, each a system call here and a wake-up in the worker."""
    while filled < len(buffer):
        try:
            received = source.recv_nowait(buffer[filled:])
        except TimeoutError:
            break
        if not received:
            break  # closed: the next blocking read says so
        filled += received
    return filled
