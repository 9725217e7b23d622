"""Files and folders between this machine and a session's server, in chunks.

:meth:`RemoteSession.upload <rpyc_ipy.ipython.session.RemoteSession.upload>` and
``download`` (and ``%rpyc_upload``/``%rpyc_download``) call :func:`upload` and
:func:`download` with the session's :class:`~rpyc_ipy.remote.files.FileStore` (a
netref)::

    result = upload(store, "data/", "~/data", on_progress=bar)   # a folder, recursively
    result.files, result.moved, result.skipped

How the bytes move: chunks of ``chunk_size`` bytes, ``window`` of them in flight at
once (no wait for a reply before the next is sent), so a transfer runs near the
connection's rate and neither side holds more than ``window`` chunks. The receiver
writes ``NAME.part`` and renames it into place once its SHA-256 matches the sender's,
with the source's mode (``& 0o777``) and modification time. A stopped transfer
(``KeyboardInterrupt``, e.g. from ``on_progress``) keeps the ``.part`` file;
``resume=True`` continues from it after comparing the SHA-256 of what it holds on
both sides (a mismatch starts the file over). With ``resume``, a file already at
the destination with the same size and SHA-256 is not sent again.

Where things may go: the server checks every remote path against its roots; this
side writes only inside the local path it was given: names in a remote listing that
are absolute or contain ``..`` are refused, and local symbolic links are not
followed out of it.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import queue
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from rpyc_ipy.core.async_result import AsyncResult
from rpyc_ipy.core.helpers import async_
from rpyc_ipy.errors import RPyCError
from rpyc_ipy.ipython.text import sanitize_text

__all__ = ["DEFAULT_CHUNK", "DEFAULT_WINDOW", "TransferError", "TransferResult", "download",
           "upload"]

#: bytes per request
DEFAULT_CHUNK = 4 << 20
#: requests in flight at once
DEFAULT_WINDOW = 4
_PART = ".part"
_HASH_BLOCK = 4 << 20

Progress = Callable[[int, int], Any]


class TransferError(RPyCError):
    """A transfer was refused or failed; the message says what and what to do. IPython
    shows it as one line."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[31m{type(self).__name__}: {sanitize_text(str(self))}\x1b[0m"]


@dataclass
class TransferResult:
    """What a transfer did: ``files`` moved or found current, ``size`` their bytes,
    ``moved`` the bytes sent this time (less after ``resume``), ``skipped`` notes on
    what was left out (links, devices), ``sha256`` of a single file."""

    source: str
    destination: str
    files: int = 0
    size: int = 0
    moved: int = 0
    skipped: list[str] = field(default_factory=list)
    sha256: str | None = None
    seconds: float = 0.0


@dataclass
class _Options:
    resume: bool
    chunk: int
    window: int
    timeout: float
    meter: _Meter


class _Meter:
    """Bytes done of the whole transfer, reported as they move."""

    def __init__(self, total: int, report: Progress) -> None:
        self.total = total
        self.done = 0
        self.report = report

    def advance(self, amount: int) -> None:
        self.done += amount
        self.report(self.done, self.total)


@dataclass
class _Remote:
    """The store's methods, fetched once (each call is then one request)."""

    store: Any
    calls: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        calls = self.__dict__["calls"]
        if name not in calls:
            calls[name] = getattr(self.__dict__["store"], name)
        return calls[name]


def upload(store: Any, local: str, remote: str, *, resume: bool = False,
           on_progress: Progress | None = None, chunk_size: int = DEFAULT_CHUNK,
           window: int = DEFAULT_WINDOW, timeout: float = 120.0) -> TransferResult:
    """Send the file or folder ``local`` to ``remote`` on the server (into it, if it
    is an existing folder or ends with ``/``); see the module docstring."""
    return _run_aside(lambda report: _upload(store, local, remote, resume, report, chunk_size,
                                             window, timeout), on_progress)


