"""Channel framing: rpyc's layout and compression rule, streaming, and the size limits."""

from __future__ import annotations

import os
import struct
import zlib

import pytest

from rpyc_ipy.errors import CodecError, LimitExceeded
from rpyc_ipy.protocol import framing
from rpyc_ipy.protocol.framing import FrameDecoder, decode_body, frame_bytes, frame_parts
from rpyc_ipy.protocol.limits import Limits

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


def test_parse_header() -> None:
    assert framing.parse_header(_header(7, 0)) == (7, False)
    assert framing.parse_header(memoryview(_header(7, 1))) == (7, True)
    with pytest.raises(CodecError):
        framing.parse_header(_header(7, 2))


def test_frame_size_limit_from_the_header_alone() -> None:
    limits = Limits(max_frame_size=100)
    decoder = FrameDecoder(limits)
    decoder.feed(_header(100, 0) + b"y" * 100 + b"\n")
    assert decoder.next_payload() == b"y" * 100
    decoder.feed(_header(101, 0))  # no body yet: refused from the header
    with pytest.raises(LimitExceeded):
        decoder.next_payload()
    with pytest.raises(LimitExceeded):
        framing.parse_header(_header(2**32 - 1, 0))


def test_zlib_bomb_is_capped() -> None:
    bomb = zlib.compress(b"\x00" * (64 << 20), 9)  # 64 MiB from about 64 KiB
    assert len(bomb) < 100_000
    with pytest.raises(LimitExceeded):
        decode_body(bomb, True, Limits(max_frame_size=1 << 20))
    decoder = FrameDecoder(Limits(max_frame_size=1 << 20))
    decoder.feed(_header(len(bomb), 1) + bomb + b"\n")
    with pytest.raises(LimitExceeded):
        decoder.next_payload()


@pytest.mark.parametrize("size", [2, 4096, 1 << 20])
def test_inflating_to_exactly_the_limit_is_fine(size: int) -> None:
    for payload in (b"z" * size, os.urandom(size)):
        body = zlib.compress(payload, 1)
        assert decode_body(body, True, Limits(max_frame_size=size)) == payload
        with pytest.raises(LimitExceeded):
            decode_body(body, True, Limits(max_frame_size=size - 1))


@pytest.mark.parametrize("body", [
    b"not zlib at all",
    zlib.compress(b"payload" * 100)[:-3],  # truncated
    zlib.compress(b"payload") + b"junk",  # trailing garbage
    b"",
])
def test_bad_compressed_bodies(body: bytes) -> None:
    with pytest.raises(CodecError):
        decode_body(body, True)


def test_uncompressed_body_passes_through_uncopied() -> None:
    body = bytearray(b"abc")
    assert decode_body(body, False) is body


def _stream(payloads: list[bytes]) -> bytes:
    return b"".join(frame_bytes(p, framing.RPYC_COMPRESSION_THRESHOLD) for p in payloads)


def _drain(decoder: FrameDecoder) -> list[bytes]:
    out = []
    while (payload := decoder.next_payload()) is not None:
        out.append(bytes(payload))
    return out


def test_decoder_any_chunking() -> None:
    payloads = [b"", b"a", os.urandom(5000), b"b" * 40_000, b"\n" * 10]
    stream = _stream(payloads)
    whole = FrameDecoder()
    whole.feed(stream)
    assert _drain(whole) == payloads
    assert not whole.in_frame and whole.buffered == 0
    for step in (1, 2, 5, 4099):
        decoder = FrameDecoder()
        got: list[bytes] = []
        for start in range(0, len(stream), step):
            decoder.feed(memoryview(stream)[start:start + step])
            got += _drain(decoder)
        assert got == payloads
    half = FrameDecoder()
    half.feed(stream[:7])
    assert half.next_payload() == b""
    assert half.in_frame and half.next_payload() is None


def test_flusher_byte_is_not_checked() -> None:
    decoder = FrameDecoder()
    decoder.feed(_header(2, 0) + b"hi" + b"X")
    assert decoder.next_payload() == b"hi"
