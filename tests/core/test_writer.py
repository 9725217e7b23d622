"""The write side: queued releases and replies go out with the next frame, and a
release not yet sent can be taken back."""

from __future__ import annotations

import pytest

from rpyc_ipy.core.frame_reader import FrameReader
from rpyc_ipy.core.writer import FrameWriter
from rpyc_ipy.protocol import consts
from rpyc_ipy.protocol.engine import Engine, Event, Reply, Request
from rpyc_ipy.transports.memory import memory_pair

pytestmark = pytest.mark.timeout(60)

A = ("builtins.function", 11, 12)
B = ("builtins.function", 11, 13)


def _events(reader: FrameReader, count: int) -> list[Event]:
    return [reader.read_event() for _ in range(count)]


def _released(event: Event) -> tuple[object, int]:
    assert isinstance(event, Request) and event.handler == consts.HANDLE_DEL
    _, ((_, id_pack), (_, count)) = event.args
    return id_pack, count


def test_a_queued_release_is_taken_back_once_and_the_rest_go_out_first() -> None:
    near, far = memory_pair()
    engine = Engine()
    writer = FrameWriter(near, engine)
    reader = FrameReader(far, Engine(), frame_deadline=None)
    writer.queue_release(A, 2)
    writer.queue_release(B, 1)
    assert writer.reclaim_release(A) == 2
    assert writer.reclaim_release(A) == 0  # taken already: never twice
    ping = (consts.LABEL_VALUE, "ping")
    writer.write(engine.request(consts.HANDLE_PING, ping)[1])
    # queued since the last write: B waits one more write, for its reference to come back
    assert [type(event) for event in _events(reader, 1)] == [Request]
    assert writer.has_queued
    writer.queue_release(A, 1)  # queued after that write: it waits too
    writer.write(engine.request(consts.HANDLE_PING, ping)[1])
    first, second = _events(reader, 2)
    assert _released(first) == (B, 1)  # the releases go ahead of the frame
    assert isinstance(second, Request) and second.handler == consts.HANDLE_PING
    assert writer.reclaim_release(A) == 1
    assert not writer.has_queued
    assert writer.reclaim_release(B) == 0  # sent: nothing to take back
    near.close()
    far.close()


def test_a_queued_reply_goes_out_ahead_of_the_next_frame_or_with_a_flush() -> None:
    near, far = memory_pair()
    engine = Engine()
    writer = FrameWriter(near, engine)
    reader = FrameReader(far, Engine(), frame_deadline=None)
    writer.queue_frame(engine.reply(7, (consts.LABEL_VALUE, None)))
    assert writer.has_queued
    writer.write(engine.reply(8, (consts.LABEL_VALUE, 1)))
    assert _events(reader, 2) == [Reply(7, (consts.LABEL_VALUE, None)),
                                  Reply(8, (consts.LABEL_VALUE, 1))]
    writer.queue_frame(engine.reply(9, (consts.LABEL_VALUE, None)))
    writer.flush()
    assert _events(reader, 1) == [Reply(9, (consts.LABEL_VALUE, None))]
    assert not writer.has_queued
    near.close()
    far.close()


def test_a_flush_sends_every_queued_release() -> None:
    near, far = memory_pair()
    engine = Engine()
    writer = FrameWriter(near, engine)
    reader = FrameReader(far, Engine(), frame_deadline=None)
    writer.queue_release(A, 1)
    writer.queue_release(B, 3)
    writer.flush()
    assert [_released(event) for event in _events(reader, 2)] == [(A, 1), (B, 3)]
    assert not writer.has_queued
    near.close()
    far.close()
