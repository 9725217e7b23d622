"""The server side of file transfers (:mod:`rpyc_ipy.remote.files`) on real files in
tmp_path: where it may read and write, chunks in any order, checksums, modes, limits."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from rpyc_ipy.errors import ConfigError
from rpyc_ipy.remote import RuntimeSettings
from rpyc_ipy.remote.files import FileStore

REFUSED = r"outside the folders this server lets sessions use|'\.\.' is not allowed"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("secret")
    return tmp_path / "root"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_chunks_in_any_order_make_the_file_with_its_mode_and_time(root: Path) -> None:
    store = FileStore([str(root)])
    data = os.urandom(10_000)
    handle, offset, _ = store.open_write(str(root / "f.bin"), len(data))
    assert offset == 0
    # the third chunk first, then the second: they wait for the first
    assert store.write(handle, 6000, data[6000:]) == 0
    assert store.write(handle, 3000, data[3000:6000]) == 0
    assert store.write(handle, 0, data[:3000]) == len(data)
    assert store.finish(handle, sha(data), 0o4751, 1_500_000_000_123_456_789) == sha(data)
    target = root / "f.bin"
    assert target.read_bytes() == data
    assert target.stat().st_mode & 0o7777 == 0o751  # never setuid
    assert target.stat().st_mtime_ns == 1_500_000_000_123_456_789
    assert not (root / "f.bin.part").exists()


def test_a_wrong_checksum_deletes_the_partial_file(root: Path) -> None:
    store = FileStore([str(root)])
    handle, _, _ = store.open_write(str(root / "f.bin"), 3)
    store.write(handle, 0, b"abc")
    with pytest.raises(OSError, match="SHA-256 of what arrived differs"):
        store.finish(handle, sha(b"abd"), 0o644, 0)
    assert not (root / "f.bin").exists() and not (root / "f.bin.part").exists()


def test_resume_reports_the_prefix_and_its_checksum(root: Path) -> None:
    store = FileStore([str(root)])
    handle, _, _ = store.open_write(str(root / "f.bin"), 6)
    store.write(handle, 0, b"abc")
    assert store.abort(handle) == 3
    handle, offset, prefix = store.open_write(str(root / "f.bin"), 6, True)
    assert (offset, prefix) == (3, sha(b"abc"))
    store.write(handle, 3, b"def")
    store.finish(handle, sha(b"abcdef"), 0o600, 0)
    assert (root / "f.bin").read_bytes() == b"abcdef"


@pytest.mark.parametrize("path", [
    "{root}/../outside/secret",       # ..
    "{tmp}/outside/secret",           # absolute, outside the roots
    "{root}/link",                    # a symbolic link pointing out
    "{root}/linked_dir/secret",       # a symbolically linked parent
    "/etc/passwd",
])
def test_paths_outside_the_roots_are_refused(root: Path, path: str) -> None:
    tmp = root.parent
    (root / "link").symlink_to(tmp / "outside" / "secret")
    (root / "linked_dir").symlink_to(tmp / "outside")
    store = FileStore([str(root)])
    path = path.format(root=root, tmp=tmp)
    with pytest.raises(PermissionError, match=REFUSED):
        store.open_read(path)
    with pytest.raises(PermissionError, match=REFUSED):
        store.open_write(path, 1)
    with pytest.raises(PermissionError):
        store.checksum(path)
    assert (tmp / "outside" / "secret").read_text() == "secret"
    assert not (tmp / "outside" / "secret.part").exists()


def test_a_link_inside_the_roots_is_followed_and_a_fifo_refused(root: Path) -> None:
    (root / "real.txt").write_text("hello")
    (root / "alias").symlink_to(root / "real.txt")
    os.mkfifo(root / "pipe")
    store = FileStore([str(root)])
    handle, size, _, _ = store.open_read(str(root / "alias"))
    assert store.read(handle, 0, 100) == b"hello" and size == 5
    store.close(handle)
    with pytest.raises(PermissionError, match="not a regular file"):
        store.open_read(str(root / "pipe"))
    listing = {entry[0]: entry[1] for entry in store.listing(str(root))}
    assert listing == {"real.txt": "file", "alias": "file", "pipe": "skipped"}


def test_a_partial_file_that_is_a_link_is_not_followed(root: Path) -> None:
    (root / "f.bin.part").symlink_to(root.parent / "outside" / "secret")
    store = FileStore(None)
    with pytest.raises(PermissionError, match="symbolic link"):
        store.open_write(str(root / "f.bin"), 3, True)
    assert (root.parent / "outside" / "secret").read_text() == "secret"


# -- limits: each one step over ----------------------------------------------------------


def test_max_open(root: Path) -> None:
    store = FileStore([str(root)], max_open=2)
    for name in ("a", "b"):
        store.open_write(str(root / name), 1)
    with pytest.raises(OSError, match="2 transfers are open"):
        store.open_write(str(root / "c"), 1)


def test_max_chunk(root: Path) -> None:
    store = FileStore([str(root)], max_chunk=4)
    handle, _, _ = store.open_write(str(root / "a"), 10)
    store.write(handle, 0, b"1234")
    with pytest.raises(ValueError, match="at most 4"):
        store.write(handle, 4, b"12345")
    (root / "r").write_bytes(b"0123456789")
    reader, _, _, _ = store.open_read(str(root / "r"))
    with pytest.raises(ValueError, match="at most 4"):
        store.read(reader, 0, 5)


def test_max_pending(root: Path) -> None:
    store = FileStore([str(root)], max_pending=4)
    handle, _, _ = store.open_write(str(root / "a"), 20)
    store.write(handle, 10, b"1234")
    with pytest.raises(OSError, match="more than 4 bytes arrived ahead"):
        store.write(handle, 14, b"5")


def test_max_entries(root: Path) -> None:
    for i in range(4):
        (root / f"f{i}").write_text("x")
    assert len(FileStore([str(root)], max_entries=4).listing(str(root))) == 4
    with pytest.raises(OSError, match="more than 3 entries"):
        FileStore([str(root)], max_entries=3).listing(str(root))


# -- where the roots come from ---------------------------------------------------------------


def test_roots_are_a_server_setting(tmp_path: Path) -> None:
    assert RuntimeSettings().file_roots == ()
    assert RuntimeSettings(file_roots=(str(tmp_path),)).file_roots == (str(tmp_path),)
    with pytest.raises(ConfigError, match="absolute folder paths"):
        RuntimeSettings(file_roots=("relative/path",))


def test_a_stopped_write_keeps_only_the_prefix_before_a_gap(root: Path) -> None:
    store = FileStore([str(root)])
    handle, _, _ = store.open_write(str(root / "f.bin"), 9)
    store.write(handle, 0, b"abc")
    store.write(handle, 6, b"ghi")  # written at its offset, not hashed: a gap before it
    assert store.abort(handle) == 3
    assert (root / "f.bin.part").read_bytes() == b"abc"
    with pytest.raises(ValueError, match="no open transfer"):
        store.write(handle, 3, b"def")
    handle, offset, prefix = store.open_write(str(root / "f.bin"), 9, True)
    assert (offset, prefix) == (3, sha(b"abc"))
