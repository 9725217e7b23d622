"""The write side of a connection: frames out, with the releases netrefs queued.

A netref's ``__del__`` never does I/O: it queues a release here
(:meth:`FrameWriter.queue_release`), and the DEL requests go out ahead of the
next frame written, or when the background flusher calls :meth:`FrameWriter.flush`.
"""

from __future__ import annotations

import collections

from rpyc_ipy.core.transport import Transport
from rpyc_ipy.protocol import consts
from rpyc_ipy.protocol.engine import Engine
from rpyc_ipy.protocol.objects import IdPack

__all__ = ["FrameWriter"]


class FrameWriter:
    """Writes one connection's frames; every method but :meth:`queue_release` is
    called with the connection's send lock held (one writer at a time).

    Over TLS each frame is its own write: RPyC reads one frame per readiness
    event on the raw socket, and a second frame already decrypted inside its
    TLS object would never wake it.
    """

    def __init__(self, transport: Transport, engine: Engine) -> None:
        self._transport = transport
        self._engine = engine
        self._releases: collections.deque[tuple[IdPack, int]] = collections.deque()

    @property
    def has_releases(self) -> bool:
        return bool(self._releases)

    def queue_release(self, id_pack: IdPack, count: int) -> bool:
        """Queue a DEL of ``count`` references to ``id_pack``; no lock, no I/O,
        reentrant (finalizers call it). True if the queue was empty before."""
        was_empty = not self._releases
        self._releases.append((id_pack, count))
        return was_empty

    def forget_releases(self) -> None:
        """The connection closed: nothing queued will be sent."""
        self._releases.clear()

    def write(self, parts: list[bytes]) -> None:
        """Write one frame, preceded by any queued releases."""
        frames = self._release_frames() if self._releases else []
        frames.append(parts)
        self._send(frames)

    def flush(self) -> None:
        """Write the queued releases, if any."""
        frames = self._release_frames()
        if frames:
            self._send(frames)

    def _send(self, frames: list[list[bytes]]) -> None:
        if len(frames) == 1 or self._transport.one_frame_per_write:
            for frame in frames:
                self._transport.send_parts(frame)
        else:
            self._transport.send_parts([part for frame in frames for part in frame])

    def _release_frames(self) -> list[list[bytes]]:
        frames: list[list[bytes]] = []
        releases = self._releases
        while releases:
            try:
                id_pack, count = releases.popleft()
            except IndexError:
                break
            # DEL is async: its reply (None) is dropped as an unknown seq
            _, frame = self._engine.request(
                consts.HANDLE_DEL,
                (consts.LABEL_TUPLE,
                 ((consts.LABEL_LOCAL_REF, id_pack), (consts.LABEL_VALUE, count))),
            )
            frames.append(frame)
        return frames
