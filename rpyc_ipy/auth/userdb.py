"""The SRP verifier database: who may log in with TLS-SRP, stored without passwords.

A user database is one JSON file, written by :class:`UserDB` and read by the
TLS-SRP authenticator (and the ``rpyc-ipy users`` CLI)::

    {
     "format": "rpyc_ipy.srp-verifiers",
     "version": 1,
     "group": "rfc5054-2048",
     "secret": "<base64 of 32 random bytes>",
     "users": {
      "alice": {"group": "rfc5054-2048", "salt": "<base64>", "verifier": "<base64>"}
     }
    }

* ``group`` names an SRP group of RFC 5054 appendix A (``rfc5054-2048``,
  ``-3072``, ``-4096``, ``-6144``, ``-8192``); the top-level one is used for new users
  and for the fake verifiers below. Groups under 2048 bits are refused.
* ``salt`` and ``verifier`` are what tlslite-ng's ``makeVerifier`` computes (RFC 5054
  ``v = g^x mod N``), the verifier as a big-endian unsigned integer. The password is
  never stored; a verifier still allows an offline guessing attack, so the file is
  kept owner-only (0o600).
* ``secret`` lets the server answer an unknown username with a fake but stable salt
  and verifier (RFC 5054 section 2.5.1.3), so "no such user" and "wrong password"
  look the same to a client.

Every change is a read-modify-write under an advisory lock (``fcntl.flock`` on a
``.<name>.lock`` file beside it, where available) and lands with an atomic
``os.replace`` of a fully written temporary file in the same directory. Loading is
bounded (``max_bytes``, ``MAX_USERS``) and any malformed content raises
``ConfigError`` naming the file and the problem.

Next: ``UserDB.create(path)`` then ``db.add("alice", password)``; serve with
``SRPAuthenticator(path)``.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
import tempfile
import threading
import unicodedata
from collections.abc import Iterator
from typing import Any, NamedTuple

from tlslite.mathtls import goodGroupParameters, makeVerifier

from rpyc_ipy.auth.base import DEFAULT_MIN_PASSWORD_LENGTH
from rpyc_ipy.errors import ConfigError, UsageError

try:  # advisory locking between processes (POSIX); Windows goes without
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_GROUP_BITS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MIN_PASSWORD_LENGTH",
    "FORMAT",
    "MAX_USERS",
    "UserDB",
    "VerifierEntry",
    "check_password_length",
    "password_bytes",
    "username_bytes",
]

log = logging.getLogger("rpyc_ipy.auth")

FORMAT = "rpyc_ipy.srp-verifiers"
VERSION = 1
DEFAULT_GROUP_BITS = 2048
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
MAX_USERS = 100_000
_SECRET_BYTES = 32
_SALT_BYTES = (8, 64)  # tlslite makes 16-byte salts; accept a sane range
# Position of each group in tlslite's goodGroupParameters (RFC 5054 appendix A order).
_GROUP_INDEX = {2048: 2, 3072: 3, 4096: 4, 6144: 5, 8192: 6}
_GROUPS = {f"rfc5054-{bits}": bits for bits in _GROUP_INDEX}


class VerifierEntry(NamedTuple):
    """One user's SRP record: group name, ``N``, ``g``, salt and verifier ``v``."""

    group: str
    N: int
    g: int
    salt: bytes
    verifier: int


def _group_params(name: str) -> tuple[int, int]:
    bits = _GROUPS[name]
    g, n = goodGroupParameters[_GROUP_INDEX[bits]]
    return n, g


def username_bytes(username: str | bytes | bytearray) -> bytes:
    """``username`` as the UTF-8 bytes SRP uses; ``UsageError`` if it is not a valid name.

    A name is 1 to 255 bytes of UTF-8 with no control characters.
    """
    if isinstance(username, bytes | bytearray):
        raw = bytes(username)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"username {raw!r} is not valid UTF-8") from None
    elif isinstance(username, str):
        text = username
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"username {text!r} is not encodable as UTF-8") from None
    else:
        raise UsageError(f"username must be str or bytes, got {type(username).__name__}")
    if not 1 <= len(raw) <= 255:
        raise UsageError("a username is 1 to 255 bytes of UTF-8")
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise UsageError(f"username {text!r} contains control characters")
    return raw


