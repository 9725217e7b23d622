"""Files and folders up and down: real servers on 127.0.0.1, real session workers,
real files in tmp_path (the ``files`` server may only use ``DIR/root``)."""

from __future__ import annotations

import _thread
import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ipy_rig import connect, run
from ipy_servers import ServerProcess, spawn
from IPython.core.interactiveshell import InteractiveShell
from test_error_lines import assert_no_internals

import rpyc_ipy
from rpyc_ipy.core.service import Service
from rpyc_ipy.ipython.execution import CellInterrupted
from rpyc_ipy.ipython.session import RemoteSession, SessionError, open_session
from rpyc_ipy.ipython.transfer import TransferError, download
from rpyc_ipy.remote.files import FileStore
from rpyc_ipy.target import ConnectionTarget

MiB = 1 << 20
REFUSED = r"outside the folders this server lets sessions use|'\.\.' is not allowed"


@pytest.fixture(scope="module")
def files_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("files")
    (folder / "root").mkdir()
    (folder / "outside").mkdir()
    (folder / "outside" / "secret").write_text("secret")
    return folder


@pytest.fixture(scope="module")
def files_server(files_dir: Path) -> Iterator[ServerProcess]:
    server = spawn("files", files_dir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def session(files_server: ServerProcess) -> Iterator[RemoteSession]:
    sess = open_session(ConnectionTarget("127.0.0.1", files_server.port, session_name="f"))
    try:
        yield sess
    finally:
        sess.end()


def sha_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while block := source.read(4 * MiB):
            digest.update(block)
    return digest.hexdigest()


def make_file(path: Path, size: int) -> Path:
    block = os.urandom(MiB)
    with open(path, "wb") as sink:
        for _ in range(size // MiB):
            sink.write(block[: MiB - 1] + os.urandom(1))  # every MiB differs
        sink.write(os.urandom(size % MiB))
    return path


def make_tree(top: Path) -> dict[str, tuple[bytes, int, int]]:
    """A small tree with modes and times; returns {relative name: (data, mode, mtime_ns)}."""
    spec = {"a.txt": (b"alpha", 0o640), "sub/b.bin": (os.urandom(5000), 0o600),
            "sub/deeper/c.sh": (b"#!/bin/sh\n", 0o750), "empty": (b"", 0o644)}
    out = {}
    for i, (rel, (data, mode)) in enumerate(spec.items()):
        path = top / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)
        mtime = 1_600_000_000_000_000_000 + i * 1_000_000_007
        os.utime(path, ns=(mtime, mtime))
        out[rel] = (data, mode, mtime)
    os.utime(top / "sub", ns=(1_500_000_000_000_000_000,) * 2)
    return out


def assert_tree(top: Path, spec: dict[str, tuple[bytes, int, int]]) -> None:
    for rel, (data, mode, mtime) in spec.items():
        st = (top / rel).stat()
        assert (top / rel).read_bytes() == data, rel
        assert (st.st_mode & 0o777, st.st_mtime_ns) == (mode, mtime), rel
    assert (top / "sub").stat().st_mtime_ns == 1_500_000_000_000_000_000
    assert not list(top.rglob("*.part"))


# -- round trips ----------------------------------------------------------------------------


def test_a_file_and_a_tree_round_trip(session: RemoteSession, files_dir: Path,
                                      tmp_path: Path) -> None:
    local = make_file(tmp_path / "one.bin", 3 * MiB + 17)
    os.chmod(local, 0o604)
    os.utime(local, ns=(1_234_567_890_123_456_789,) * 2)
    remote = files_dir / "root" / "one.bin"
    result = session.upload(str(local), str(remote))
    assert result.sha256 == sha_of(local) == sha_of(remote)
    assert (remote.stat().st_mode & 0o777, remote.stat().st_mtime_ns) == \
        (0o604, 1_234_567_890_123_456_789)
    back = session.download(str(remote), str(tmp_path / "back.bin"))
    assert back.sha256 == sha_of(tmp_path / "back.bin") == result.sha256
    assert (tmp_path / "back.bin").stat().st_mtime_ns == 1_234_567_890_123_456_789

    spec = make_tree(tmp_path / "tree")
    (tmp_path / "tree" / "out").symlink_to(files_dir / "outside" / "secret")
    up = session.upload(str(tmp_path / "tree"), str(files_dir / "root") + "/")
    assert (up.files, up.destination) == (4, str(files_dir / "root" / "tree"))
    assert up.skipped == [f"out: a link out of {str(tmp_path / 'tree')!r}, or to a folder"]
    assert_tree(files_dir / "root" / "tree", spec)
    down = session.download(str(files_dir / "root" / "tree"), str(tmp_path / "copy"))
    assert down.files == 4 and down.size == sum(len(d) for d, _, _ in spec.values())
    assert_tree(tmp_path / "copy", spec)


@pytest.mark.timeout(300)
def test_200_mib_both_ways_with_checksums(session: RemoteSession, files_dir: Path,
                                          tmp_path: Path) -> None:
    local = make_file(tmp_path / "big.bin", 200 * MiB)
    remote = files_dir / "root" / "big.bin"
    seen: list[tuple[int, int]] = []
    try:
        up = session.upload(str(local), str(remote), on_progress=lambda d, t: seen.append((d, t)))
        assert up.sha256 == sha_of(local) == sha_of(remote)
        assert seen[-1] == (200 * MiB, 200 * MiB) and len(seen) >= 50  # 4 MiB chunks
        local.unlink()
        down = session.download(str(remote), str(local))
        assert down.sha256 == up.sha256 == sha_of(local)
    finally:
        remote.unlink(missing_ok=True)


# -- stop, then resume ----------------------------------------------------------------------


class StopAfter:
    """An ``on_progress`` that stops the transfer (as the stop button does) at its
    call number ``chunks`` (the first call, with nothing done yet, shows the total)."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        self.calls = 0

    def __call__(self, done: int, total: int) -> None:
        self.calls += 1
        if self.calls >= self.chunks:
            raise KeyboardInterrupt


def test_an_interrupted_upload_resumes_with_only_the_rest(session: RemoteSession,
                                                          files_dir: Path,
                                                          tmp_path: Path) -> None:
    size = 24 * MiB + 5
    local = make_file(tmp_path / "r.bin", size)
    remote = files_dir / "root" / "r.bin"
    with pytest.raises(KeyboardInterrupt):
        session.upload(str(local), str(remote), on_progress=StopAfter(5), chunk_size=MiB,
                       window=2)
    part = Path(str(remote) + ".part")
    kept = part.stat().st_size
    assert not remote.exists() and kept == 4 * MiB  # the chunks sent before the stop
    result = session.upload(str(local), str(remote), resume=True, chunk_size=MiB)
    assert result.moved == size - kept  # only the rest was sent
    assert result.sha256 == sha_of(local) == sha_of(remote) and not part.exists()
    again = session.upload(str(local), str(remote), resume=True)
    assert again.moved == 0 and again.sha256 == result.sha256  # already there, verified


def test_the_stop_button_mid_transfer_leaves_the_session_usable(session: RemoteSession,
                                                                files_dir: Path,
                                                                tmp_path: Path) -> None:
    """A real interrupt of the main thread (what the stop button sends a kernel), from
    another thread, while the transfer runs: it lands where no socket is read."""
    local = make_file(tmp_path / "i.bin", 16 * MiB)
    remote = files_dir / "root" / "i.bin"
    calls = 0

    def press_stop(done: int, total: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            threading.Thread(target=_thread.interrupt_main).start()

    with pytest.raises(KeyboardInterrupt):
        session.upload(str(local), str(remote), on_progress=press_stop, chunk_size=MiB)
    kept = Path(str(remote) + ".part").stat().st_size
    assert 0 < kept < 16 * MiB
    assert session.execute("6 * 7").data["text/plain"] == "42"  # the connection is intact
    result = session.upload(str(local), str(remote), resume=True, chunk_size=MiB)
    assert result.moved == 16 * MiB - kept and sha_of(remote) == sha_of(local)


def test_a_resume_whose_prefix_differs_starts_over(session: RemoteSession, files_dir: Path,
                                                   tmp_path: Path) -> None:
    local = make_file(tmp_path / "p.bin", 3 * MiB)
    remote = files_dir / "root" / "p.bin"
    Path(str(remote) + ".part").write_bytes(b"not the same bytes")
    result = session.upload(str(local), str(remote), resume=True)
    assert result.moved == 3 * MiB and sha_of(remote) == sha_of(local)


def test_an_interrupted_download_resumes_with_only_the_rest(session: RemoteSession,
                                                            files_dir: Path,
                                                            tmp_path: Path) -> None:
    remote = make_file(files_dir / "root" / "d.bin", 12 * MiB + 3)
    local = tmp_path / "d.bin"
    with pytest.raises(KeyboardInterrupt):
        session.download(str(remote), str(local), on_progress=StopAfter(4), chunk_size=MiB)
    kept = Path(str(local) + ".part").stat().st_size
    assert kept == 3 * MiB and not local.exists()
    result = session.download(str(remote), str(local), resume=True, chunk_size=MiB)
    assert result.moved == remote.stat().st_size - kept
    assert sha_of(local) == sha_of(remote) and not Path(str(local) + ".part").exists()


# -- where a session may go ---------------------------------------------------------------------


@pytest.mark.parametrize("where", ["../outside/secret", "{dir}/outside/secret", "link",
                                   "linked_dir/secret", "/etc/passwd"])
def test_the_server_refuses_paths_outside_its_roots(session: RemoteSession, files_dir: Path,
                                                    tmp_path: Path, where: str) -> None:
    root = files_dir / "root"
    for name, target in (("link", files_dir / "outside" / "secret"),
                         ("linked_dir", files_dir / "outside")):
        if not (root / name).is_symlink():
            (root / name).symlink_to(target)
    path = where.format(dir=files_dir) if where.startswith("{") else \
        where if where.startswith("/") else f"{root}/{where}"
    local = tmp_path / "mine.txt"
    local.write_text("overwrite?")
    with pytest.raises(TransferError, match=REFUSED) as refused:
        session.upload(str(local), path)
    assert "--file-root" in str(refused.value) or ".." in str(refused.value)
    with pytest.raises(TransferError, match=REFUSED):
        session.download(path, str(tmp_path / "stolen"))
    assert (files_dir / "outside" / "secret").read_text() == "secret"
    assert sorted(p.name for p in (files_dir / "outside").iterdir()) == ["secret"]
    assert not (tmp_path / "stolen").exists()


class HostileStore(FileStore):
    """A server's file store that names entries so they would land outside the local
    folder (what a malicious server could send)."""

    names: tuple[str, ...] = ()

    def stat(self, path: str) -> tuple[str, int, int, int]:
        return ("dir", 0, 0o755, 0)

    def listing(self, path: str) -> tuple[tuple[str, str, int, int, int], ...]:
        return tuple((name, "file", 1, 0o644, 0) for name in self.names)


@contextlib.contextmanager
def served(store: FileStore) -> Iterator[Any]:
    """``store`` served by a real server on 127.0.0.1; yields the client's netref to it."""

    class Files(Service):
        def exposed_files(self) -> FileStore:
            return store

    server = rpyc_ipy.ThreadedServer(Files, hostname="127.0.0.1", port=0,
                                     protocol_config={"allow_public_attrs": True})
    thread = threading.Thread(target=server.start, daemon=True)
    thread.start()
    try:
        with rpyc_ipy.connect("127.0.0.1", server.port) as conn:
            yield conn.root.files()
    finally:
        server.close()
        thread.join(timeout=10)


@pytest.mark.parametrize("name", ["../escaped", "/tmp/escaped", "sub/../../escaped", "",
                                  "a//b", "./x"])
def test_the_client_refuses_hostile_names_in_a_remote_listing(tmp_path: Path,
                                                              name: str) -> None:
    store = HostileStore(None)
    store.names = (name,)
    (tmp_path / "local").mkdir()
    with served(store) as remote, \
            pytest.raises(TransferError, match="would land outside the local folder"):
        download(remote, "anything", str(tmp_path / "local" / "dest"))
    assert [p.name for p in tmp_path.iterdir()] == ["local"]
    assert list((tmp_path / "local").iterdir()) == []  # nothing written, not even the top


class Flooding(FileStore):
    """A server's file store that answers a read with far more than was asked."""

    def stat(self, path: str) -> tuple[str, int, int, int]:
        return ("file", 10, 0o644, 0)

    def open_read(self, path: str) -> tuple[int, int, int, int]:
        return (1, 10, 0o644, 0)

    def read(self, handle: int, offset: int, size: int) -> bytes:
        return b"x" * (1 << 20)

    def close(self, handle: int) -> None:
        pass


def test_the_client_refuses_more_bytes_than_it_asked_for(tmp_path: Path) -> None:
    with served(Flooding(None)) as remote, \
            pytest.raises(TransferError, match="more of 'f' than was asked for"):
        download(remote, "f", str(tmp_path / "f"))
    assert not (tmp_path / "f").exists()
    assert (tmp_path / "f.part").stat().st_size == 0


def test_a_planted_local_link_is_not_followed_out(session: RemoteSession, files_dir: Path,
                                                  tmp_path: Path) -> None:
    make_tree(files_dir / "root" / "planted")
    dest = tmp_path / "dest"
    (dest / "planted").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (dest / "planted" / "sub").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(TransferError, match="symbolic link"):
        session.download(str(files_dir / "root" / "planted"), str(dest) + "/")
    assert list((tmp_path / "elsewhere").iterdir()) == []


# -- classic servers ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["classic", "rpyc-classic"])
def test_classic_servers_move_files_through_the_shipped_engine(kind: str, tmp_path: Path
                                                               ) -> None:
    server = spawn(kind, tmp_path)
    try:
        sess = open_session(ConnectionTarget("127.0.0.1", server.port, classic=True))
        try:
            local = make_file(tmp_path / "c.bin", MiB + 1)
            result = sess.upload(str(local), str(tmp_path / "there.bin"))
            assert result.sha256 == sha_of(tmp_path / "there.bin") == sha_of(local)
            spec = make_tree(tmp_path / "tree")
            sess.download(str(tmp_path / "tree"), str(tmp_path / "tree2"))
            assert_tree(tmp_path / "tree2", spec)
        finally:
            sess.close()
    finally:
        server.stop()


# -- the magics ---------------------------------------------------------------------------------


def test_the_magics_move_files_and_report_in_one_line(ip: InteractiveShell,
                                                      files_server: ServerProcess,
                                                      files_dir: Path, tmp_path: Path) -> None:
    connect(ip, "m", files_server)
    local = make_file(tmp_path / "my file.bin", MiB)
    remote = files_dir / "root" / "magic.bin"
    result, captured = run(ip, f'%rpyc_upload -s m "{local}" {remote}')
    assert result.success, captured.stdout + captured.stderr
    assert f"uploaded 1 file (1.0 MiB) to {remote} on m, SHA-256 verified" in captured.stdout
    result, captured = run(ip, f"%rpyc_download {remote} {tmp_path}/")
    assert result.success
    assert sha_of(tmp_path / "magic.bin") == sha_of(local)
    assert "downloaded 1 file (1.0 MiB)" in captured.stdout


@pytest.mark.parametrize("line,expected", [
    ("%rpyc_upload -s m {tmp}/missing.bin {root}/x", "cannot upload"),
    ("%rpyc_upload -s m {tmp}/real.txt /etc/x", "outside the folders this server lets"),
    ("%rpyc_download -s m {root}/nothing-here {tmp}/y", "no such file or folder"),
    ("%rpyc_download -s m {root}/../outside/secret {tmp}/y", "'..' is not allowed"),
])
def test_the_magics_errors_are_one_line(ip: InteractiveShell, files_server: ServerProcess,
                                        files_dir: Path, tmp_path: Path, line: str,
                                        expected: str) -> None:
    connect(ip, "m", files_server)
    (tmp_path / "real.txt").write_text("x")
    result, captured = run(ip, line.format(tmp=tmp_path, root=files_dir / "root"))
    assert isinstance(result.error_in_exec, TransferError)
    text = assert_no_internals(captured)
    assert expected in text and len(text.strip().splitlines()) == 1


def test_a_closed_session_and_a_stop_are_one_line(ip: InteractiveShell,
                                                  files_server: ServerProcess,
                                                  files_dir: Path, tmp_path: Path) -> None:
    session = connect(ip, "m", files_server)
    (tmp_path / "real.txt").write_text("x")
    session.close()
    result, captured = run(ip, f"%rpyc_upload -s m {tmp_path}/real.txt {files_dir}/root/z")
    assert isinstance(result.error_in_exec, SessionError)
    text = assert_no_internals(captured)
    assert "session 'm' is closed" in text and len(text.strip().splitlines()) == 1


def test_the_stop_button_keeps_the_partial_file(ip: InteractiveShell,
                                                files_server: ServerProcess,
                                                files_dir: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from rpyc_ipy.ipython import magics

    session = connect(ip, "m", files_server)
    local = make_file(tmp_path / "s.bin", 8 * MiB)

    class StoppingProgress(magics.Progress):
        """The real bar, whose stop button is pressed after the second chunk."""

        def update(self, done: int, total: int | None = None) -> None:
            super().update(done, total)
            if done >= 2 * MiB:
                raise KeyboardInterrupt

        __call__ = update

    monkeypatch.setattr(magics, "Progress", StoppingProgress)
    result, captured = run(ip, f"%rpyc_upload -s m {local} {files_dir}/root/s.bin")
    assert isinstance(result.error_in_exec, CellInterrupted)
    text = assert_no_internals(captured)
    assert "upload stopped; the partial file is kept: the same line with --resume" in text
    assert Path(f"{files_dir}/root/s.bin.part").exists()
    monkeypatch.undo()
    result, captured = run(ip, f"%rpyc_upload -s m --resume {local} {files_dir}/root/s.bin")
    assert result.success and "sent this time" in captured.stdout
    assert sha_of(files_dir / "root" / "s.bin") == sha_of(local)
    assert session.name == "m"
