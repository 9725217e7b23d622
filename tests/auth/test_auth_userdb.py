"""The SRP verifier database: format, permissions, atomic writes, corrupt files."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tlslite.mathtls import makeX

from rpyc_ipy.auth.userdb import (
    DEFAULT_MIN_PASSWORD_LENGTH,
    FORMAT,
    UserDB,
    VerifierEntry,
    username_bytes,
)
from rpyc_ipy.errors import ConfigError, UsageError

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")


def stray_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_create_add_list_delete(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    db = UserDB.create(path)
    assert db.list() == [] and len(db) == 0
    db.add("bob", "pw-b long enough")
    db.add("alice", "pw-a long enough")
    assert db.list() == ["alice", "bob"]
    assert "alice" in db and db.contains(b"alice") and not db.contains("carol")
    assert UserDB(path).list() == ["alice", "bob"]  # persisted
    db.delete("bob")
    assert db.list() == ["alice"]
    assert UserDB(path).list() == ["alice"]
    with pytest.raises(UsageError, match="no such user"):
        db.delete("bob")
    assert stray_files(tmp_path) == []


def test_duplicate_add_and_password_change(userdb: UserDB) -> None:
    before = userdb.lookup("alice")
    with pytest.raises(UsageError, match="already exists"):
        userdb.add("alice", "other password")
    assert userdb.lookup("alice") == before
    userdb.set_password("alice", "new password")
    after = userdb.lookup("alice")
    assert after is not None and before is not None
    assert after.salt != before.salt and after.verifier != before.verifier
    with pytest.raises(UsageError, match="no such user"):
        userdb.set_password("nobody", "x password")


def test_file_format_and_no_password(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    db = UserDB.create(path)
    password = "Tr0ub4dor&3-unique"
    db.add("zoë", password)
    text = path.read_text("utf-8")
    doc = json.loads(text)
    assert doc["format"] == FORMAT and doc["version"] == 1
    assert doc["group"] == "rfc5054-2048"
    rec = doc["users"]["zoë"]
    assert set(rec) == {"group", "salt", "verifier"}
    raw_pw = password.encode()
    for form in (password, base64.b64encode(raw_pw).decode(), raw_pw.hex()):
        assert form not in text
    # the stored verifier is tlslite's v = g^x mod N for the stored salt
    entry = db.lookup("zoë")
    assert entry is not None
    x = makeX(bytearray(entry.salt), bytearray("zoë".encode()), bytearray(raw_pw))
    assert pow(entry.g, x, entry.N) == entry.verifier
    assert entry.N.bit_length() == 2048


@posix_only
def test_owner_only_permissions(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    old = os.umask(0)  # even with a permissive umask
    try:
        db = UserDB.create(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        db.add("alice", "alice password")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        os.umask(old)


@posix_only
def test_loose_permissions_are_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "users.json"
    UserDB.create(path)
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="rpyc_ipy.auth"):
        UserDB(path)
    assert "readable by others" in caplog.text


def test_write_is_atomic(userdb: UserDB, monkeypatch: pytest.MonkeyPatch) -> None:
    path = Path(userdb.path)
    before = path.read_bytes()

    def failing_replace(src: str, dst: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk on fire"):
        userdb.add("carol", "carol password")
    monkeypatch.undo()
    assert path.read_bytes() == before  # the old file, untouched
    assert stray_files(path.parent) == []  # and no temporary left behind
    assert "carol" not in userdb and UserDB(path).list() == ["alice", "bob"]


def test_concurrent_adds_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    UserDB.create(path)
    # separate UserDB objects, as separate processes would have
    dbs = [UserDB(path) for _ in range(8)]
    threads = [
        threading.Thread(target=db.add, args=(f"user{i}", f"password {i}"))
        for i, db in enumerate(dbs)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert UserDB(path).list() == sorted(f"user{i}" for i in range(8))


def test_refresh_sees_changes_by_others(userdb: UserDB) -> None:
    other = UserDB(userdb.path)
    other.add("carol", "carol password")
    assert "carol" not in userdb
    assert userdb.refresh() is True
    assert "carol" in userdb
    assert userdb.refresh() is False


def test_missing_and_existing_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        UserDB(tmp_path / "nope.json")
    path = tmp_path / "users.json"
    UserDB.create(path).add("alice", "alice password")
    with pytest.raises(ConfigError, match="already exists"):
        UserDB.create(path)
    assert UserDB.create(path, exist_ok=True).list() == ["alice"]
    with pytest.raises(ConfigError, match="does not exist"):
        UserDB.create(tmp_path / "no-such-dir" / "users.json")


def test_groups(tmp_path: Path) -> None:
    db = UserDB.create(tmp_path / "big.json", group_bits=3072)
    db.add("alice", "alice password")
    entry = db.lookup("alice")
    assert entry is not None and entry.N.bit_length() == 3072 and entry.group == "rfc5054-3072"
    for weak in (1024, 1536, 2047):
        with pytest.raises(ConfigError, match="group_bits"):
            UserDB.create(tmp_path / f"weak{weak}.json", group_bits=weak)


#: the new file content, or an edit of the parsed document
Mutation = bytes | Callable[[dict[str, Any]], object]


def _corrupt(path: Path, mutate: Mutation) -> None:
    doc = json.loads(path.read_text())
    if callable(mutate):
        mutate(doc)
        path.write_text(json.dumps(doc))
    else:
        path.write_bytes(mutate)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (b"{not json", "invalid JSON at line 1"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b"[1, 2, 3]", "not a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply|invalid JSON|not a JSON object"),
        (lambda d: d.update(format="something-else"), "format field"),
        (lambda d: d.update(version=99), "unsupported version"),
        (lambda d: d.update(group="rfc5054-1024"), "too weak group"),
        (lambda d: d.update(secret="!!notbase64!!"), "secret is not valid base64"),
        (lambda d: d.update(secret=base64.b64encode(b"short").decode()), "shorter than 16"),
        (lambda d: d.update(users=[]), "users is not a JSON object"),
        (lambda d: d["users"].update(alice="x"), "record is not a JSON object"),
        (lambda d: d["users"]["alice"].update(salt="@@"), "salt is not valid base64"),
        (lambda d: d["users"]["alice"].update(salt=""), "salt length 0"),
        (lambda d: d["users"]["alice"].update(verifier="AQ=="), "verifier out of range"),
        (
            lambda d: d["users"]["alice"].update(verifier=base64.b64encode(b"\xff" * 300).decode()),
            "longer than the group modulus",
        ),
        (lambda d: d["users"].update({"bad\nname": d["users"]["alice"]}), "control characters"),
    ],
)
def test_corrupt_files_raise_config_error(userdb: UserDB, mutate: Mutation, message: str) -> None:
    path = Path(userdb.path)
    _corrupt(path, mutate)
    with pytest.raises(ConfigError, match=message) as info:
        UserDB(path)
    assert str(path) in str(info.value)
    # a live instance fails closed on refresh, and refuses to modify the file
    with pytest.raises(ConfigError):
        userdb.refresh()
    with pytest.raises(ConfigError):
        userdb.add("carol", "carol password")


def test_size_limit(userdb: UserDB) -> None:
    size = Path(userdb.path).stat().st_size
    with pytest.raises(ConfigError, match="over the"):
        UserDB(userdb.path, max_bytes=size - 1)
    assert UserDB(userdb.path, max_bytes=size).list() == ["alice", "bob"]


def test_username_rules() -> None:
    assert username_bytes("alice") == b"alice" == username_bytes(b"alice")
    assert username_bytes("zoë") == "zoë".encode()
    for bad in ("", "x" * 256, "a\x00b", "tab\tname", b"\xff\xfe", 42):
        with pytest.raises(UsageError):
            username_bytes(bad)  # type: ignore[arg-type]
    assert username_bytes("é" * 127) == ("é" * 127).encode()  # 254 bytes is fine


def test_password_rules(userdb: UserDB) -> None:
    with pytest.raises(UsageError, match="empty"):
        userdb.add("carol", "")
    with pytest.raises(UsageError):
        userdb.add("carol", None)  # type: ignore[arg-type]
    userdb.add("carol", b"bytes password \xff")  # any bytes are a password
    assert "carol" in userdb


def test_fake_entries_for_unknown_users(userdb: UserDB) -> None:
    real = userdb.lookup("alice")
    assert real is not None
    n, g, salt, v = userdb.srp_entry(b"mallory")
    # shaped like a real entry: same group, same salt length, a verifier in range
    assert (n, g) == (real.N, real.g) and len(salt) == len(real.salt) and 1 < v < n
    # stable for the same name, across instances (the secret is in the file) ...
    assert userdb.srp_entry(b"mallory") == (n, g, salt, v)
    assert UserDB(userdb.path).srp_entry(b"mallory") == (n, g, salt, v)
    # ... different between names, and never a real user's entry
    assert userdb.srp_entry(b"trudy")[2:] != (salt, v)
    assert userdb.srp_entry(b"alice") == (real.N, real.g, real.salt, real.verifier)
    # names that are not even valid UTF-8 get one too
    assert len(userdb.srp_entry(b"\xff\xfe")) == 4


def test_fake_entry_is_computed_for_known_users_too(
    userdb: UserDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bytes] = []
    original = UserDB._fake_entry

    def counting(key: bytes, group: str, secret: bytes) -> VerifierEntry:
        calls.append(key)
        return original(key, group, secret)

    monkeypatch.setattr(UserDB, "_fake_entry", staticmethod(counting))
    userdb.srp_entry(b"alice")
    userdb.srp_entry(b"mallory")
    assert calls == [b"alice", b"mallory"]  # same work whether the user exists or not


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file locking")
def test_lock_file_is_private(userdb: UserDB) -> None:
    lock = Path(userdb.path).with_name(".users.json.lock")
    assert lock.exists()
    assert stat.S_IMODE(lock.stat().st_mode) & 0o077 == 0


def test_minimum_password_length(userdb: UserDB) -> None:
    # the default minimum is 8 characters: one step under it is refused, at it accepted
    assert DEFAULT_MIN_PASSWORD_LENGTH == 8
    with pytest.raises(UsageError, match="has 7 characters, fewer than the 8 required"):
        userdb.add("carol", "7 chars")
    assert "carol" not in userdb
    userdb.add("carol", "8 chars!")
    # characters, not bytes, for a text password; bytes for a bytes one
    userdb.add("dave", "ééééééé" + "é")
    with pytest.raises(UsageError, match="has 7 bytes"):
        userdb.add("erin", b"7 bytes")
    # a password change obeys it too
    with pytest.raises(UsageError, match="fewer than the 8 required"):
        userdb.set_password("alice", "short")
    # the knob: one step either side of a custom minimum
    with pytest.raises(UsageError, match="has 11 characters, fewer than the 12 required"):
        userdb.add("frank", "x" * 11, min_password_length=12)
    userdb.add("frank", "x" * 12, min_password_length=12)
    userdb.set_password("frank", "four", min_password_length=4)
    with pytest.raises(UsageError, match="minimum password length must be a whole number"):
        userdb.add("gina", "any password", min_password_length=0)
    assert userdb.list() == ["alice", "bob", "carol", "dave", "frank"]
