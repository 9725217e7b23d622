"""Idle connections are cheap: a ThreadedServer holding hundreds of silent clients
keeps no receive buffer and no thread for any of them, and serves a fresh client
meanwhile. Structure, not memory figures (bench/bench_connections.py measures those).
Real sockets on 127.0.0.1."""

from __future__ import annotations

import socket
import ssl
import struct
import threading
from typing import Any

import pytest
from waitkit import wait_until

import rpyc_ipy
from rpyc_ipy.auth import SSLAuthenticator
from rpyc_ipy.protocol import consts
from rpyc_ipy.protocol.engine import Engine
from rpyc_ipy.servers.loop import loop_available

pytestmark = [pytest.mark.skipif(not loop_available(), reason="no epoll on this system"),
              pytest.mark.timeout(180)]

_HEADER = struct.Struct(">IB")


class Echo(rpyc_ipy.Service):
    def exposed_add(self, a: int, b: int) -> int:
        return a + b

    def exposed_size(self, data: bytes) -> int:
        return len(data)


def _read_exactly(sock: Any, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "the server closed an idle client"
        data += chunk
    return bytes(data)


def _open_idle(port: int, count: int, context: ssl.SSLContext | None = None) -> list[Any]:
    """``count`` clients that each made one request (GETROOT) and then fall silent."""
    _seq, parts = Engine().request(consts.HANDLE_GETROOT, ())
    request = b"".join(parts)
    clients: list[Any] = []
    try:
        for _ in range(count):
            sock: Any = socket.create_connection(("127.0.0.1", port), timeout=30)
            clients.append(sock)
            if context is not None:
                sock = clients[-1] = context.wrap_socket(sock, server_hostname="127.0.0.1")
            sock.sendall(request)
            length, _flag = _HEADER.unpack(_read_exactly(sock, _HEADER.size))
            _read_exactly(sock, length + 1)
    except BaseException:
        _close_all(clients)
        raise
    return clients


def _close_all(clients: list[Any]) -> None:
    for sock in clients:
        sock.close()


def _client_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("rpyc_ipy-client-")]


def _idle_and_bufferless(server: rpyc_ipy.ThreadedServer, count: int) -> bool:
    clients = list(server.clients)
    return len(clients) == count and all(c.receive_buffer_capacity == 0 for c in clients)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_many_idle_clients_hold_no_buffer_or_thread_and_a_fresh_client_is_served(
        tls: bool, pki: Any) -> None:
    count = 100 if tls else 500  # TLS handshakes cost CPU on a shared machine
    kwargs: dict[str, Any] = {}
    context = None
    if tls:
        kwargs["authenticator"] = SSLAuthenticator(pki.server_key, pki.server_cert)
        context = ssl.create_default_context(cafile=str(pki.ca))
    with rpyc_ipy.ThreadedServer(Echo, port=0, listener_timeout=0.2,
                                 max_connections=count + 10, **kwargs) as server:
        server.start_in_background()
        idle = _open_idle(server.port, count, context)
        try:
            assert wait_until(lambda: _idle_and_bufferless(server, count), 30.0)
            assert wait_until(lambda: not _client_threads(), 30.0)  # handshakes are over
            if tls:
                fresh = rpyc_ipy.ssl_connect("127.0.0.1", server.port, ca_certs=str(pki.ca))
            else:
                fresh = rpyc_ipy.connect("127.0.0.1", server.port)
            with fresh:
                assert fresh.root.add(20, 22) == 42
                # a large request grows the fresh client's buffer; idle again, it is gone
                assert fresh.root.size(b"x" * 50_000) == 50_000
                assert wait_until(lambda: _idle_and_bufferless(server, count + 1), 10.0)
            for sock in idle[:10]:  # the idle clients are still being served
                sock.sendall(b"".join(Engine().request(consts.HANDLE_GETROOT, ())[1]))
                length, _flag = _HEADER.unpack(_read_exactly(sock, _HEADER.size))
                assert len(_read_exactly(sock, length + 1)) == length + 1
        finally:
            _close_all(idle)
        assert wait_until(lambda: not server.clients, 30.0)
