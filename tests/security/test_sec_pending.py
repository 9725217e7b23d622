"""Connections that have not logged in yet are capped per source address and in total.

One host holding hundreds of silent connections used to take every slot a login
needs. Now a host gets ``max_pending_per_address`` connections that have not
authenticated nor sent a valid request, all hosts ``max_pending_connections``;
a connection over either cap is closed at once, and established sessions do not
count. Other hosts connect from other loopback addresses (127.0.0.2, ...), which
Linux routes to ``lo`` without any set-up.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from seckit import WAIT, RawClient, TargetService, assert_serves, request_frame, val, wait_until

import rpyc_ipy
from rpyc_ipy.auth.srp_client import srp_client_socket
from rpyc_ipy.auth.srp_server import SRPAuthenticator
from rpyc_ipy.auth.userdb import UserDB
from rpyc_ipy.errors import UsageError
from rpyc_ipy.protocol import consts

pytestmark = pytest.mark.timeout(120)


def silent(port: int, source: str) -> socket.socket:
    """A connection from ``source`` that says nothing."""
    return socket.create_connection(("127.0.0.1", port), timeout=WAIT, source_address=(source, 0))


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """True if the server closes ``sock`` within ``timeout`` seconds."""

    def closed() -> bool:
        sock.settimeout(min(0.2, timeout))
        try:
            return not sock.recv(4096)
        except TimeoutError:
            return False
        except OSError:
            return True

    return wait_until(closed, timeout, step=0.0)


def refusals(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(text in record.getMessage() for record in caplog.records)


def test_pending_caps_one_step_over(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    server = serve(max_pending_per_address=3, max_pending_connections=5)
    pending = server.pending
    with RawClient(server.port) as established:
        established.getroot()
        held = [silent(server.port, "127.0.0.1") for _ in range(3)]  # at the per-host cap
        assert wait_until(lambda: pending.count("127.0.0.1") == 3)
        fourth = silent(server.port, "127.0.0.1")  # one over it
        assert closed_by_server(fourth, WAIT)
        assert refusals(caplog, "max_pending_per_address=3") == 1
        held += [silent(server.port, "127.0.0.2") for _ in range(2)]  # at the total cap
        assert wait_until(lambda: pending.total == 5)
        sixth = silent(server.port, "127.0.0.3")  # one over it
        assert closed_by_server(sixth, WAIT)
        assert refusals(caplog, "max_pending_connections=5") == 1
        assert not any(closed_by_server(sock, 0.2) for sock in held)
        # established sessions are not pending: the one from before still works
        assert established.call(consts.HANDLE_PING, val(("still here",)))[0] == "reply"
        # a pending connection that sends a valid request frees its slot
        held[0].sendall(request_frame(0, consts.HANDLE_PING, val(("hello",))))
        assert wait_until(lambda: pending.count("127.0.0.1") == 2)
        seventh = silent(server.port, "127.0.0.3")
        assert wait_until(lambda: pending.count("127.0.0.3") == 1)
        assert not closed_by_server(seventh, 0.2)
        for sock in (*held, fourth, sixth, seventh):
            sock.close()
    assert wait_until(lambda: pending.total == 0)
    assert_serves(server.port)


def test_a_pending_connection_that_closes_gives_its_slot_back(serve: Any) -> None:
    server = serve(max_pending_per_address=1)
    for _ in range(3):
        sock = silent(server.port, "127.0.0.1")
        assert wait_until(lambda: server.pending.count("127.0.0.1") == 1)
        sock.close()
        assert wait_until(lambda: server.pending.total == 0)


def test_bad_pending_caps_are_refused(serve: Any) -> None:
    for kwargs in ({"max_pending_connections": 0}, {"max_pending_per_address": 0},
                   {"max_pending_per_address": 1.5}):
        with pytest.raises(UsageError, match="max_pending"):
            serve(**kwargs)


@pytest.fixture
def srp_users(tmp_path: Path) -> UserDB:
    db = UserDB.create(tmp_path / "users.json")
    db.add("alice", "correct horse battery")
    return db


def srp_login(port: int, source: str) -> Any:
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT,
                                    source_address=(source, 0))
    try:
        tls = srp_client_socket(sock, "alice", "correct horse battery", WAIT)
    except Exception:
        sock.close()
        raise
    return rpyc_ipy.connect_socket(tls, config={"sync_request_timeout": WAIT})


def test_one_host_holding_hundreds_of_silent_connections_does_not_stop_logins(
        serve: Any, srp_users: UserDB, caplog: pytest.LogCaptureFixture) -> None:
    server = serve(TargetService, authenticator=SRPAuthenticator(srp_users),
                   auth_timeout=60.0)  # the defaults: 64 pending, 16 per address
    before = srp_login(server.port, "127.0.0.1")  # a session from the attacking host
    assert before.root.ping() == "pong"
    attackers = [silent(server.port, "127.0.0.1") for _ in range(300)]
    try:
        assert wait_until(lambda: refusals(caplog, "max_pending_per_address=16") == 284, WAIT)
        assert server.pending.count("127.0.0.1") == 16
        assert sum(closed_by_server(sock, WAIT) for sock in attackers[16:]) == 284
        for _ in range(5):  # legitimate logins from another host all succeed
            with srp_login(server.port, "127.0.0.2") as conn:
                assert conn.root.add(20, 22) == 42
        assert before.root.ping() == "pong"  # the established session is unaffected
        assert server.pending.count("127.0.0.1") == 16
    finally:
        for sock in attackers:
            sock.close()
        before.close()


def test_a_client_turned_away_is_told_to_try_again(serve: Any) -> None:
    """A connection over the cap ends in a message that names the likely cause."""
    server = serve(max_pending_per_address=1)
    held = silent(server.port, "127.0.0.1")
    assert wait_until(lambda: server.pending.count("127.0.0.1") == 1)
    with pytest.raises(EOFError) as refused:
        rpyc_ipy.connect("127.0.0.1", server.port, timeout=WAIT)
    assert "too many new connections to serve: try again" in str(refused.value)
    held.close()
    assert wait_until(lambda: server.pending.total == 0)
    assert_serves(server.port)