def download(store: Any, remote: str, local: str, *, resume: bool = False,
             on_progress: Progress | None = None, chunk_size: int = DEFAULT_CHUNK,
             window: int = DEFAULT_WINDOW, timeout: float = 120.0) -> TransferResult:
    """Fetch the file or folder ``remote`` to ``local`` (into it, if it is an existing
    folder or ends with ``/``); see the module docstring."""
    return _run_aside(lambda report: _download(store, remote, local, resume, report,
                                               chunk_size, window, timeout), on_progress)


def _run_aside(work: Callable[[Progress], TransferResult],
               on_progress: Progress | None) -> TransferResult:
    """Run ``work`` on a thread of its own, which reads the connection; this thread only
    waits for its reports and calls ``on_progress`` with them, so a ``KeyboardInterrupt``
    (the stop button, or raised by ``on_progress``) lands where no socket is read. The
    work then stops at its next chunk, waits for its requests in flight and keeps the
    ``.part`` file; a second interrupt stops waiting for that."""
    reports: queue.Queue[tuple[str, Any, Any]] = queue.Queue()
    answers: queue.Queue[bool] = queue.Queue()
    stop = threading.Event()

    def report(done: int, total: int) -> None:
        if not stop.is_set():
            reports.put(("progress", done, total))
            if answers.get():
                return
        raise KeyboardInterrupt

    def run() -> None:
        try:
            reports.put(("done", work(report), None))
        except BaseException as exc:  # handed to the caller's thread, raised there
            reports.put(("failed", exc, None))

    threading.Thread(target=run, name="rpyc_ipy-transfer", daemon=True).start()
    try:
        kind, value, total = reports.get()
        while kind == "progress":
            go_on = False
            try:
                if on_progress is not None:
                    on_progress(value, total)
                go_on = True
            finally:
                answers.put(go_on)
            kind, value, total = reports.get()
    except BaseException:
        stop.set()
        answers.put(False)
        while reports.get()[0] == "progress":  # the work ends once it sees the stop
            answers.put(False)
        raise
    if kind == "failed":
        raise value
    return cast(TransferResult, value)


def _upload(store: Any, local: str, remote: str, resume: bool, report: Progress,
            chunk_size: int, window: int, timeout: float) -> TransferResult:
    started = time.monotonic()
    rs = _Remote(store)
    source = os.path.abspath(os.path.expanduser(local))
    try:
        top = os.stat(source)
    except OSError as exc:
        raise TransferError(f"cannot upload {local!r}: {exc.strerror}") from None
    kind = _remote(rs.stat, remote)[0]
    target = remote
    if remote.endswith("/") or kind == "dir":
        target = posixpath.join(remote, os.path.basename(source.rstrip(os.sep)))
    result = TransferResult(local, target)
    if stat.S_ISDIR(top.st_mode):
        entries = list(_local_tree(source, result.skipped))
    elif stat.S_ISREG(top.st_mode):
        entries = [("", "file", top.st_size, top.st_mode & 0o777, top.st_mtime_ns)]
    else:
        raise TransferError(f"cannot upload {local!r}: it is not a file or a folder")
    files = [e for e in entries if e[1] == "file"]
    options = _Options(resume, chunk_size, window, timeout,
                       _Meter(sum(e[2] for e in files), report))
    if stat.S_ISDIR(top.st_mode):
        _remote(rs.makedirs, target)
        for rel, kind, *_ in entries:
            if kind == "dir":
                _remote(rs.makedirs, posixpath.join(target, rel))
    for rel, _, size, mode, mtime in files:
        path = os.path.join(source, *rel.split("/")) if rel else source
        dest = posixpath.join(target, rel) if rel else target
        result.sha256 = _upload_file(rs, path, dest, size, mode, mtime, options, result)
    if stat.S_ISDIR(top.st_mode):
        for rel, kind, _, mode, mtime in reversed(entries):
            if kind == "dir":
                _remote(rs.set_times, posixpath.join(target, rel) if rel else target, mode,
                        mtime)
        result.sha256 = None
    result.files, result.size = len(files), options.meter.total
    result.seconds = time.monotonic() - started
    return result


