"""Property tests for framing: any chunking gives the same payloads; garbage is refused."""

from __future__ import annotations

import pytest
from fuzzkit import FUZZ
from hypothesis import given
from hypothesis import strategies as st

from rpyc_ipy.errors import CodecError
from rpyc_ipy.protocol.framing import RPYC_COMPRESSION_THRESHOLD, FrameDecoder, frame_bytes
from rpyc_ipy.protocol.limits import Limits

pytestmark = pytest.mark.timeout(30)  # the whole module runs in seconds; a hang must not wait 120 s

payloads = st.lists(
    st.one_of(st.binary(max_size=200), st.binary(min_size=2990, max_size=3100),
              st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=3),
                        st.integers(1000, 20_000))),
    max_size=8,
)


def _stream(items: list[bytes], compress: bool) -> bytes:
    threshold = RPYC_COMPRESSION_THRESHOLD if compress else None
    return b"".join(frame_bytes(item, threshold) for item in items)


def _drain(decoder: FrameDecoder) -> list[bytes]:
    out = []
    while (payload := decoder.next_payload()) is not None:
        out.append(bytes(payload))
    return out


@FUZZ
@given(payloads, st.booleans())
def test_byte_at_a_time_equals_whole(items: list[bytes], compress: bool) -> None:
    stream = _stream(items, compress)
    whole = FrameDecoder()
    whole.feed(stream)
    assert _drain(whole) == items
    single = FrameDecoder()
    got: list[bytes] = []
    for i in range(len(stream)):
        single.feed(stream[i:i + 1])
        got += _drain(single)
    assert got == items
    assert not single.in_frame


@FUZZ
@given(payloads, st.booleans(), st.lists(st.integers(1, 5000), min_size=1, max_size=30))
def test_any_chunking_equals_whole(items: list[bytes], compress: bool, steps: list[int]) -> None:
    stream = _stream(items, compress)
    decoder = FrameDecoder()
    got: list[bytes] = []
    pos = 0
    i = 0
    while pos < len(stream):
        step = steps[i % len(steps)]
        decoder.feed(memoryview(stream)[pos:pos + step])
        pos += step
        i += 1
        got += _drain(decoder)
    assert got == items


@FUZZ
@given(st.binary(max_size=4000), st.integers(1, 5000))
def test_garbage_gives_payloads_or_codec_error(stream: bytes, limit: int) -> None:
    decoder = FrameDecoder(Limits(max_frame_size=limit))
    decoder.feed(stream)
    try:
        for payload in iter(decoder.next_payload, None):
            assert len(payload) <= limit
    except CodecError:
        pass
    assert decoder.buffered <= len(stream)
