"""The frame reader: the I/O loop over the engine, over a real in-memory transport."""

from __future__ import annotations

import os

import pytest

from rpyc_ipy.core.frame_reader import FrameReader
from rpyc_ipy.errors import ConnectionClosed, LimitExceeded
from rpyc_ipy.protocol.engine import Engine, Reply, Request
from rpyc_ipy.protocol.framing import frame_bytes
from rpyc_ipy.protocol.limits import Limits
from rpyc_ipy.transports.memory import memory_pair

pytestmark = pytest.mark.timeout(60)


def test_small_and_large_frames_in_any_split() -> None:
    near, far = memory_pair(poll_interval=0.05)
    peer = Engine()
    big = os.urandom(300_000)
    seq1, request = peer.request(7, ("x",))
    stream = b"".join(request) + frame_bytes(b"") + b"".join(peer.reply(seq1, big))
    for start in range(0, len(stream), 4099):  # split across headers and bodies
        near.send_parts([stream[start:start + 4099]])
    reader = FrameReader(far, Engine(), frame_deadline=None)
    assert reader.read_event() == Request(seq1, 7, ("x",))
    assert reader.read_event() == Reply(seq1, big)  # the empty frame is skipped
    assert reader.frames_read == 2 and not reader.in_frame
    with pytest.raises(TimeoutError):
        reader.read_event()  # nothing more: the caller polls again


def test_eof_in_the_middle_of_a_frame() -> None:
    near, far = memory_pair(poll_interval=0.05)
    near.send_parts([frame_bytes(b"\x01" * 100_000)[:70_000]])
    near.close()
    reader = FrameReader(far, Engine(), frame_deadline=None)
    with pytest.raises(ConnectionClosed, match="middle of a frame"):
        reader.read_event()


def test_oversized_header_is_refused_before_its_body() -> None:
    near, far = memory_pair(poll_interval=0.05)
    near.send_parts([frame_bytes(b"y" * 2000)[:5]])  # the header alone
    engine = Engine(Limits(max_frame_size=1000))
    reader = FrameReader(far, engine, frame_deadline=None)
    with pytest.raises(LimitExceeded):
        reader.read_event()
    assert engine.has_frame()  # the refused header is all there is, and it is final


def test_a_half_sent_frame_misses_its_deadline() -> None:
    near, far = memory_pair(poll_interval=0.01)
    near.send_parts([frame_bytes(b"z" * 100)[:50]])
    reader = FrameReader(far, Engine(), frame_deadline=0.05)
    with pytest.raises(LimitExceeded, match="not complete"):
        while True:  # each poll interval without the rest ends in a TimeoutError
            try:
                reader.read_event()
            except TimeoutError:
                assert reader.in_frame
