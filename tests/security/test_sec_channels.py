"""Data-channel prefix detection: a client that sends part of the prefix and stalls is
dropped after the authentication timeout, without a thread spinning on it meanwhile."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import rpyc_ipy
from rpyc_ipy.core.transport import Transport
from rpyc_ipy.errors import AuthenticationError
from rpyc_ipy.servers.channels import CHANNEL_PREFIX, opens_channel

WAIT = 10.0


class _Adder(rpyc_ipy.Service):
    def exposed_add(self, a: int, b: int) -> int:
        return a + b


def _outcome_of_opens_channel(sock: socket.socket, timeout: float) -> list[Any]:
    """Run opens_channel in a thread; the list holds its result or exception once done."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(opens_channel(sock, timeout))
        except AuthenticationError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive(), "opens_channel did not return within its timeout"
    return outcome


def test_a_stalled_partial_prefix_ends_in_an_authentication_error() -> None:
    server_end, client_end = socket.socketpair()
    with server_end, client_end:
        client_end.sendall(CHANNEL_PREFIX[:4])
        [outcome] = _outcome_of_opens_channel(server_end, 0.2)
        assert isinstance(outcome, AuthenticationError)
        assert "did not arrive in time" in str(outcome)


def test_a_prefix_arriving_in_pieces_opens_a_channel_and_leaves_the_rest() -> None:
    server_end, client_end = socket.socketpair()
    with server_end, client_end:
        client_end.sendall(CHANNEL_PREFIX[:3])
        timer = threading.Timer(0.05, client_end.sendall, args=(CHANNEL_PREFIX[3:] + b"rest",))
        timer.start()
        try:
            assert _outcome_of_opens_channel(server_end, WAIT) == [True]
        finally:
            timer.join(WAIT)
        server_end.settimeout(WAIT)
        assert server_end.recv(16) == b"rest"


def test_other_first_bytes_are_left_for_the_ordinary_handshake() -> None:
    server_end, client_end = socket.socketpair()
    with server_end, client_end:
        client_end.sendall(b"RPYX-not-a-channel")
        assert _outcome_of_opens_channel(server_end, WAIT) == [False]
        server_end.settimeout(WAIT)
        assert server_end.recv(4) == b"RPYX"


@pytest.fixture
def channel_server() -> Iterator[rpyc_ipy.ThreadedServer]:
    def refuse(transport: Transport, credentials: Any) -> None:
        transport.close()

    server = rpyc_ipy.ThreadedServer(_Adder, port=0, auth_timeout=0.3, channel_handler=refuse)
    server.start_in_background()
    try:
        yield server
    finally:
        server.close()


def test_a_server_drops_a_stalled_partial_prefix_and_serves_others(
        channel_server: rpyc_ipy.ThreadedServer) -> None:
    with socket.create_connection(("127.0.0.1", channel_server.port), timeout=WAIT) as stalled:
        stalled.sendall(CHANNEL_PREFIX[:5])
        conn = rpyc_ipy.connect("127.0.0.1", channel_server.port)
        try:
            assert conn.root.add(2, 3) == 5
        finally:
            conn.close()
        # closed by the server once its time was up (a reset: its bytes were left unread)
        with pytest.raises(ConnectionResetError):
            stalled.recv(1)
