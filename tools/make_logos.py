"""Draw the kernelspec logos (logo-32x32.png, logo-64x64.png): standard library only.

The glyph: a local node (blue, a prompt chevron) linked to a remote node (yellow),
drawn with 8x8 supersampling for smooth edges on a transparent background. The
output is deterministic, so the committed PNGs can be checked against this script::

    python tools/make_logos.py            # rewrites the committed copies
    python tools/make_logos.py --out DIR  # writes DIR/logo-32x32.png, DIR/logo-64x64.png
"""

from __future__ import annotations

import argparse
import math
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# the package copy (install copies it into each remote-kernel spec) and the static
# "Python 3 (rpyc_ipy)" spec that the wheel ships as shared data
TARGETS = (REPO / "rpyc_ipy" / "kernel" / "resources", REPO / "jupyter-data" / "kernels" /
           "rpyc_ipy")
SIZES = (32, 64)
SUBSAMPLES = 8

Color = tuple[int, int, int]
Shape = tuple[Callable[[float, float], bool], Color]

BLUE, BLUE_EDGE = (55, 118, 171), (34, 78, 118)
YELLOW, YELLOW_EDGE = (255, 212, 59), (196, 150, 12)
LINK, WHITE = (120, 134, 150), (255, 255, 255)
LOCAL, REMOTE = (0.27, 0.73), (0.73, 0.27)  # node centres, in units of the image side
RADIUS, EDGE = 0.23, 0.045


def _segment(ax: float, ay: float, bx: float, by: float, width: float
             ) -> Callable[[float, float], bool]:
    """A stroke from a to b with round caps."""
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy

    def inside(x: float, y: float) -> bool:
        t = max(0.0, min(1.0, ((x - ax) * dx + (y - ay) * dy) / length2))
        return math.hypot(x - ax - t * dx, y - ay - t * dy) <= width / 2
    return inside


def _disc(cx: float, cy: float, r: float) -> Callable[[float, float], bool]:
    return lambda x, y: math.hypot(x - cx, y - cy) <= r


def _shapes() -> list[Shape]:
    """Back to front."""
    (lx, ly), (rx, ry) = LOCAL, REMOTE
    chevron = 0.075  # half the height of the ">" in the local node
    return [
        (_segment(lx, ly, rx, ry, 0.085), LINK),
        (_disc(lx, ly, RADIUS), BLUE_EDGE),
        (_disc(lx, ly, RADIUS - EDGE), BLUE),
        (_segment(lx - 0.045, ly - chevron, lx + 0.04, ly, 0.05), WHITE),
        (_segment(lx + 0.04, ly, lx - 0.045, ly + chevron, 0.05), WHITE),
        (_disc(rx, ry, RADIUS), YELLOW_EDGE),
        (_disc(rx, ry, RADIUS - EDGE), YELLOW),
        (_disc(rx, ry, 0.06), YELLOW_EDGE),
    ]


def render(size: int) -> list[bytes]:
    """RGBA rows of the logo at ``size`` x ``size`` pixels."""
    shapes = _shapes()
    rows = []
    n = SUBSAMPLES
    for py in range(size):
        row = bytearray()
        for px in range(size):
            red = green = blue = covered = 0
            for sy in range(n):
                for sx in range(n):
                    x, y = (px + (sx + 0.5) / n) / size, (py + (sy + 0.5) / n) / size
                    color = next((c for inside, c in reversed(shapes) if inside(x, y)), None)
                    if color is not None:
                        red, green, blue = red + color[0], green + color[1], blue + color[2]
                        covered += 1
            if covered:  # straight (not premultiplied) alpha, as PNG wants
                row += bytes((round(red / covered), round(green / covered),
                              round(blue / covered), round(255 * covered / (n * n))))
            else:
                row += bytes(4)
        rows.append(bytes(row))
    return rows


def png(rows: list[bytes]) -> bytes:
    """An 8-bit RGBA PNG of ``rows`` (filter type 0 on every row)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    height, width = len(rows), len(rows[0]) // 4
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    raw = b"".join(b"\x00" + row for row in rows)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + \
        chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, action="append",
                        help="directory to write to (default: the committed copies)")
    args = parser.parse_args()
    images = {size: png(render(size)) for size in SIZES}
    for directory in args.out or TARGETS:
        directory.mkdir(parents=True, exist_ok=True)
        for size, data in images.items():
            path = directory / f"logo-{size}x{size}.png"
            path.write_bytes(data)
            print(f"wrote {path} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
