"""A large bytes value is received straight into the bytes object the message gives."""

from __future__ import annotations

import os
import struct

import pytest

from rpyc_ipy.errors import CodecError, LimitExceeded
from rpyc_ipy.protocol import brine, consts
from rpyc_ipy.protocol.engine import Engine, Event, Reply, Request
from rpyc_ipy.protocol.framing import FrameDecoder, frame_bytes
from rpyc_ipy.protocol.limits import Limits
from rpyc_ipy.protocol.spliced import SCAN_ITEMS, Spliced, find_hole

pytestmark = pytest.mark.timeout(60)

BIG = 300_000


def _deliver(engine: Engine, stream: bytes, step: int = 1 << 30) -> list[int]:
    """Receive ``stream`` into the engine like a socket; returns the buffer sizes offered."""
    sizes, pos = [], 0
    while pos < len(stream):
        target = engine.receive_buffer()
        sizes.append(len(target))
        count = min(len(target), step, len(stream) - pos)
        target[:count] = stream[pos:pos + count]
        engine.received(count)
        pos += count
    return sizes


def _events(engine: Engine) -> list[Event]:
    out: list[Event] = []
    while (event := engine.next_event()) is not None:
        out.append(event)
    return out


def test_a_large_reply_value_is_received_into_its_own_bytes() -> None:
    value = os.urandom(BIG)
    stream = b"".join(Engine().reply(7, (consts.LABEL_VALUE, value)))
    body = stream[5:]
    found = find_hole(body, 1, len(body), 1 << 16)
    assert found is not None and found[1] == BIG
    value_at = 5 + found[0] + 5  # in the stream: frame header, then the value's tag
    engine = Engine()
    sizes = _deliver(engine, stream, step=4096)
    # after the first 4 KiB: exactly the rest of the value, then its tail and the flusher
    assert sizes[1] == BIG - (4096 - value_at)
    assert sizes[-1] == len(stream) - value_at - BIG
    events = _events(engine)
    assert events == [Reply(7, (consts.LABEL_VALUE, value))]
    assert isinstance(events[0], Reply)
    got = events[0].value[1]
    assert type(got) is bytes and got == value
    assert not engine.in_frame


def test_the_payload_is_the_body_without_the_value_and_decodes_to_the_same_message() -> None:
    value = os.urandom(BIG)
    body = b"\x02" + brine.dump((7, (consts.LABEL_VALUE, value)))
    decoder = FrameDecoder(split_values=True)
    decoder.feed(frame_bytes(body))
    payload = decoder.next_payload()
    assert type(payload) is Spliced
    assert len(payload) == len(body) - BIG
    message = brine.load_from(payload, 1)
    assert message == brine.load_from(body, 1)
    assert message[1][1] is payload.value  # handed over, not copied
    decoder.release_payload()
    assert not decoder.in_frame


def test_a_large_value_between_other_arguments_of_a_request() -> None:
    value = os.urandom(BIG)
    args = (consts.LABEL_TUPLE, ((consts.LABEL_VALUE, "name"), (consts.LABEL_VALUE, value),
                                 (consts.LABEL_VALUE, ("after", 1, 2.5)), (consts.LABEL_VALUE, ())))
    _, parts = Engine().request(consts.HANDLE_CALLATTR, args)
    stream = b"".join(parts) + b"".join(Engine().reply(1, (consts.LABEL_VALUE, b"small")))
    engine = Engine()
    _deliver(engine, stream, step=1000)
    assert _events(engine) == [Request(0, consts.HANDLE_CALLATTR, args),
                               Reply(1, (consts.LABEL_VALUE, b"small"))]


def test_a_large_str_is_not_taken_for_a_bytes_value() -> None:
    text = "é" * BIG
    stream = b"".join(Engine().reply(3, (consts.LABEL_VALUE, (text, os.urandom(BIG)))))
    engine = Engine()
    _deliver(engine, stream, step=70_000)
    [event] = _events(engine)
    assert isinstance(event, Reply) and event.value[1][0] == text


def test_a_value_over_max_bytes_len_is_refused() -> None:
    stream = b"".join(Engine().reply(3, (consts.LABEL_VALUE, bytes(BIG))))
    engine = Engine(Limits(max_bytes_len=BIG - 1))
    _deliver(engine, stream)
    with pytest.raises(LimitExceeded, match="limit"):
        engine.next_event()


def test_a_malformed_body_around_a_large_value_is_refused() -> None:
    # a value that fits the body, then bytes no message has: trailing after the value
    body = b"\x02" + b"\x0f" + struct.pack(">I", BIG) + bytes(BIG) + b"\x00\x00"
    engine = Engine()
    _deliver(engine, frame_bytes(body))
    with pytest.raises(CodecError):
        engine.next_event()


def test_find_hole_stops_after_scan_items() -> None:
    value_tag = b"\x0f" + struct.pack(">I", BIG)
    near = b"\x15" + struct.pack(">I", 2) + b"\x00" * (SCAN_ITEMS - 2) + value_tag
    far = b"\x15" + struct.pack(">I", 2) + b"\x00" * SCAN_ITEMS + value_tag
    assert find_hole(near, 0, len(near), 1 << 16) == (len(near) - 5, BIG)
    assert find_hole(far, 0, len(far), 1 << 16) is None
    assert find_hole(b"\x07" + value_tag, 0, 6, 1 << 16) is None  # not a tag: no guess
