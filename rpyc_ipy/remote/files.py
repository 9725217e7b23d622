"""The server side of file transfers: chunked reads and writes inside the allowed folders.

A session's engine owns one :class:`FileStore`; the notebook client
(:mod:`rpyc_ipy.ipython.transfer`) drives it, many requests in flight at once::

    store = FileStore(roots=("/srv/data", "~"))
    handle, offset, prefix_sha = store.open_write("~/x.bin", size, resume=False)
    store.write(handle, 0, chunk0); store.write(handle, len(chunk0), chunk1)   # any order
    store.finish(handle, sha256_hex, 0o644, mtime_ns)  # verified, then renamed into place

Where a session may read and write: inside ``roots`` (``None``: anywhere, what a
classic server grants anyway). Every path is resolved with ``realpath`` before it
is checked, so ``..``, a symbolic link pointing out and a symbolically linked parent
all end outside and are refused; ``..`` in a path is refused outright, and files
are opened with ``O_NOFOLLOW`` so a link swapped in after the check is not followed.
Only regular files move: devices, FIFOs and sockets are refused.

A write goes to ``NAME.part`` (kept when a transfer stops, continued by
``resume``), each chunk at its offset as soon as it arrives: requests run
concurrently, so chunks may land out of order and the disk write of one overlaps
the hashing of another. The SHA-256 takes them in order (those that arrived ahead
of a gap wait for it, up to ``max_pending`` bytes), is compared with the sender's
at the end, and only then is the file renamed into place with its mode
(``& 0o777``: never setuid) and modification time. A stopped write is cut back to
the bytes hashed in order, so its ``.part`` file is always a prefix to resume from.

Pure standard library: also shipped by source to classic peers.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import stat
import threading
from typing import Any

__all__ = ["DEFAULT_MAX_ENTRIES", "MAX_CHUNK", "FileStore", "default_roots"]

#: most entries a tree listing returns
DEFAULT_MAX_ENTRIES = 100_000
#: largest chunk a single write or read may carry (by default)
MAX_CHUNK = 16 << 20
_PART = ".part"
_HASH_BLOCK = 4 << 20
#: seconds a stop or finish waits for the chunks being written to land
_SETTLE_TIMEOUT = 60.0


def default_roots() -> tuple[str, ...]:
    """The working directory and the home folder of the account this process runs as."""
    import pwd

    home = pwd.getpwuid(os.getuid()).pw_dir
    return tuple(dict.fromkeys((os.getcwd(), home)))


class _Writer:
    """One file being written: its ``.part`` descriptor, hash and out-of-order chunks."""

    def __init__(self, final: str, fd: int, offset: int, hasher: Any, size: int) -> None:
        self.final = final
        self.fd = fd
        self.offset = offset  # bytes written in order (and hashed)
        self.hasher = hasher
        self.size = size
        self.pending: dict[int, bytes] = {}  # written, waiting for the hash
        self.pending_bytes = 0
        self.writing: set[int] = set()  # offsets being written now
        self.closed = False
        self.lock = threading.Condition()

    def settle(self) -> None:
        """Wait (holding ``lock``) until no chunk is being written, then refuse more:
        the descriptor may then be closed."""
        self.closed = True
        self.lock.wait_for(lambda: not self.writing, timeout=_SETTLE_TIMEOUT)


class _Reader:
    """One file being read: its descriptor and the hash of what was read in order."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self.hasher = hashlib.sha256()
        self.hashed = 0
        self.lock = threading.Lock()


