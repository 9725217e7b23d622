"""Every kernelspec rpyc_ipy installs has its logos (32 and 64 px PNG), so the launcher
shows them instead of a letter: the remote kernels installed by ``install`` and the
"Python 3 (rpyc_ipy)" spec of jupyter-data/; and they are what tools/make_logos.py draws."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from kernelkit import REPO, child_env

from rpyc_ipy.kernel.install import LOGOS

pytestmark = pytest.mark.timeout(60)

STATIC_SPEC = REPO / "jupyter-data" / "kernels" / "rpyc_ipy"
PACKAGE_COPY = REPO / "rpyc_ipy" / "kernel" / "resources"
SIZES = {"logo-32x32.png": 32, "logo-64x64.png": 64}


def decode_png(data: bytes) -> tuple[int, int, bytes]:
    """``(width, height, alpha channel)`` of an 8-bit RGBA PNG, checking every chunk's
    CRC and that the pixel data has exactly the size the header says."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    chunks: dict[bytes, bytes] = {}
    offset = 8
    for _ in range(64):  # a logo has a handful of chunks
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        body = data[offset + 8:offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length:offset + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, f"bad CRC in {kind!r}"
        chunks[kind] = chunks.get(kind, b"") + body
        offset += 12 + length
        if kind == b"IEND":
            break
    assert offset == len(data), "bytes after IEND"
    width, height, depth, color, _, _, _ = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, color) == (8, 6), "8-bit RGBA expected"
    raw = zlib.decompress(chunks[b"IDAT"])
    stride = 1 + 4 * width
    assert len(raw) == height * stride
    rows = [raw[y * stride:(y + 1) * stride] for y in range(height)]
    assert all(row[0] == 0 for row in rows), "rows use filter type 0"
    return width, height, b"".join(row[4::4] for row in rows)


def check_logos(directory: Path) -> None:
    assert set(LOGOS) == set(SIZES)
    for name, size in SIZES.items():
        width, height, alpha = decode_png((directory / name).read_bytes())
        assert (width, height) == (size, size), name
        opaque = sum(a == 255 for a in alpha)
        clear = sum(a == 0 for a in alpha)
        # a drawing on a transparent background, not an empty or a full square
        assert size * size // 5 < opaque < size * size * 4 // 5, (name, opaque)
        assert clear > size * size // 5, (name, clear)


def test_install_puts_both_logos_into_the_kernelspec(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "rpyc_ipy.kernel", "install", "--name",
                           "logo-check", "--host", "127.0.0.1", "--prefix", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, env=child_env(),
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    installed = tmp_path / "share" / "jupyter" / "kernels" / "logo-check"
    assert sorted(p.name for p in installed.iterdir()) == ["kernel.json", *sorted(SIZES)]
    check_logos(installed)


def test_the_static_kernelspec_has_the_same_logos() -> None:
    check_logos(STATIC_SPEC)
    for name in SIZES:
        assert (STATIC_SPEC / name).read_bytes() == (PACKAGE_COPY / name).read_bytes(), name


def test_the_committed_logos_are_what_the_script_draws(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(REPO / "tools" / "make_logos.py"), "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for name in SIZES:
        assert (tmp_path / name).read_bytes() == (PACKAGE_COPY / name).read_bytes(), \
            f"{name} differs from tools/make_logos.py's drawing: run the script again"