def _download(store: Any, remote: str, local: str, resume: bool, report: Progress,
              chunk_size: int, window: int, timeout: float) -> TransferResult:
    started = time.monotonic()
    rs = _Remote(store)
    kind, size, mode, mtime = _remote(rs.stat, remote)
    if kind == "missing":
        raise TransferError(f"cannot download {remote!r}: there is no such file or folder "
                            "on the server")
    target = os.path.abspath(os.path.expanduser(local))
    if local.endswith(os.sep) or os.path.isdir(target):
        name = posixpath.basename(remote.rstrip("/"))
        _check_name(name, remote)
        target = os.path.join(target, name)
    result = TransferResult(remote, target)
    if kind == "dir":
        entries: list[tuple[str, str, int, int, int]] = []
        for entry in _remote(rs.listing, remote):
            rel, what = _valid_entry(entry, remote)
            if what == "skipped":
                result.skipped.append(f"{rel}: a link out of the server's folders, or not "
                                      "a regular file")
            else:
                entries.append((rel, what, *entry[2:]))
    elif kind == "file":
        entries = [("", "file", size, mode, mtime)]
    else:
        raise TransferError(f"cannot download {remote!r}: it is not a file or a folder")
    files = [e for e in entries if e[1] == "file"]
    options = _Options(resume, chunk_size, window, timeout,
                       _Meter(sum(e[2] for e in files), report))
    if kind == "dir":
        _make_local_dir(target, target)
        for rel, what, *_ in entries:
            if what == "dir":
                _make_local_dir(target, os.path.join(target, *rel.split("/")))
    for rel, _, _, _, _ in files:
        path = os.path.join(target, *rel.split("/")) if rel else target
        source = posixpath.join(remote, rel) if rel else remote
        result.sha256 = _download_file(rs, source, path, target, options, result)
    if kind == "dir":
        for rel, what, _, mode, mtime in reversed(entries):
            if what == "dir":
                folder = os.path.join(target, *rel.split("/"))
                os.chmod(folder, mode & 0o777)
                os.utime(folder, ns=(mtime, mtime))
        os.chmod(target, mode & 0o777)
        os.utime(target, ns=(mtime, mtime))
        result.sha256 = None
    result.files, result.size = len(files), options.meter.total
    result.seconds = time.monotonic() - started
    return result


# -- one file each way ------------------------------------------------------------------------


def _upload_file(rs: _Remote, path: str, dest: str, size: int, mode: int, mtime: int,
                 options: _Options, result: TransferResult) -> str:
    with open(path, "rb") as source:
        if options.resume:
            there = _remote(rs.checksum, dest)
            if there[0] == size and there[1] == _hash_file(source, size):
                options.meter.advance(size)  # already there, verified
                return str(there[1])
        handle, offset, prefix = _remote(rs.open_write, dest, size, options.resume)
        try:
            hasher = hashlib.sha256()
            if offset and _hash_file(source, offset, hasher) != prefix:
                _remote(rs.restart, handle)
                offset, hasher = 0, hashlib.sha256()
            options.meter.advance(offset)
            source.seek(offset)
            pending: deque[AsyncResult] = deque()
            write = async_(rs.write)
            try:
                while offset < size:
                    data = source.read(min(options.chunk, size - offset))
                    if not data:
                        raise TransferError(f"{path!r} got shorter while it was sent; send "
                                            "it again")
                    pending.append(write(handle, offset, data))
                    hasher.update(data)
                    offset += len(data)
                    result.moved += len(data)
                    while len(pending) >= options.window:
                        _value(pending.popleft(), options.timeout, dest)
                    options.meter.advance(len(data))
            finally:
                _drain(pending, options.timeout)
            if os.fstat(source.fileno()).st_size != size:
                raise TransferError(f"{path!r} changed size while it was sent; send it again")
            digest = hasher.hexdigest()
            _remote(rs.finish, handle, digest, mode, mtime)
            return digest
        except BaseException:
            _abort(rs.abort, handle)
            raise


