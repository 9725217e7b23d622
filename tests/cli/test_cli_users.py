"""``rpyc-ipy users add|passwd|del|list`` as real subprocesses."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
from clikit import WAIT, run_cli
from waitkit import wait_until

import rpyc_ipy
from rpyc_ipy.auth.srp_server import SRPAuthenticator
from rpyc_ipy.auth.userdb import UserDB


def test_add_list_del_with_password_stdin(tmp_path: Path) -> None:
    db = tmp_path / "users.json"
    added = run_cli("users", "add", str(db), "alice", "--password-stdin",
                    input="correct horse\n")
    assert added.returncode == 0, added.stderr
    assert "created user database" in added.stderr
    assert "added user 'alice'" in added.stdout
    if os.name == "posix":
        assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert "correct horse" not in db.read_text()

    added = run_cli("users", "add", str(db), "bob", "--password-stdin", input="battery staple")
    assert added.returncode == 0, added.stderr
    assert "created" not in added.stderr

    listed = run_cli("users", "list", str(db))
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == ["alice", "bob"]

    removed = run_cli("users", "del", str(db), "alice")
    assert removed.returncode == 0, removed.stderr
    listed = run_cli("users", "list", str(db))
    assert listed.stdout.splitlines() == ["bob"]

    # the verifier really is for that password
    entry = UserDB(db).lookup("bob")
    assert entry is not None


def test_add_existing_user_fails_and_keeps_the_old_password(tmp_path: Path) -> None:
    db = tmp_path / "users.json"
    assert run_cli("users", "add", str(db), "alice", "--password-stdin", input="password one\n"
                   ).returncode == 0
    before = UserDB(db).lookup("alice")
    again = run_cli("users", "add", str(db), "alice", "--password-stdin", input="password two\n")
    assert again.returncode == 1
    assert "already exists" in again.stderr and "users passwd" in again.stderr
    assert UserDB(db).lookup("alice") == before


def test_passwd_changes_the_verifier(tmp_path: Path) -> None:
    db = tmp_path / "users.json"
    assert run_cli("users", "add", str(db), "alice", "--password-stdin", input="password one\n"
                   ).returncode == 0
    before = UserDB(db).lookup("alice")
    changed = run_cli("users", "passwd", str(db), "alice", "--password-stdin",
                      input="password two\n")
    assert changed.returncode == 0, changed.stderr
    assert UserDB(db).lookup("alice") != before
    missing = run_cli("users", "passwd", str(db), "carol", "--password-stdin", input="x password\n")
    assert missing.returncode == 1 and "no user 'carol'" in missing.stderr


def test_del_unknown_user_and_missing_file(tmp_path: Path) -> None:
    db = tmp_path / "users.json"
    gone = run_cli("users", "del", str(db), "alice")
    assert gone.returncode == 1 and "does not exist" in gone.stderr
    assert not db.exists()
    assert run_cli("users", "add", str(db), "alice", "--password-stdin", input="alice password\n"
                   ).returncode == 0
    unknown = run_cli("users", "del", str(db), "carol")
    assert unknown.returncode == 1 and "no user 'carol'" in unknown.stderr


def test_empty_password_on_stdin_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "users.json"
    empty = run_cli("users", "add", str(db), "alice", "--password-stdin", input="\n")
    assert empty.returncode == 1 and "no password" in empty.stderr
    assert not db.exists(), "a failed add must not leave a new file behind"


def test_password_stdin_takes_one_line_only(tmp_path: Path) -> None:
    db = tmp_path / "users.json"
    added = run_cli("users", "add", str(db), "alice", "--password-stdin",
                    input="first line\r\nsecond line\n")
    assert added.returncode == 0, added.stderr
    # the stored verifier is for "first line" (no CR/LF): check with a real SRP login
    with rpyc_ipy.ThreadedServer(rpyc_ipy.VoidService, port=0,
                                 authenticator=SRPAuthenticator(db)) as server:
        server.start_in_background()
        with rpyc_ipy.srp_connect("127.0.0.1", server.port, "alice", "first line",
                                  timeout=WAIT) as conn:
            assert conn.root.get_service_name() == "VOID"
        with pytest.raises(rpyc_ipy.AuthenticationError):
            rpyc_ipy.srp_connect("127.0.0.1", server.port, "alice", "first line\r",
                                 timeout=WAIT)


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX session without a tty")
def test_without_a_terminal_it_asks_for_password_stdin(tmp_path: Path) -> None:
    db = tmp_path / "users.json"
    result = run_cli("users", "add", str(db), "alice", new_session=True)
    assert result.returncode == 1
    assert "--password-stdin" in result.stderr
    assert not db.exists()


def test_password_is_not_an_argument(tmp_path: Path) -> None:
    result = run_cli("users", "add", str(tmp_path / "u.json"), "alice", "--password", "x")
    assert result.returncode == 2
    assert "unrecognized arguments" in result.stderr


def _drive_terminal(argv: list[str], answers: list[bytes]) -> tuple[int, bytes]:
    """Run ``argv`` on a new pseudo-terminal, answering each password prompt in turn;
    return (exit status, everything the terminal showed). Every wait is bounded."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the child: its controlling terminal is the pty
        try:
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    shown = b""
    pending = list(answers)

    def terminal_closed() -> bool:  # reads what the terminal shows, answering prompts
        nonlocal shown
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            return False
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            return True
        if not chunk:
            return True
        shown += chunk
        if pending and shown.rstrip().endswith(b":"):
            os.write(fd, pending.pop(0) + b"\n")
            shown += b"<answered>\n"
        return False

    def reaped() -> tuple[int, int] | None:
        done, raw = os.waitpid(pid, os.WNOHANG)
        return (done, raw) if done else None

    exited = None
    try:
        wait_until(terminal_closed, WAIT, step=0.0)
        exited = wait_until(reaped, WAIT)
    finally:
        os.close(fd)
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    assert exited is not None, f"timed out; the terminal showed {shown!r}"
    return os.waitstatus_to_exitcode(exited[1]), shown


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_password_asked_twice_on_the_terminal(tmp_path: Path) -> None:
    db = tmp_path / "users.json"
    argv = [sys.executable, "-m", "rpyc_ipy", "users", "add", str(db), "alice"]
    status, shown = _drive_terminal(argv, [b"typed pw", b"typed pw"])
    assert status == 0, shown
    assert b"Password for alice:" in shown and b"Repeat the password:" in shown
    assert b"typed pw" not in shown, "the password must not be echoed"
    assert UserDB(db).list() == ["alice"]

    status, shown = _drive_terminal([*argv[:-1], "bob"], [b"password one", b"password two"])
    assert status == 1
    assert b"do not match" in shown
    assert UserDB(db).list() == ["alice"]


