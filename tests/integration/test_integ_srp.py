"""TLS-SRP end to end: our ThreadedServer with SRPAuthenticator, our srp_connect,
real sockets on 127.0.0.1, real tlslite-ng."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest
from integkit import CONFIG, WAIT

import rpyc_ipy
from rpyc_ipy.auth import SRPAuthenticator, UserDB


def test_right_password_and_credentials_reach_the_service(userdb: UserDB, serve: Any,
                                                         caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="rpyc_ipy.server")
    server = serve(authenticator=SRPAuthenticator(userdb))
    with rpyc_ipy.srp_connect("127.0.0.1", server.port, "alice", "correct horse",
                              config=CONFIG, timeout=WAIT) as conn:
        assert conn.root.credentials() == "alice"
        assert conn.root.add(40, 2) == 42
        with pytest.raises(ValueError, match="remote boom"):
            conn.root.fail("remote boom")
    with rpyc_ipy.srp_connect("127.0.0.1", server.port, "bob", "battery staple",
                              config=CONFIG, timeout=WAIT) as conn:
        assert conn.root.credentials() == "bob"
    audit = [r.getMessage() for r in caplog.records if r.name == "rpyc_ipy.server"]
    assert any("user=alice service=CREDENTIALS" in line for line in audit), audit
    assert any("user=bob service=CREDENTIALS" in line for line in audit), audit


def test_wrong_password_and_unknown_user_fail_alike(userdb: UserDB, serve: Any,
                                                   caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="rpyc_ipy.server")
    server = serve(authenticator=SRPAuthenticator(userdb))
    with pytest.raises(rpyc_ipy.AuthenticationError) as wrong:
        rpyc_ipy.srp_connect("127.0.0.1", server.port, "alice", "battery staple", timeout=WAIT)
    with pytest.raises(rpyc_ipy.AuthenticationError) as unknown:
        rpyc_ipy.srp_connect("127.0.0.1", server.port, "mallory", "correct horse",
                             timeout=WAIT)
    # the client cannot tell "no such user" from "wrong password"
    assert str(wrong.value) == str(unknown.value)
    # the server keeps serving, and logged both refusals
    with rpyc_ipy.srp_connect("127.0.0.1", server.port, "alice", "correct horse",
                              config=CONFIG, timeout=WAIT) as conn:
        assert conn.root.credentials() == "alice"
    refused = [r for r in caplog.records if "authentication failed" in r.getMessage()]
    assert len(refused) == 2


def test_users_changed_on_disk_apply_to_the_next_login(userdb: UserDB, serve: Any) -> None:
    server = serve(authenticator=SRPAuthenticator(userdb.path))
    UserDB(userdb.path).add("carol", "new user pw")  # another process, in effect
    with rpyc_ipy.srp_connect("127.0.0.1", server.port, "carol", "new user pw",
                              config=CONFIG, timeout=WAIT) as conn:
        assert conn.root.credentials() == "carol"
    UserDB(userdb.path).delete("carol")
    with pytest.raises(rpyc_ipy.AuthenticationError):
        rpyc_ipy.srp_connect("127.0.0.1", server.port, "carol", "new user pw", timeout=WAIT)


def test_non_ascii_credentials(tmp_path: Any, serve: Any) -> None:
    db = UserDB.create(tmp_path / "users.json")
    db.add("zoë", "pässwörd ✓")
    server = serve(authenticator=SRPAuthenticator(db))
    with rpyc_ipy.srp_connect("127.0.0.1", server.port, "zoë", "pässwörd ✓",
                              config=CONFIG, timeout=WAIT) as conn:
        assert conn.root.credentials() == "zoë"


def test_plaintext_client_against_srp_server(userdb: UserDB, serve: Any) -> None:
    # refused at once: were it left to the handshake timeout, the client's call (which
    # gives up after WAIT with TimeoutError) would time out first
    server = serve(authenticator=SRPAuthenticator(userdb, handshake_timeout=6 * WAIT))
    with pytest.raises(rpyc_ipy.ConnectionClosed):
        conn = rpyc_ipy.connect("127.0.0.1", server.port, config=CONFIG)
        try:
            conn.root.add(1, 2)
        finally:
            conn.close()
    with rpyc_ipy.srp_connect("127.0.0.1", server.port, "alice", "correct horse",
                              config=CONFIG, timeout=WAIT) as conn:
        assert conn.root.add(1, 2) == 3


def test_silent_client_is_dropped_after_the_handshake_deadline(userdb: UserDB,
                                                               serve: Any) -> None:
    server = serve(authenticator=SRPAuthenticator(userdb, handshake_timeout=0.5))
    silent = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
    try:
        # meanwhile another client logs in normally
        with rpyc_ipy.srp_connect("127.0.0.1", server.port, "bob", "battery staple",
                                  config=CONFIG, timeout=WAIT) as conn:
            assert conn.root.credentials() == "bob"
        assert silent.recv(1) == b""  # closed by the server, not by our timeout
    finally:
        silent.close()