def _download_file(rs: _Remote, source: str, path: str, top: str, options: _Options,
                   result: TransferResult) -> str:
    handle, size, mode, mtime = _remote(rs.open_read, source)
    try:
        part = path + _PART
        fd = _open_local(part, top, os.O_RDWR | os.O_CREAT)
        with os.fdopen(fd, "r+b") as sink:
            hasher = hashlib.sha256()
            offset = os.fstat(fd).st_size if options.resume else 0
            if options.resume and os.path.isfile(path) and os.path.getsize(path) == size:
                with open(path, "rb") as current:
                    if _hash_file(current, size) == _remote(rs.digest, handle, size):
                        options.meter.advance(size)
                        os.unlink(part)
                        return _remote(rs.digest, handle, size)
            if offset and (offset > size or
                           _hash_file(sink, offset, hasher) != _remote(rs.digest, handle,
                                                                      offset)):
                offset, hasher = 0, hashlib.sha256()
            sink.truncate(offset)
            options.meter.advance(offset)
            read = async_(rs.read)
            pending: deque[AsyncResult] = deque()
            asked = offset
            try:
                while offset < size:
                    while asked < size and len(pending) < options.window:
                        pending.append(read(handle, asked, min(options.chunk, size - asked)))
                        asked += min(options.chunk, size - asked)
                    data = _value(pending.popleft(), options.timeout, source)
                    if type(data) is not bytes or not data:
                        raise TransferError(f"{source!r} got shorter on the server while it "
                                            "was read; fetch it again")
                    if len(data) > min(options.chunk, size - offset):
                        raise TransferError(f"the server sent more of {source!r} than was "
                                            "asked for; nothing more was written")
                    _write_at(fd, data, offset)
                    hasher.update(data)
                    offset += len(data)
                    result.moved += len(data)
                    options.meter.advance(len(data))
            finally:
                _drain(pending, options.timeout)
            digest = hasher.hexdigest()
            if digest != _remote(rs.digest, handle, size):
                os.unlink(part)
                raise TransferError(f"{source!r}: the SHA-256 of what arrived differs from "
                                    "the server's; the partial file was deleted, fetch it "
                                    "again")
            os.fchmod(fd, mode & 0o777)
            os.utime(fd, ns=(mtime, mtime))
        os.replace(part, path)
        return digest
    finally:
        _abort(rs.close, handle)


# -- local side ---------------------------------------------------------------------------


def _local_tree(top: str, skipped: list[str]) -> Iterator[tuple[str, str, int, int, int]]:
    """``(relative name, kind, size, mode, mtime_ns)`` of a local folder, parents first;
    the top itself comes last among folders (its times are set after its contents)."""
    real_top = os.path.realpath(top)
    for folder, dirs, files in os.walk(top, followlinks=False):
        rel_folder = os.path.relpath(folder, top)
        for name in sorted(dirs) + sorted(files):
            full = os.path.join(folder, name)
            rel = name if rel_folder == "." else f"{rel_folder}/{name}".replace(os.sep, "/")
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                real = os.path.realpath(full)
                if not _inside(real, real_top) or not os.path.isfile(real):
                    skipped.append(f"{rel}: a link out of {top!r}, or to a folder")
                    continue
                st = os.stat(real)
            if stat.S_ISDIR(st.st_mode):
                yield (rel, "dir", 0, st.st_mode & 0o777, st.st_mtime_ns)
            elif stat.S_ISREG(st.st_mode):
                yield (rel, "file", st.st_size, st.st_mode & 0o777, st.st_mtime_ns)
            else:
                skipped.append(f"{rel}: not a regular file")
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
    st = os.stat(top)
    yield ("", "dir", 0, st.st_mode & 0o777, st.st_mtime_ns)