def test_minimum_password_length(tmp_path: Path) -> None:
    db = tmp_path / "users.json"
    short = run_cli("users", "add", str(db), "alice", "--password-stdin", input="7 chars\n")
    assert short.returncode == 1
    assert "the password has 7 characters, fewer than the 8 required" in short.stderr
    assert "--min-password-length" in short.stderr
    assert not db.exists(), "a refused add must not leave a new file behind"
    assert run_cli("users", "add", str(db), "alice", "--password-stdin", input="8 chars!\n"
                   ).returncode == 0
    # the flag moves the minimum, for passwd as for add: one step either side of it
    before = UserDB(db).lookup("alice")
    under = run_cli("users", "passwd", str(db), "alice", "--password-stdin",
                    "--min-password-length", "12", input="x" * 11 + "\n")
    assert under.returncode == 1 and "fewer than the 12 required" in under.stderr
    assert UserDB(db).lookup("alice") == before
    at = run_cli("users", "passwd", str(db), "alice", "--password-stdin",
                 "--min-password-length", "12", input="x" * 12 + "\n")
    assert at.returncode == 0, at.stderr
    lowered = run_cli("users", "add", str(db), "bob", "--password-stdin",
                      "--min-password-length", "4", input="four\n")
    assert lowered.returncode == 0, lowered.stderr
    assert UserDB(db).list() == ["alice", "bob"]
    bad = run_cli("users", "add", str(db), "carol", "--min-password-length", "0")
    assert bad.returncode == 2 and "must be at least 1" in bad.stderr
