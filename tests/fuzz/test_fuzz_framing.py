"""Property tests for framing: any chunking, fed or received into the decoder's own
buffers, gives the same payloads; any other bytes decode or raise a CodecError."""

from __future__ import annotations

import struct

import pytest
from fuzzkit import FUZZ
from hypothesis import given
from hypothesis import strategies as st

from rpyc_ipy.errors import CodecError
from rpyc_ipy.protocol.framing import RPYC_COMPRESSION_THRESHOLD, FrameDecoder, frame_bytes
from rpyc_ipy.protocol.limits import Limits

pytestmark = pytest.mark.timeout(60)  # the whole module runs in seconds; a hang must not wait 120 s

small = st.one_of(
    st.binary(max_size=200), st.binary(min_size=2990, max_size=3100),
    st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=3), st.integers(1000, 20_000)),
)
# over the 64 KiB receive buffer, so the body goes to a buffer of its own; random
# bytes stay large when compressed, repeated ones do not
large = st.one_of(
    st.builds(lambda r, n: r.randbytes(n), st.randoms(use_true_random=False),
              st.integers(65_000, 200_000)),
    st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=8), st.integers(9000, 30_000)),
)
payloads = st.lists(small, max_size=8)
mixed_payloads = st.lists(st.one_of(small, large), max_size=6)
steps = st.lists(st.integers(1, 70_000), min_size=1, max_size=30)


def _stream(items: list[bytes], compress: bool) -> bytes:
    threshold = RPYC_COMPRESSION_THRESHOLD if compress else None
    return b"".join(frame_bytes(item, threshold) for item in items)


def _drain(decoder: FrameDecoder) -> list[bytes]:
    out = []
    while (payload := decoder.next_payload()) is not None:
        out.append(bytes(payload))
    return out


def _deliver(decoder: FrameDecoder, stream: bytes, steps: list[int], receive_into: bool
             ) -> list[bytes]:
    """Hand ``stream`` over in chunks of the given sizes (cycled), draining after each."""
    got: list[bytes] = []
    pos = 0
    i = 0
    while pos < len(stream):
        step = steps[i % len(steps)]
        i += 1
        if receive_into:
            target = decoder.receive_buffer()
            step = min(step, len(target), len(stream) - pos)
            target[:step] = stream[pos:pos + step]
            decoder.received(step)
        else:
            decoder.feed(memoryview(stream)[pos:pos + step])
        pos += step
        got += _drain(decoder)
    return got


@FUZZ
@given(payloads, st.booleans(), st.booleans())
def test_byte_at_a_time_equals_whole(items: list[bytes], compress: bool,
                                     receive_into: bool) -> None:
    stream = _stream(items, compress)
    whole = FrameDecoder()
    whole.feed(stream)
    assert _drain(whole) == items
    single = FrameDecoder()
    assert _deliver(single, stream, [1], receive_into) == items
    assert not single.in_frame


@FUZZ
@given(mixed_payloads, st.booleans(), steps, st.booleans())
def test_any_chunking_equals_whole(items: list[bytes], compress: bool, steps: list[int],
                                   receive_into: bool) -> None:
    stream = _stream(items, compress)
    whole = FrameDecoder()
    whole.feed(stream)  # nothing drained while it arrives: the small buffer grows
    assert _drain(whole) == items
    decoder = FrameDecoder()
    assert _deliver(decoder, stream, steps, receive_into) == items
    assert not decoder.in_frame and decoder.buffered == 0


@FUZZ
@given(mixed_payloads, st.booleans(), steps)
def test_feeding_and_receiving_into_mix(items: list[bytes], compress: bool,
                                        steps: list[int]) -> None:
    stream = _stream(items, compress)
    decoder = FrameDecoder()
    got: list[bytes] = []
    pos = 0
    for i, step in enumerate(steps * (len(stream) // len(steps) + 1)):
        if pos == len(stream):
            break
        if i % 2:
            target = decoder.receive_buffer()
            step = min(step, len(target), len(stream) - pos)
            target[:step] = stream[pos:pos + step]
            decoder.received(step)
        else:
            decoder.feed(stream[pos:pos + step])
        pos = min(pos + step, len(stream))
        got += _drain(decoder)
    assert got == items


# garbage, often behind a plausible header: large declared sizes, any flag
headers = st.builds(struct.pack, st.just(">IB"), st.integers(0, 300_000), st.integers(0, 2))
garbage = st.one_of(st.binary(max_size=4000),
                    st.builds(lambda h, b: h + b, headers, st.binary(max_size=4000)))


@FUZZ
@given(garbage, st.integers(1, 300_000), steps, st.booleans())
def test_garbage_gives_payloads_or_codec_error(stream: bytes, limit: int, steps: list[int],
                                               receive_into: bool) -> None:
    decoder = FrameDecoder(Limits(max_frame_size=limit))
    try:
        for payload in _deliver(decoder, stream, steps, receive_into):
            assert len(payload) <= limit
    except CodecError:  # LimitExceeded is one
        return
    assert decoder.buffered <= len(stream)
    assert decoder.in_frame == (decoder.buffered > 0)

