"""Codecs side by side: rpyc_ipy's brine and framing against rpyc 6.0.2's, in one run.

    .venv/bin/python bench/bench_codecs.py [--quick]

Prints the median time per call of each library and the ratio (rpyc's time over
ours: 2.00x means ours does twice the work per second). The machines are shared
and noisy: read the ratios, not the absolute times. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from _common import Row, compare, print_rows  # noqa: E402
from rpyc.core import brine as rpyc_brine  # noqa: E402
from rpyc.core.channel import Channel  # noqa: E402

from rpyc_ipy.protocol import brine  # noqa: E402
from rpyc_ipy.protocol.framing import (  # noqa: E402
    RPYC_COMPRESSION_THRESHOLD,
    FrameDecoder,
    frame_parts,
)

MiB = 1 << 20
BRINE_CASES: list[tuple[str, Any]] = [
    ("tuple of 8 mixed scalars", ("he", 7, 1.5, None, True, b"xyz", 900, -3)),
    ("tuple(range(10000))", tuple(range(10_000))),
    ("1 MiB bytes", os.urandom(MiB)),
]


class _MemoryStream:
    """Just enough of an rpyc stream for Channel: writes collect, reads replay them."""

    MAX_IO_CHUNK = 64000

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.reader = io.BytesIO()

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def rewind(self) -> None:
        self.reader = io.BytesIO(b"".join(self.written))
        self.written = []

    def read(self, count: int) -> bytes:
        return self.reader.read(count)


def _brine_rows(repeat: int) -> list[Row]:
    rows = []
    for name, value in BRINE_CASES:
        assert brine.dump(value) == rpyc_brine.dump(value)
        assert brine.load(brine.dump(value)) == value
        rows.append(_round_trip_row(name, value, repeat))
    for name, value in BRINE_CASES[:2]:
        rows.extend(_one_way_rows(name, value, repeat))
    return rows


def _round_trip_row(name: str, value: Any, repeat: int) -> Row:
    return compare(f"brine dump+load: {name}", lambda: brine.load(brine.dump(value)),
                   lambda: rpyc_brine.load(rpyc_brine.dump(value)), repeat)


def _one_way_rows(name: str, value: Any, repeat: int) -> list[Row]:
    data = brine.dump(value)
    return [compare(f"  dump only: {name}", lambda: brine.dump(value),
                    lambda: rpyc_brine.dump(value), repeat),
            compare(f"  load only: {name}", lambda: brine.load(data),
                    lambda: rpyc_brine.load(data), repeat)]


def _framing_rows(repeat: int) -> list[Row]:
    # compressible, like most real payloads; rpyc compresses anything over 3000 bytes
    text = b"".join(b"line %d of a 16 MiB payload, " % i for i in range(700_000))[:16 * MiB]
    raw = os.urandom(16 * MiB)
    rows = []
    for name, payload, compress in (("16 MiB text, zlib as rpyc", text, True),
                                    ("16 MiB random, uncompressed", raw, False)):
        threshold = RPYC_COMPRESSION_THRESHOLD if compress else None

        def ours(payload: bytes = payload, threshold: int | None = threshold) -> bytes:
            decoder = FrameDecoder()
            for part in frame_parts([payload], threshold):
                decoder.feed(part)
            result = decoder.next_payload()
            assert result is not None
            return bytes(result)

        stream = _MemoryStream()
        channel = Channel(stream, compress=compress)

        def theirs(payload: bytes = payload, channel: Channel = channel,
                   stream: _MemoryStream = stream) -> bytes:
            channel.send(payload)
            stream.rewind()
            return channel.recv()

        assert ours() == payload and theirs() == payload
        rows.append(compare(f"framing send+receive: {name}", ours, theirs, repeat, target=0.2))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    repeat = 5 if args.quick else 15
    print(f"Python {sys.version.split()[0]}; medians of {repeat} batches; "
          "ratio = rpyc's time / ours (higher is better for rpyc_ipy)\n")
    print_rows(_brine_rows(repeat) + _framing_rows(max(3, repeat // 3)))


if __name__ == "__main__":
    main()
