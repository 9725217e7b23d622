"""The write side of a connection: frames out, with the releases netrefs queued.

A netref's ``__del__`` never does I/O: it queues a release here
(:meth:`FrameWriter.queue_release`), and the DEL requests go out ahead of the
frame after next, or when the background flusher calls :meth:`FrameWriter.flush`.
Waiting one write lets the reply to the next request bring the same reference
back and take the release back instead (:meth:`FrameWriter.reclaim_release`):
``conn.modules.os.getpid()`` in a loop gets the same function each time.
The replies to the peer's DEL requests (which nobody waits for) are queued the
same way (:meth:`FrameWriter.queue_frame`): a callback's release and its reply
then share one write.
"""

from __future__ import annotations

import collections

from rpyc_ipy.core.transport import Transport
from rpyc_ipy.protocol import consts
from rpyc_ipy.protocol.engine import Engine
from rpyc_ipy.protocol.objects import IdPack

__all__ = ["FrameWriter"]

# queued releases looked through for one to take back; more are a burst of finalizers
_RECLAIM_SCAN = 64


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
        # (id_pack, count, writes so far when queued)
        self._releases: collections.deque[tuple[IdPack, int, int]] = collections.deque()
        self._frames: collections.deque[list[bytes]] = collections.deque()
        self._writes = 0

    @property
    def has_queued(self) -> bool:
        """True if releases or frames wait for the next write or :meth:`flush`."""
        return bool(self._releases or self._frames)

    def queue_release(self, id_pack: IdPack, count: int) -> None:
        """Queue a DEL of ``count`` references to ``id_pack``; no lock, no I/O,
        reentrant (finalizers call it)."""
        self._releases.append((id_pack, count, self._writes))

    def reclaim_release(self, id_pack: IdPack) -> int:
        """Take back a queued release of ``id_pack`` that was not sent yet; returns its
        count, 0 if there is none (or too many releases are queued to look)."""
        releases = self._releases
        if not releases or len(releases) > _RECLAIM_SCAN:
            return 0
        for item in list(releases):  # a copy: finalizers may append meanwhile
            if item[0] == id_pack:
                try:
                    releases.remove(item)  # atomic: either we take it or a flush sent it
                except ValueError:
                    return 0
                return item[1]
        return 0

    def queue_frame(self, parts: list[bytes]) -> None:
        """Queue a frame nobody waits for, to go out with the next write; no lock, no
        I/O."""
        self._frames.append(parts)

    def forget_releases(self) -> None:
        """The connection closed: nothing queued will be sent."""
        self._releases.clear()
        self._frames.clear()

    def write(self, parts: list[bytes]) -> None:
        """Write one frame, preceded by the queued frames and the releases queued
        before the last write."""
        if not self._releases and not self._frames:  # the usual: nothing queued
            self._writes += 1
            self._transport.send_parts(parts)
            return
        frames = self._queued_frames(self._writes)
        self._writes += 1
        frames.append(parts)
        self._send(frames)

    def flush(self) -> None:
        """Write every queued release and frame, if any."""
        frames = self._queued_frames(None)
        if frames:
            self._send(frames)

    def _send(self, frames: list[list[bytes]]) -> None:
        if len(frames) == 1 or self._transport.one_frame_per_write:
            for frame in frames:
                self._transport.send_parts(frame)
        else:
            self._transport.send_parts([part for frame in frames for part in frame])

    def _queued_frames(self, writes: int | None) -> list[list[bytes]]:
        """The queued frames, then DELs for the releases queued before ``writes``
        writes (all of them for None)."""
        frames: list[list[bytes]] = []
        queued = self._frames
        while queued:
            try:
                frames.append(queued.popleft())
            except IndexError:
                break
        releases = self._releases
        while releases:
            try:
                if writes is not None and releases[0][2] >= writes:
                    break  # queued since the last write: its reference may come back
                id_pack, count, _ = releases.popleft()
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
