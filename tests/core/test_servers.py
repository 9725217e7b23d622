"""Servers on 127.0.0.1 with port 0: binding, caps, deadlines, cleanup."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from waitkit import wait_until

import rpyc_ipy
from rpyc_ipy.errors import UsageError


class Echo(rpyc_ipy.Service):
    def exposed_echo(self, value: Any) -> Any:
        return value


@pytest.mark.parametrize("server_class", [rpyc_ipy.ThreadedServer, rpyc_ipy.ThreadPoolServer])
def test_server_binds_loopback_reports_port_and_empties_clients(server_class: Any) -> None:
    with server_class(Echo, port=0) as server:
        server.start_in_background()
        assert server.host == "127.0.0.1" and server.port > 0
        conns = [rpyc_ipy.connect("127.0.0.1", server.port) for _ in range(3)]
        assert [c.root.echo(i) for i, c in enumerate(conns)] == [0, 1, 2]
        assert wait_until(lambda: len(server.clients) == 3, 5.0)
        for conn in conns:
            conn.close()
        assert wait_until(lambda: not server.clients, 5.0)


def test_one_shot_server_serves_one_client_then_closes() -> None:
    server = rpyc_ipy.OneShotServer(Echo, port=0).start_in_background()
    with rpyc_ipy.connect("127.0.0.1", server.port) as conn:
        assert conn.root.echo("once") == "once"
    assert wait_until(lambda: server.closed, 5.0)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).recv(1)


@pytest.mark.parametrize("host", ["0.0.0.0", ""])
def test_refuses_non_loopback_without_authentication(host: str) -> None:
    with pytest.raises(UsageError):
        rpyc_ipy.ThreadedServer(Echo, hostname=host, port=0)


def test_client_refuses_plaintext_to_a_non_loopback_host() -> None:
    with pytest.raises(UsageError):
        rpyc_ipy.connect("192.0.2.1", 18812)  # refused before any packet is sent


def test_connection_cap_closes_extra_clients() -> None:
    with rpyc_ipy.ThreadedServer(Echo, port=0, max_connections=2) as server:
        server.start_in_background()
        first = rpyc_ipy.connect("127.0.0.1", server.port)
        second = rpyc_ipy.connect("127.0.0.1", server.port)
        assert first.root.echo(1) == 1 and second.root.echo(2) == 2
        extra = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        extra.settimeout(5)
        assert extra.recv(1) == b""  # closed at once, nothing sent
        extra.close()
        first.close()
        second.close()


def test_silent_client_is_dropped_after_the_first_frame_deadline() -> None:
    with rpyc_ipy.ThreadedServer(Echo, port=0, first_frame_timeout=0.5) as server:
        server.start_in_background()
        silent = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        silent.settimeout(5)  # the deadline is 0.5 s: a recv timeout here fails the test
        assert silent.recv(1) == b""
        silent.close()
        with rpyc_ipy.connect("127.0.0.1", server.port) as conn:  # still serving
            assert conn.root.echo("ok") == "ok"


def test_server_keeps_serving_after_garbage() -> None:
    with rpyc_ipy.ThreadedServer(Echo, port=0) as server:
        server.start_in_background()
        bad = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        bad.sendall(b"\x00\x00\x00\x03\x07abc\n")  # invalid compression flag
        bad.settimeout(5)
        assert bad.recv(1) == b""
        bad.close()
        with rpyc_ipy.connect("127.0.0.1", server.port) as conn:
            assert conn.root.echo(b"fine") == b"fine"


@pytest.mark.parametrize("kwargs", [{"requestBatchSize": 10}, {"nbThreads": 0},
                                    {"nbThreads": "4"}])
def test_thread_pool_server_refuses_options_it_cannot_honour(kwargs: dict[str, Any]) -> None:
    with pytest.raises(UsageError, match=next(iter(kwargs))):
        rpyc_ipy.ThreadPoolServer(Echo, port=0, **kwargs)

