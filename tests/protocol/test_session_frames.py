"""Every frame real rpyc 6.0.2 sessions put on the wire: split, decode, re-encode, re-frame."""

from __future__ import annotations

import random
from typing import Any

import pytest
from codec_vectors import from_tagged, same_value, spec_json

from rpyc_ipy.protocol import brine
from rpyc_ipy.protocol.framing import RPYC_COMPRESSION_THRESHOLD, FrameDecoder, frame_parts

pytestmark = pytest.mark.timeout(60)

SCENARIOS: dict[str, Any] = spec_json("session-frames.json")["scenarios"]
FRAMES = [(name, event) for name, scenario in SCENARIOS.items()
          for event in scenario["events"] if event["type"] == "frame"]


def test_all_scenarios_and_the_compressed_frame_are_covered() -> None:
    assert set(SCENARIOS) == {"main", "extra", "classicserver"}
    assert len(FRAMES) == 137
    assert any(event["compressed"] for _, event in FRAMES)
    assert any(event["redacted"] for _, event in FRAMES)


@pytest.mark.parametrize(("scenario", "event"), FRAMES,
                         ids=[f"{name}-{event['index']}" for name, event in FRAMES])
def test_frame(scenario: str, event: dict[str, Any]) -> None:
    frame = bytes.fromhex(event["frame_hex"])
    decoder = FrameDecoder()
    decoder.feed(frame)
    payload = decoder.next_payload()
    assert payload is not None and decoder.next_payload() is None
    assert not decoder.in_frame
    payload = bytes(payload)
    assert payload == bytes.fromhex(event["payload_hex"])
    assert int.from_bytes(frame[:4], "big") == event["length"]
    assert frame[4] == event["compressed"]
    assert payload[0] == event["msg_type"]

    decoded = brine.load_from(payload, 1)
    assert same_value(decoded, from_tagged(event["decoded"]))

    assert bytes((event["msg_type"],)) + brine.dump(decoded) == payload
    parts = brine.dump_parts(decoded)
    parts[0] = bytes((event["msg_type"],)) + parts[0]
    assert b"".join(frame_parts(parts, RPYC_COMPRESSION_THRESHOLD)) == frame


@pytest.mark.parametrize("receive_into", [False, True], ids=["feed", "receive_into"])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_whole_streams_in_random_chunks(scenario: str, receive_into: bool) -> None:
    r = random.Random(scenario)
    for direction in ("C->S", "S->C"):
        events = [e for name, e in FRAMES if name == scenario and e["direction"] == direction]
        stream = b"".join(bytes.fromhex(e["frame_hex"]) for e in events)
        decoder = FrameDecoder()
        got = []
        pos = 0
        while pos < len(stream):
            step = r.choice([1, 2, 3, 7, 64, 1000])
            if receive_into:  # as a socket read does: into the decoder's own buffer
                target = decoder.receive_buffer()
                step = min(step, len(target), len(stream) - pos)
                target[:step] = stream[pos:pos + step]
                decoder.received(step)
            else:
                decoder.feed(stream[pos:pos + step])
            pos += step
            while (payload := decoder.next_payload()) is not None:
                got.append(bytes(payload).hex())
        assert got == [e["payload_hex"] for e in events]
        assert not decoder.in_frame