class FileStore:
    """Reads and writes files for one session; see the module docstring.

    Limits, each refused with a clear error past it: ``max_open`` transfers open at
    once; ``max_chunk`` bytes per write or read; ``max_pending`` bytes of chunks that
    arrived ahead of a gap, per file; ``max_entries`` in a folder listing.
    """

    def __init__(self, roots: Any = None, *, max_open: int = 16, max_chunk: int = MAX_CHUNK,
                 max_pending: int = 64 << 20, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if roots is None:
            self._roots: tuple[str, ...] | None = None
        else:
            self._roots = tuple(os.path.realpath(os.path.expanduser(str(r))) for r in roots)
        self._max_open = max_open
        self._max_pending = max_pending
        self._max_chunk = max_chunk
        self._max_entries = max_entries
        self._handles: dict[int, _Writer | _Reader] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def roots(self) -> tuple[str, ...] | None:
        """The folders this store may use (``None``: any)."""
        return self._roots

    # -- paths -------------------------------------------------------------------------

    def _resolve(self, path: Any) -> str:
        """The real path of ``path`` if it is inside the roots; ``PermissionError`` if not."""
        if type(path) is not str or not path or "\0" in path:
            raise ValueError(f"{path!r} is not a path")
        expanded = os.path.expanduser(path)
        if ".." in expanded.split(os.sep):
            raise PermissionError(f"{path!r}: '..' is not allowed in transfer paths; "
                                  "give the path without it")
        real = os.path.realpath(os.path.join(os.getcwd(), expanded))
        if self._roots is not None and not any(_inside(real, root) for root in self._roots):
            where = " or ".join(self._roots) or "none"
            raise PermissionError(f"{path!r} is outside the folders this server lets sessions "
                                  f"use: {where}; ask its operator to add a root with "
                                  "--file-root")
        return real

    def stat(self, path: str) -> tuple[str, int, int, int]:
        """``(kind, size, mode, mtime_ns)`` of ``path``; kind is ``"file"``, ``"dir"``,
        ``"missing"`` or ``"other"`` (a device, FIFO, socket)."""
        real = self._resolve(path)
        try:
            st = os.stat(real)
        except FileNotFoundError:
            return ("missing", 0, 0, 0)
        return (_kind(st.st_mode), st.st_size, st.st_mode & 0o777, st.st_mtime_ns)

    def listing(self, path: str) -> tuple[tuple[str, str, int, int, int], ...]:
        """Every entry of the tree at ``path``: ``(relative name, kind, size, mode,
        mtime_ns)``, names with ``/``, parents before children. A symbolic link to a
        file inside the roots is listed as that file; other links are listed as
        ``"skipped"``, and so are devices, FIFOs and sockets."""
        top = self._resolve(path)
        if not os.path.isdir(top):
            raise NotADirectoryError(f"{path!r} is not a folder on the server")
        out: list[tuple[str, str, int, int, int]] = []
        for folder, dirs, files in os.walk(top, followlinks=False):
            rel_folder = os.path.relpath(folder, top)
            for name in sorted(dirs) + sorted(files):
                full = os.path.join(folder, name)
                rel = name if rel_folder == "." else f"{rel_folder}/{name}"
                out.append((rel, *self._entry(full)))
                if len(out) > self._max_entries:
                    raise OSError(f"{path!r} holds more than {self._max_entries} entries; "
                                  "move a part of it at a time")
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
        return tuple(out)

    def _entry(self, full: str) -> tuple[str, int, int, int]:
        st = os.lstat(full)
        if stat.S_ISLNK(st.st_mode):
            real = os.path.realpath(full)
            inside = self._roots is None or any(_inside(real, r) for r in self._roots)
            try:
                target = os.stat(real)
            except OSError:
                return ("skipped", 0, 0, 0)
            if not inside or not stat.S_ISREG(target.st_mode):
                return ("skipped", 0, 0, 0)
            st = target
        kind = _kind(st.st_mode)
        return (kind if kind in ("file", "dir") else "skipped", st.st_size,
                st.st_mode & 0o777, st.st_mtime_ns)

    def makedirs(self, path: str) -> None:
        """Create the folder ``path`` (and its parents) inside the roots."""
        real = self._resolve(path)
        os.makedirs(real, mode=0o700, exist_ok=True)

    def set_times(self, path: str, mode: int, mtime_ns: int) -> None:
        """Set a folder's or file's mode (``& 0o777``) and modification time."""
        real = self._resolve(path)
        os.chmod(real, int(mode) & 0o777, follow_symlinks=False)
        os.utime(real, ns=(int(mtime_ns), int(mtime_ns)), follow_symlinks=False)

    def checksum(self, path: str) -> tuple[int, str]:
        """``(size, SHA-256 hex)`` of a regular file, ``(-1, "")`` if it does not exist."""
        real = self._resolve(path)
        try:
            fd = _open_regular(real, os.O_RDONLY, path)
        except FileNotFoundError:
            return (-1, "")
        try:
            size = os.fstat(fd).st_size
            return (size, _hash_fd(fd, 0, size, hashlib.sha256()).hexdigest())
        finally:
            os.close(fd)

    # -- writing -----------------------------------------------------------------------

    def open_write(self, path: str, size: int, resume: bool = False
                   ) -> tuple[int, int, str]:
        """Start writing ``path`` (``size`` bytes) through ``path.part``; returns
        ``(handle, offset, prefix_sha256)``: with ``resume``, the bytes already in the
        ``.part`` file and their SHA-256 (the sender checks them against its own)."""
        real = self._resolve(path)
        if type(size) is not int or size < 0:
            raise ValueError("size must be a whole number of bytes")
        if os.path.isdir(real):
            raise IsADirectoryError(f"{path!r} is a folder on the server")
        if os.path.lexists(real) and not stat.S_ISREG(os.lstat(real).st_mode):
            raise PermissionError(f"{path!r} exists and is not a regular file")
        part = real + _PART
        flags = os.O_RDWR | os.O_CREAT | (0 if resume else os.O_TRUNC)
        fd = _open_regular(part, flags, path + _PART)
        try:
            offset = os.fstat(fd).st_size if resume else 0
            if offset > size:
                os.ftruncate(fd, 0)
                offset = 0
            hasher = _hash_fd(fd, 0, offset, hashlib.sha256()) if offset else hashlib.sha256()
            prefix = hasher.hexdigest()
            if offset:
                os.ftruncate(fd, offset)
            return (self._add(_Writer(real, fd, offset, hasher, size)), offset, prefix)
        except BaseException:
            os.close(fd)
            raise

    def restart(self, handle: int) -> None:
        """Empty the ``.part`` file of a write (its prefix did not match the sender's)."""
        writer = self._get(handle, _Writer)
        with writer.lock:
            if writer.writing or writer.pending:
                raise ValueError("restart a transfer before its first chunk")
            os.ftruncate(writer.fd, 0)
            writer.offset = 0
            writer.hasher = hashlib.sha256()
            writer.pending.clear()
            writer.pending_bytes = 0

    def write(self, handle: int, offset: int, data: bytes) -> int:
        """Write ``data`` at ``offset``; returns the bytes hashed in order so far.

        Chunks land at their offsets at once, several at a time (the disk write of
        one overlaps the hashing of another); the hash takes them in order, keeping
        those that arrived ahead of a gap."""
        writer = self._get(handle, _Writer)
        if type(data) is not bytes or len(data) > self._max_chunk:
            raise ValueError(f"a chunk is bytes, at most {self._max_chunk} of them; send "
                             "smaller chunks")
        if type(offset) is not int or offset < 0 or offset + len(data) > writer.size:
            raise ValueError(f"a chunk at {offset} does not fit a {writer.size}-byte file")
        with writer.lock:
            if writer.closed:
                raise ValueError("the transfer was stopped or finished")
            if offset < writer.offset or offset in writer.pending or offset in writer.writing:
                raise ValueError(f"the chunk at {offset} was already written")
            if offset > writer.offset and \
                    writer.pending_bytes + len(data) > self._max_pending:
                raise OSError(f"more than {self._max_pending} bytes arrived ahead of a "
                              "missing chunk; send fewer chunks at once")
            writer.writing.add(offset)
            writer.pending_bytes += len(data)
        try:
            _write_all(writer.fd, data, offset)
        except BaseException:  # a gap stays there: finish says what is missing
            with writer.lock:
                writer.writing.discard(offset)
                writer.pending_bytes -= len(data)
                writer.lock.notify_all()
            raise
        with writer.lock:
            writer.writing.discard(offset)
            writer.pending[offset] = data
            chunk = writer.pending.pop(writer.offset, None)
            while chunk is not None:
                writer.pending_bytes -= len(chunk)
                writer.hasher.update(chunk)
                writer.offset += len(chunk)
                chunk = writer.pending.pop(writer.offset, None)
            writer.lock.notify_all()
        return writer.offset

    def finish(self, handle: int, sha256: str, mode: int, mtime_ns: int) -> str:
        """Check the written file against the sender's SHA-256, then rename it into place
        with ``mode`` (``& 0o777``) and ``mtime_ns``; returns the SHA-256 here. A
        mismatch deletes the ``.part`` file and raises ``OSError``."""
        writer = self._pop(handle, _Writer)
        part = writer.final + _PART
        try:
            with writer.lock:
                writer.settle()
            got = writer.hasher.hexdigest()
            if writer.offset != writer.size or writer.pending:
                os.ftruncate(writer.fd, writer.offset)
                raise OSError(f"{os.path.basename(writer.final)!r}: {writer.offset} of "
                              f"{writer.size} bytes arrived; send it again with resume")
            if got != sha256:
                os.unlink(part)
                raise OSError(f"{os.path.basename(writer.final)!r}: the SHA-256 of what "
                              "arrived differs from the sender's; the partial file was "
                              "deleted, send it again")
            os.fchmod(writer.fd, int(mode) & 0o777)
            os.utime(writer.fd, ns=(int(mtime_ns), int(mtime_ns)))
        finally:
            os.close(writer.fd)
        os.replace(part, writer.final)
        return got

    def abort(self, handle: int) -> int:
        """Stop a write, keeping the ``.part`` file for ``resume``; returns its size."""
        writer = self._pop(handle, _Writer)
        with writer.lock:
            writer.settle()
            try:  # chunks past a gap were written but not hashed: a resume sends them again
                os.ftruncate(writer.fd, writer.offset)
            finally:
                os.close(writer.fd)
            return writer.offset

    # -- reading -----------------------------------------------------------------------

    def open_read(self, path: str) -> tuple[int, int, int, int]:
        """Start reading the regular file ``path``: ``(handle, size, mode, mtime_ns)``."""
        real = self._resolve(path)
        fd = _open_regular(real, os.O_RDONLY, path)
        try:
            st = os.fstat(fd)
            return (self._add(_Reader(fd, st.st_size)), st.st_size, st.st_mode & 0o777,
                    st.st_mtime_ns)
        except BaseException:
            os.close(fd)
            raise

    def read(self, handle: int, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset``."""
        reader = self._get(handle, _Reader)
        if type(size) is not int or not 0 < size <= self._max_chunk or \
                type(offset) is not int or offset < 0:
            raise ValueError(f"read at most {self._max_chunk} bytes at a time, at a "
                             "non-negative offset")
        data = os.pread(reader.fd, size, offset)
        with reader.lock:
            if offset == reader.hashed:  # in order: hash now rather than read twice
                reader.hasher.update(data)
                reader.hashed += len(data)
        return data

    def digest(self, handle: int, upto: int) -> str:
        """SHA-256 hex of the first ``upto`` bytes of a file being read."""
        reader = self._get(handle, _Reader)
        with reader.lock:
            if upto >= reader.hashed:
                _hash_fd(reader.fd, reader.hashed, upto - reader.hashed, reader.hasher)
                reader.hashed = upto
                return reader.hasher.hexdigest()
        return _hash_fd(reader.fd, 0, upto, hashlib.sha256()).hexdigest()

    def close(self, handle: int) -> None:
        """End a read."""
        os.close(self._pop(handle, _Reader).fd)

    def close_all(self) -> None:
        """End every transfer (the session ends); ``.part`` files stay for ``resume``."""
        with self._lock:
            handles, self._handles = list(self._handles.values()), {}
        for item in handles:
            if isinstance(item, _Writer):
                with item.lock:
                    item.settle()
            os.close(item.fd)

    # -- handles -----------------------------------------------------------------------

    def _add(self, item: _Writer | _Reader) -> int:
        with self._lock:
            if len(self._handles) >= self._max_open:
                raise OSError(f"{self._max_open} transfers are open in this session; finish "
                              "one first")
            handle = next(self._ids)
            self._handles[handle] = item
            return handle

    def _get(self, handle: Any, kind: type) -> Any:
        with self._lock:
            item = self._handles.get(handle)
        if not isinstance(item, kind):
            raise ValueError(f"no open transfer {handle!r} (it finished or was stopped)")
        return item

    def _pop(self, handle: Any, kind: type) -> Any:
        with self._lock:
            item = self._handles.get(handle)
            if not isinstance(item, kind):
                raise ValueError(f"no open transfer {handle!r} (it finished or was stopped)")
            del self._handles[handle]
        return item


def _inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    return "dir" if stat.S_ISDIR(mode) else "other"


def _open_regular(path: str, flags: int, shown: str) -> int:
    """Open without following a final symbolic link (nor blocking on a FIFO); refuse
    anything but a regular file."""
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags | nofollow | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0),
                     0o600)
    except OSError as exc:
        if os.path.islink(path):
            raise PermissionError(f"{shown!r} is a symbolic link; give the path it points "
                                  "to") from None
        raise type(exc)(exc.errno, f"{shown!r}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise PermissionError(f"{shown!r} is not a regular file (a folder, device, FIFO or "
                              "socket); only files move")
    os.set_blocking(fd, True)
    return fd


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def _hash_fd(fd: int, start: int, length: int, hasher: Any) -> Any:
    end = start + length
    while start < end:
        block = os.pread(fd, min(_HASH_BLOCK, end - start), start)
        if not block:
            raise OSError("the file got shorter while it was read")
        hasher.update(block)
        start += len(block)
    return hasher