def password_bytes(password: str | bytes | bytearray) -> bytes:
    """``password`` as the bytes SRP uses; ``UsageError`` if it is empty or not text/bytes."""
    if isinstance(password, str):
        raw = password.encode("utf-8")
    elif isinstance(password, bytes | bytearray):
        raw = bytes(password)
    else:
        raise UsageError(f"password must be str or bytes, got {type(password).__name__}")
    if not raw:
        raise UsageError("the password must not be empty")
    return raw


def check_password_length(password: str | bytes | bytearray,
                          min_length: int = DEFAULT_MIN_PASSWORD_LENGTH) -> None:
    """``UsageError`` if ``password`` has fewer than ``min_length`` characters (bytes,
    for a bytes password): a verifier of a short one is guessed offline in no time."""
    if isinstance(min_length, bool) or not isinstance(min_length, int) or min_length < 1:
        raise UsageError("the minimum password length must be a whole number of at least 1, "
                         f"got {min_length!r}")
    if len(password) < min_length:
        unit = "bytes" if isinstance(password, bytes | bytearray) else "characters"
        raise UsageError(f"the password has {len(password)} {unit}, fewer than the "
                         f"{min_length} required: choose a longer one (a few words will do)")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a base64 string")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError(f"{what} is not valid base64") from None


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")


def _parse(doc: Any) -> tuple[str, bytes, dict[bytes, VerifierEntry]]:
    """Check a decoded document; return (group, secret, users). Raises ValueError."""
    if not isinstance(doc, dict):
        raise ValueError("the top level is not a JSON object")
    if doc.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} file (format field is {doc.get('format')!r})")
    if doc.get("version") != VERSION:
        raise ValueError(f"unsupported version {doc.get('version')!r} (this code reads {VERSION})")
    group = doc.get("group")
    if group not in _GROUPS:
        raise ValueError(f"unknown or too weak group {group!r}; known: {sorted(_GROUPS)}")
    secret = _unb64(doc.get("secret"), "secret")
    if len(secret) < 16:
        raise ValueError("secret is shorter than 16 bytes")
    raw_users = doc.get("users")
    if not isinstance(raw_users, dict):
        raise ValueError("users is not a JSON object")
    if len(raw_users) > MAX_USERS:
        raise ValueError(f"more than {MAX_USERS} users")
    users: dict[bytes, VerifierEntry] = {}
    for name, rec in raw_users.items():
        try:
            key = username_bytes(name)
        except UsageError as exc:
            raise ValueError(str(exc)) from None
        if not isinstance(rec, dict):
            raise ValueError(f"user {name!r}: record is not a JSON object")
        ugroup = rec.get("group")
        if ugroup not in _GROUPS:
            raise ValueError(f"user {name!r}: unknown or too weak group {ugroup!r}")
        n, g = _group_params(ugroup)
        salt = _unb64(rec.get("salt"), f"user {name!r}: salt")
        if not _SALT_BYTES[0] <= len(salt) <= _SALT_BYTES[1]:
            raise ValueError(f"user {name!r}: salt length {len(salt)} out of range")
        vbytes = _unb64(rec.get("verifier"), f"user {name!r}: verifier")
        if len(vbytes) > (n.bit_length() + 7) // 8:
            raise ValueError(f"user {name!r}: verifier longer than the group modulus")
        v = int.from_bytes(vbytes, "big")
        if not 1 < v < n:
            raise ValueError(f"user {name!r}: verifier out of range")
        users[key] = VerifierEntry(ugroup, n, g, salt, v)
    return group, secret, users