def _valid_entry(entry: Any, remote: str) -> tuple[str, str]:
    """A remote listing's ``(name, kind)``, refused unless the name stays inside."""
    if type(entry) is not tuple or len(entry) != 5 or type(entry[0]) is not str or \
            entry[1] not in ("file", "dir", "skipped") or \
            not all(type(v) is int and v >= 0 for v in entry[2:]):
        raise TransferError(f"the server's listing of {remote!r} is malformed; nothing "
                            "more was written")
    for part in entry[0].split("/"):
        _check_name(part, remote)
    return entry[0], entry[1]


def _check_name(name: str, remote: str) -> None:
    if name in ("", ".", "..") or "\0" in name or os.sep in name or \
            (os.altsep and os.altsep in name) or os.path.isabs(name):
        raise TransferError(f"the server named an entry of {remote!r} {name!r}, which would "
                            "land outside the local folder; nothing more was written")


def _inside(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip(os.sep) + os.sep)


def _check_local(path: str, top: str) -> None:
    """Refuse ``path`` in a fetched folder ``top`` unless its real parent is inside
    ``top`` (a symbolic link planted there is not followed out)."""
    if path != top and not _inside(os.path.realpath(os.path.dirname(path)),
                                   os.path.realpath(top)):
        raise TransferError(f"{path!r} would be outside {top!r} (through a symbolic "
                            "link); nothing more was written")


def _make_local_dir(top: str, folder: str) -> None:
    _check_local(folder, top)
    if os.path.islink(folder):
        raise TransferError(f"{folder!r} is a symbolic link; nothing more was written")
    os.makedirs(folder, mode=0o700, exist_ok=True)


def _open_local(path: str, top: str, flags: int) -> int:
    """Open a ``.part`` file for writing, never through a final symbolic link."""
    if path != top + _PART:
        _check_local(path, top)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise TransferError(f"cannot write {path!r}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise TransferError(f"cannot write {path!r}: it is not a regular file")
    return fd


def _write_at(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def _hash_file(source: Any, length: int, hasher: Any = None) -> str:
    """SHA-256 hex of the first ``length`` bytes of an open file (into ``hasher``)."""
    hasher = hasher if hasher is not None else hashlib.sha256()
    source.seek(0)
    left = length
    while left > 0:
        block = source.read(min(_HASH_BLOCK, left))
        if not block:
            break
        hasher.update(block)
        left -= len(block)
    return str(hasher.hexdigest())


# -- requests -------------------------------------------------------------------------------


def _remote(method: Any, *args: Any) -> Any:
    """One store request; the server's refusal becomes a one-line TransferError."""
    try:
        return method(*args)
    except (OSError, ValueError, TypeError) as exc:
        raise TransferError(_message(exc)) from None


def _value(result: AsyncResult, timeout: float, what: str) -> Any:
    try:
        result.wait(timeout)
        return result.value
    except (OSError, ValueError, TypeError) as exc:
        raise TransferError(f"{what}: {_message(exc)}") from None


def _drain(pending: deque[AsyncResult], timeout: float) -> None:
    """Wait for the requests still in flight (their errors are already reported)."""
    deadline = time.monotonic() + timeout
    while pending:
        result = pending.popleft()
        try:
            result.wait(max(0.0, deadline - time.monotonic()))
        except Exception:
            return


def _abort(method: Any, handle: int) -> None:
    try:
        method(handle)
    except (OSError, ValueError, RPyCError):
        pass  # the transfer is gone already (or the connection is): the .part file stays


def _message(exc: BaseException) -> str:
    if exc.args and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc).split("\n", 1)[0] or type(exc).__name__
