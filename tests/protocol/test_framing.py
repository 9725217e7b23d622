"""Channel framing: rpyc's layout and compression rule, feeding and receive-into, the limits."""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable

import pytest

from rpyc_ipy.errors import CodecError, LimitExceeded
from rpyc_ipy.protocol import framing
from rpyc_ipy.protocol.engine import Engine, Reply, Request
from rpyc_ipy.protocol.framing import FrameDecoder, frame_bytes, frame_parts
from rpyc_ipy.protocol.limits import DEFAULT_LIMITS, Limits

pytestmark = pytest.mark.timeout(60)


def _header(length: int, flag: int) -> bytes:
    return struct.pack(">IB", length, flag)


def test_frame_layout() -> None:
    assert frame_bytes(b"\x01\x11P\x11S\x11Q\x02") == bytes.fromhex("000000080001115011531151020a")
    assert frame_bytes(b"") == b"\x00\x00\x00\x00\x00\n"


@pytest.mark.parametrize("size", [1, 3000, 3001, 70_000])
def test_rpyc_compression_rule(size: int) -> None:
    payload = os.urandom(size // 2) + b"a" * (size - size // 2)
    frame = frame_bytes(payload, framing.RPYC_COMPRESSION_THRESHOLD)
    length, flag = struct.unpack(">IB", frame[:5])
    assert flag == (size > 3000)
    body = frame[5:-1]
    assert length == len(body) and frame[-1:] == b"\n"
    assert body == (zlib.compress(payload, 1) if flag else payload)
    assert frame_bytes(payload) == _header(size, 0) + payload + b"\n"  # None: never compress


def test_frame_parts_keeps_big_parts_and_joins_small_frames() -> None:
    big = b"x" * (1 << 17)
    parts = frame_parts([b"head", big])
    assert b"".join(parts) == _header(len(big) + 4, 0) + b"head" + big + b"\n"
    assert any(part is big for part in parts)
    assert b"".join(frame_parts([b"a", b"b", b"c"])) == _header(3, 0) + b"abc\n"


def _receive(decoder: FrameDecoder, stream: bytes, steps: Iterable[int] = (1 << 30,)) -> None:
    """Deliver ``stream`` the way a socket does: into receive_buffer(), at most a step a read."""
    pos = 0
    for step in steps:
        target = decoder.receive_buffer()
        count = min(len(target), step, len(stream) - pos)
        target[:count] = stream[pos:pos + count]
        decoder.received(count)
        pos += count
        if pos == len(stream):
            return
    raise AssertionError("steps ran out")


def _drain(decoder: FrameDecoder) -> list[bytes]:
    out = []
    while (payload := decoder.next_payload()) is not None:
        out.append(bytes(payload))
    return out


def _decode(frame: bytes, limits: Limits = DEFAULT_LIMITS) -> bytes | None:
    decoder = FrameDecoder(limits)
    decoder.feed(frame)
    payload = decoder.next_payload()
    return None if payload is None else bytes(payload)


def test_compression_flag_must_be_0_or_1() -> None:
    with pytest.raises(CodecError):
        _decode(_header(7, 2) + b"1234567\n")
    decoder = FrameDecoder()
    _receive(decoder, _header(7, 2))
    assert decoder.has_frame()  # reading it is what reports the error
    with pytest.raises(CodecError):
        decoder.receive_buffer()


def test_frame_size_limit_from_the_header_alone() -> None:
    limits = Limits(max_frame_size=100)
    decoder = FrameDecoder(limits)
    decoder.feed(_header(100, 0) + b"y" * 100 + b"\n")
    assert decoder.next_payload() == b"y" * 100
    decoder.feed(_header(101, 0))  # no body yet: refused from the header
    assert decoder.has_frame()
    with pytest.raises(LimitExceeded):
        decoder.next_payload()
    big = FrameDecoder(limits)
    _receive(big, _header(2**32 - 1, 0))
    with pytest.raises(LimitExceeded):  # before a single body byte is taken
        big.receive_buffer()


def _compressed_frame(body: bytes) -> bytes:
    return _header(len(body), 1) + body + b"\n"


def test_zlib_bomb_is_capped() -> None:
    bomb = zlib.compress(b"\x00" * (64 << 20), 9)  # 64 MiB from about 64 KiB
    assert len(bomb) < 100_000
    with pytest.raises(LimitExceeded):
        _decode(_compressed_frame(bomb), Limits(max_frame_size=1 << 20))
    big_bomb = zlib.compress(b"\x00" * (256 << 20), 9)  # its body takes the large-frame path
    assert len(big_bomb) > 1 << 16
    decoder = FrameDecoder(Limits(max_frame_size=1 << 20))
    _receive(decoder, _compressed_frame(big_bomb), [4096] * 10_000)
    with pytest.raises(LimitExceeded):
        decoder.next_payload()


@pytest.mark.parametrize("size", [4096, 1 << 20])
def test_inflating_to_exactly_the_limit_is_fine(size: int) -> None:
    # the limit caps the compressed body too, so these payloads must compress
    for payload in (b"z" * size, os.urandom(size // 4) + bytes(size - size // 4)):
        frame = _compressed_frame(zlib.compress(payload, 1))
        assert _decode(frame, Limits(max_frame_size=size)) == payload
        with pytest.raises(LimitExceeded):
            _decode(frame, Limits(max_frame_size=size - 1))


@pytest.mark.parametrize("body", [
    b"not zlib at all",
    zlib.compress(b"payload" * 100)[:-3],  # truncated
    zlib.compress(b"payload") + b"junk",  # trailing garbage
    b"",
    zlib.compress(os.urandom(100_000))[:-3],  # truncated, on the large-frame path
])
def test_bad_compressed_bodies(body: bytes) -> None:
    with pytest.raises(CodecError):
        _decode(_compressed_frame(body))


def _stream(payloads: list[bytes]) -> bytes:
    return b"".join(frame_bytes(p, framing.RPYC_COMPRESSION_THRESHOLD) for p in payloads)


PAYLOADS = [b"", b"a", os.urandom(5000), b"b" * 40_000, b"\n" * 10, os.urandom(200_000),
            b"after the large one", os.urandom(70_000), os.urandom(65_530)]


def test_feed_any_chunking() -> None:
    stream = _stream(PAYLOADS)
    whole = FrameDecoder()
    whole.feed(stream)  # more than the small buffer, nothing drained: it grows
    assert _drain(whole) == PAYLOADS
    assert not whole.in_frame and whole.buffered == 0
    for step in (1, 2, 5, 4099, 70_000):
        decoder = FrameDecoder()
        got: list[bytes] = []
        for start in range(0, len(stream), step):
            decoder.feed(memoryview(stream)[start:start + step])
            got += _drain(decoder)
        assert got == PAYLOADS
    half = FrameDecoder()
    half.feed(stream[:7])
    assert half.next_payload() == b""
    assert half.in_frame and half.next_payload() is None


@pytest.mark.parametrize("step", [1, 3, 4099, 1 << 16, 1 << 30])
def test_receive_into_any_chunking(step: int) -> None:
    stream = _stream(PAYLOADS)
    largest_body = max(len(_stream([p])) for p in PAYLOADS) - framing.HEADER_SIZE
    decoder = FrameDecoder()
    got: list[bytes] = []
    pos = 0
    while pos < len(stream):
        target = decoder.receive_buffer()
        assert len(target) <= max(1 << 16, largest_body)  # the small buffer, or one large body
        count = min(len(target), step, len(stream) - pos)
        target[:count] = stream[pos:pos + count]
        decoder.received(count)
        pos += count
        got += _drain(decoder)
    assert got == PAYLOADS
    assert not decoder.in_frame and decoder.buffered == 0


def test_several_small_frames_from_one_read() -> None:
    payloads = [b"one", b"two", b"three" * 100]
    decoder = FrameDecoder()
    _receive(decoder, _stream(payloads))
    assert decoder.has_frame()
    assert _drain(decoder) == payloads
    assert not decoder.has_frame()


def test_large_body_is_received_in_place() -> None:
    payload = os.urandom(300_000)
    frame = frame_bytes(payload)
    decoder = FrameDecoder()
    _receive(decoder, frame[:1000])  # the header and the start of the body
    target = decoder.receive_buffer()
    # the rest of the body and the flusher, exactly: one buffer of the declared size
    assert len(target) == len(frame) - 1000
    target[:] = frame[1000:]
    assert not decoder.has_frame()  # nothing counted until received() says so
    decoder.received(len(target))
    assert decoder.has_frame()
    got = decoder.next_payload()
    assert isinstance(got, memoryview)  # the receive buffer itself, not a copy
    assert got == payload
    assert not decoder.in_frame and decoder.next_payload() is None


def _large_payload(decoder: FrameDecoder, payload: bytes) -> memoryview:
    _receive(decoder, frame_bytes(payload), steps=(1000, 1 << 30))
    got = decoder.next_payload()
    assert isinstance(got, memoryview) and got == payload
    return got


def test_a_body_buffer_is_kept_for_the_next_large_frame() -> None:
    """A fresh page costs a fault: the second large frame lands in the first one's pages."""
    decoder = FrameDecoder()
    first = _large_payload(decoder, os.urandom(300_000))
    mapping = first.obj
    del first
    decoder.release_payload()
    second = _large_payload(decoder, os.urandom(200_000))  # smaller: fits the kept buffer
    assert second.obj is mapping
    del second
    decoder.release_payload()
    third = _large_payload(decoder, os.urandom(400_000))  # larger: a buffer of its own
    assert third.obj is not mapping


def test_a_body_buffer_still_in_view_is_not_reused() -> None:
    decoder = FrameDecoder()
    first_bytes = os.urandom(300_000)
    first = _large_payload(decoder, first_bytes)
    mapping = first.obj
    kept = first[100:200]  # a slice outlives the payload: its bytes must not change
    del first
    decoder.release_payload()
    second = _large_payload(decoder, os.urandom(200_000))
    assert second.obj is not mapping
    assert kept == first_bytes[100:200]


@pytest.mark.parametrize(("keep", "kept"), [(300_001, True), (300_000, False), (0, False)])
def test_keep_buffer_bounds_the_kept_body_buffer(keep: int, kept: bool) -> None:
    decoder = FrameDecoder(keep_buffer=keep)  # a 300_000-byte body needs 300_001 (flusher)
    first = _large_payload(decoder, os.urandom(300_000))
    mapping = first.obj
    del first
    decoder.release_payload()
    assert (_large_payload(decoder, os.urandom(100_000)).obj is mapping) == kept


def test_no_body_buffer_is_kept_for_a_peer_not_yet_established() -> None:
    decoder = FrameDecoder(first_frame_limit=1 << 20)
    first = _large_payload(decoder, os.urandom(300_000))
    mapping = first.obj
    del first
    decoder.release_payload()
    second = _large_payload(decoder, os.urandom(100_000))
    assert second.obj is not mapping
    decoder.lift_frame_limit()
    mapping = second.obj
    del second
    decoder.release_payload()
    assert _large_payload(decoder, os.urandom(100_000)).obj is mapping


def test_a_declared_large_frame_waits_for_its_body() -> None:
    decoder = FrameDecoder()
    _receive(decoder, _header(100 << 20, 0))
    assert len(decoder.receive_buffer()) == (100 << 20) + 1
    assert decoder.in_frame and not decoder.has_frame() and decoder.next_payload() is None


def test_flusher_byte_is_not_checked() -> None:
    decoder = FrameDecoder()
    decoder.feed(_header(2, 0) + b"hi" + b"X")
    assert decoder.next_payload() == b"hi"


def test_engine_reads_events_through_receive_into() -> None:
    peer = Engine()
    seq, request = peer.request(3, ("args",))
    stream = b"".join(request) + frame_bytes(b"") + b"".join(peer.reply(seq, b"v" * 100_000))
    engine = Engine()
    events = []
    pos = 0
    while pos < len(stream):
        target = engine.receive_buffer()
        count = min(len(target), 1000, len(stream) - pos)
        target[:count] = stream[pos:pos + count]
        engine.received(count)
        pos += count
        while (event := engine.next_event()) is not None:
            events.append(event)
    assert events == [Request(seq, 3, ("args",)), Reply(seq, b"v" * 100_000)]  # empty one skipped
    assert not engine.in_frame


def test_engine_stays_failed_after_a_refused_frame() -> None:
    engine = Engine(Limits(max_frame_size=10))
    engine.receive_data(_header(11, 0))
    with pytest.raises(LimitExceeded) as first:
        engine.next_event()
    for call in (engine.next_event, engine.receive_buffer, lambda: engine.received(1),
                 lambda: engine.receive_data(b"x")):
        with pytest.raises(LimitExceeded) as again:
            call()
        assert again.value is first.value


def test_the_receive_buffer_is_allocated_on_demand_and_dropped_when_idle() -> None:
    decoder = FrameDecoder()
    assert decoder.capacity == 0  # a new connection holds no receive buffer
    assert decoder.release_buffer()
    small = frame_bytes(b"hello")
    _receive(decoder, small)
    first = decoder.capacity
    assert 0 < first < 1 << 16  # a small first buffer, not the 64 KiB a frame may need
    assert decoder.next_payload() == b"hello" and decoder.next_payload() is None
    assert decoder.release_buffer() and decoder.capacity == 0
    # a frame larger than the first buffer makes it grow to fit, then lets it go
    body = os.urandom(40_000)
    _receive(decoder, frame_bytes(body), steps=[1000] * 100)
    assert decoder.capacity >= len(body)
    assert decoder.next_payload() == body
    assert decoder.capacity == 0
    # half a frame: the buffer holds it and is not released
    frame = frame_bytes(b"split")
    _receive(decoder, frame[:4])
    assert not decoder.release_buffer() and decoder.capacity > 0
    _receive(decoder, frame[4:])
    assert decoder.next_payload() == b"split"
    assert decoder.release_buffer() and decoder.capacity == 0
    assert not decoder.has_frame() and not decoder.in_frame