def _read_file(path: str, max_bytes: int) -> tuple[Any, tuple[int, ...]]:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ConfigError(
            f"SRP user database {path!r} does not exist: create it with UserDB.create() "
            "or `rpyc-ipy users add FILE USER`"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot open SRP user database {path!r}: {exc}") from exc
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"SRP user database {path!r} is not a regular file")
        if st.st_size > max_bytes:
            raise ConfigError(
                f"SRP user database {path!r} is {st.st_size} bytes, over the {max_bytes} limit"
            )
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ConfigError(f"SRP user database {path!r} grew over the {max_bytes} byte limit")
    if os.name == "posix" and st.st_mode & 0o077:
        log.warning(
            "SRP user database %s is readable by others (mode %o): chmod 600 it",
            path,
            stat.S_IMODE(st.st_mode),
        )
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"SRP user database {path!r} is corrupt: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"SRP user database {path!r} is corrupt: invalid JSON at line {exc.lineno} "
            f"column {exc.colno} ({exc.msg})"
        ) from None
    except RecursionError:
        raise ConfigError(f"SRP user database {path!r} is corrupt: nested too deeply") from None
    return doc, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class UserDB:
    """An SRP verifier database file; see the module docstring for the format.

    ``UserDB(path)`` opens an existing file (``ConfigError`` if it is missing or
    corrupt); ``UserDB.create(path)`` makes a new one. Methods are thread-safe.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.max_bytes = max_bytes
        self._lock = threading.RLock()
        self._group = ""
        self._secret = b""
        self._users: dict[bytes, VerifierEntry] = {}
        self._stamp: tuple[int, ...] = ()
        self.reload()

    # -- creating and loading --------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        group_bits: int = DEFAULT_GROUP_BITS,
        exist_ok: bool = False,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> UserDB:
        """Create an empty database at ``path`` (0o600) and open it.

        ``group_bits`` picks the RFC 5054 group for its users (2048 and up). An
        existing file is an error unless ``exist_ok``, in which case it is opened.
        """
        if group_bits not in _GROUP_INDEX:
            raise ConfigError(
                f"group_bits must be one of {sorted(_GROUP_INDEX)}, got {group_bits!r}"
            )
        target = os.path.abspath(os.fspath(path))
        if not os.path.isdir(os.path.dirname(target)):
            raise ConfigError(f"directory of {target!r} does not exist")
        with _file_lock(target):
            if os.path.lexists(target):
                if not exist_ok:
                    raise ConfigError(f"SRP user database {target!r} already exists")
            else:
                doc = {
                    "format": FORMAT,
                    "version": VERSION,
                    "group": f"rfc5054-{group_bits}",
                    "secret": _b64(secrets.token_bytes(_SECRET_BYTES)),
                    "users": {},
                }
                _atomic_write(target, doc)
        return cls(target, max_bytes=max_bytes)

    def reload(self) -> None:
        """Read the file again, replacing what is in memory; ``ConfigError`` if bad."""
        doc, stamp = _read_file(self.path, self.max_bytes)
        try:
            group, secret, users = _parse(doc)
        except ValueError as exc:
            raise ConfigError(f"SRP user database {self.path!r} is corrupt: {exc}") from None
        with self._lock:
            self._group, self._secret, self._users, self._stamp = group, secret, users, stamp

    def refresh(self) -> bool:
        """Reload if the file changed on disk since the last load; True if it did.

        Raises ``ConfigError`` if the new content is bad (callers fail closed).
        """
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise ConfigError(f"SRP user database {self.path!r} is gone: {exc}") from exc
        if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == self._stamp:
            return False
        self.reload()
        return True

    # -- reading ---------------------------------------------------------------

    @property
    def group(self) -> str:
        """The RFC 5054 group name new users get, e.g. ``"rfc5054-2048"``."""
        return self._group

    def list(self) -> builtins.list[str]:
        """All usernames, sorted."""
        with self._lock:
            return sorted(name.decode("utf-8") for name in self._users)

    def contains(self, username: str | bytes | bytearray) -> bool:
        """True if ``username`` has an entry (invalid names are simply absent)."""
        try:
            key = username_bytes(username)
        except UsageError:
            return False
        with self._lock:
            return key in self._users

    __contains__ = contains

    def __len__(self) -> int:
        with self._lock:
            return len(self._users)

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def lookup(self, username: str | bytes | bytearray) -> VerifierEntry | None:
        """The real entry of ``username``, or None. Not for handshakes: see
        :meth:`srp_entry`."""
        try:
            key = username_bytes(username)
        except UsageError:
            return None
        with self._lock:
            return self._users.get(key)

    def srp_entry(self, username: bytes | bytearray) -> tuple[int, int, bytes, int]:
        """``(N, g, salt, v)`` for the handshake of whoever claims ``username``.

        Unknown names get a fake entry derived from the database secret: the same
        salt every time for the same name, a verifier of the right group, so the
        handshake runs to the end and fails like a wrong password. The fake is
        computed on every call, for known users too, so both cost the same.
        """
        key = bytes(username)
        with self._lock:
            real = self._users.get(key)
            group, secret = self._group, self._secret
        fake = self._fake_entry(key, group, secret)
        entry = real if real is not None else fake
        return entry.N, entry.g, entry.salt, entry.verifier

    @staticmethod
    def _fake_entry(key: bytes, group: str, secret: bytes) -> VerifierEntry:
        n, g = _group_params(group)
        salt = hmac.new(secret, b"rpyc_ipy fake salt\0" + key, hashlib.sha256).digest()[:16]
        # 160 bits, the size of the SHA-1 x of a real verifier
        x = hmac.new(secret, b"rpyc_ipy fake x\0" + key, hashlib.sha256).digest()[:20]
        return VerifierEntry(group, n, g, salt, pow(g, int.from_bytes(x, "big"), n))

    # -- changing ----------------------------------------------------------------

    def add(
        self,
        username: str | bytes | bytearray,
        password: str | bytes | bytearray,
        *,
        replace: bool = False,
        min_password_length: int = DEFAULT_MIN_PASSWORD_LENGTH,
    ) -> None:
        """Add ``username`` with a verifier of ``password`` and save.

        An existing user is a ``UsageError`` unless ``replace`` (to change a password);
        so is a password shorter than ``min_password_length``.
        """
        key = username_bytes(username)
        pw = password_bytes(password)
        check_password_length(password, min_password_length)
        with self._modify() as doc:
            name = key.decode("utf-8")
            if name in doc["users"] and not replace:
                raise UsageError(f"user {name!r} already exists (use replace=True)")
            bits = _GROUPS[doc["group"]]
            _n, _g, salt, verifier = makeVerifier(bytearray(key), bytearray(pw), bits)
            doc["users"][name] = {
                "group": doc["group"],
                "salt": _b64(bytes(salt)),
                "verifier": _b64(_int_bytes(verifier)),
            }

    def set_password(
        self,
        username: str | bytes | bytearray,
        password: str | bytes | bytearray,
        *,
        min_password_length: int = DEFAULT_MIN_PASSWORD_LENGTH,
    ) -> None:
        """Change the password of an existing user (``UsageError`` if absent, or if
        ``password`` is shorter than ``min_password_length``)."""
        if not self.contains(username):
            self.refresh()
        if not self.contains(username):
            raise UsageError(f"no such user {username!r}")
        self.add(username, password, replace=True, min_password_length=min_password_length)

    def delete(self, username: str | bytes | bytearray) -> None:
        """Remove ``username`` and save; ``UsageError`` if there is no such user."""
        name = username_bytes(username).decode("utf-8")
        with self._modify() as doc:
            if name not in doc["users"]:
                raise UsageError(f"no such user {name!r}")
            del doc["users"][name]

    @contextlib.contextmanager
    def _modify(self) -> Iterator[dict[str, Any]]:
        # Re-read under the lock so a change made by another process since our
        # last load is kept, not overwritten.
        with self._lock, _file_lock(self.path):
            doc, _ = _read_file(self.path, self.max_bytes)
            try:
                _parse(doc)
            except ValueError as exc:
                raise ConfigError(f"SRP user database {self.path!r} is corrupt: {exc}") from None
            yield doc
            try:
                _parse(doc)
            except ValueError as exc:  # pragma: no cover - our own writes are valid
                raise ConfigError(f"refusing to write an invalid database: {exc}") from None
            _atomic_write(self.path, doc)
            self.reload()

    def __repr__(self) -> str:
        return f"<UserDB {self.path!r} {len(self)} users {self._group}>"


@contextlib.contextmanager
def _file_lock(path: str) -> Iterator[None]:
    if fcntl is None:  # pragma: no cover - not on POSIX
        yield
        return
    directory, name = os.path.split(path)
    lock_path = os.path.join(directory, f".{name}.lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def _atomic_write(path: str, doc: dict[str, Any]) -> None:
    """Write ``doc`` to ``path`` so that readers see the old or the new file, never a mix."""
    data = (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode("utf-8")
    directory, name = os.path.split(path)
    # mkstemp creates the file 0o600 already; same directory so os.replace is atomic.
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), 0o600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):
        # Make the rename itself durable.
        with contextlib.suppress(OSError):
            dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
