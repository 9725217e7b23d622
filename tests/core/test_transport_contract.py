"""Every transport answers the whole contract of rpyc_ipy.core.transport, over real
instances: the memory pair, pipes, TCP and unix sockets, TLS and TLS-SRP."""

from __future__ import annotations

import hashlib
import os
import select
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from authkit import PKI

import rpyc_ipy
from rpyc_ipy.auth.srp_client import srp_client_socket
from rpyc_ipy.auth.srp_server import SRPAuthenticator
from rpyc_ipy.auth.tls_client import create_client_context, wrap_client_socket
from rpyc_ipy.auth.tls_server import SSLAuthenticator
from rpyc_ipy.auth.userdb import UserDB
from rpyc_ipy.core.transport import Transport, TransportInfo
from rpyc_ipy.errors import UsageError
from rpyc_ipy.transports.memory import PipeTransport, memory_pair
from rpyc_ipy.transports.sockets import SocketTransport

WAIT = 20.0
KINDS = ["memory", "pipe", "tcp", "unix", "tls", "tls-srp"]


@dataclass
class Made:
    """Two connected transports of one kind; ``near`` is the client side."""

    near: Transport
    far: Transport
    cleanup: list[Callable[[], None]] = field(default_factory=list)


def _handshake_pair(server_side: Callable[[socket.socket], Any],
                    client_side: Callable[[socket.socket], Any]) -> tuple[Any, Any]:
    """Run a real handshake over 127.0.0.1: the server half in a thread."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname()[:2], timeout=WAIT)
        accepted, _ = listener.accept()
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.update(server=server_side(accepted)))
    thread.start()
    near = client_side(client)
    thread.join(WAIT)
    assert "server" in box, "the server half of the handshake did not finish"
    return near, box["server"]


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    return _handshake_pair(lambda s: s, lambda s: s)


def _make(kind: str, pki: PKI, userdb: UserDB, tmp_path: Path) -> Made:
    if kind == "memory":
        a, b = memory_pair()
        return Made(a, b)
    if kind == "pipe":
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        return Made(PipeTransport(r1, w2), PipeTransport(r2, w1))
    if kind == "tcp":
        client, server = _tcp_pair()
        return Made(SocketTransport(client), SocketTransport(server))
    if kind == "unix":
        path = str(tmp_path / "s")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(path)
            listener.listen(1)
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.connect(path)
            server, _ = listener.accept()
        return Made(SocketTransport(client), SocketTransport(server))
    if kind == "tls":
        auth = SSLAuthenticator(str(pki.server_key), str(pki.server_cert), ca_certs=str(pki.ca))
        context = create_client_context(ca=pki.ca, certfile=pki.client_cert,
                                        keyfile=pki.client_key)
        client, result = _handshake_pair(
            auth, lambda s: wrap_client_socket(s, "127.0.0.1", context))
        return Made(SocketTransport(client), SocketTransport(result.sock))
    assert kind == "tls-srp"
    client, result = _handshake_pair(
        SRPAuthenticator(userdb), lambda s: srp_client_socket(s, "alice", "correct horse"))
    return Made(SocketTransport(client), SocketTransport(result.sock))


@pytest.fixture(params=KINDS)
def made(request: pytest.FixtureRequest, pki: PKI, userdb: UserDB, tmp_path: Path
         ) -> Iterator[tuple[str, Made]]:
    pair = _make(request.param, pki, userdb, tmp_path)
    yield request.param, pair
    pair.near.close()
    pair.far.close()


def _read(transport: Transport, size: int) -> bytes:
    """Read exactly ``size`` bytes (a bounded number of poll intervals)."""
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    for _ in range(200):
        if got == size:
            break
        try:
            n = transport.recv_into(view[got:])
        except TimeoutError:
            continue
        assert n, "end of stream before the data"
        got += n
    return bytes(buf[:got])


def _read_eof(transport: Transport) -> int:
    for _ in range(200):
        try:
            return transport.recv_into(memoryview(bytearray(16)))
        except TimeoutError:
            continue
    raise AssertionError("no end of stream")


def test_is_a_transport_with_typed_info(made: tuple[str, Made]) -> None:
    kind, pair = made
    for transport in (pair.near, pair.far):
        assert isinstance(transport, Transport)
        info = transport.info
        assert isinstance(info, TransportInfo) and info.kind == kind
        assert info.encrypted == (kind in ("tls", "tls-srp"))
        for flag in (transport.supports_nowait, transport.supports_busy_poll,
                     transport.one_frame_per_write):
            assert type(flag) is bool
        with pytest.raises(AttributeError):  # frozen
            info.kind = "tcp"  # type: ignore[misc]


def test_socket_facts(made: tuple[str, Made], pki: PKI) -> None:
    kind, pair = made
    near, far = pair.near.info, pair.far.info
    if kind in ("memory", "pipe"):
        assert near.local_address is None and near.peer_address is None
        return
    assert near.peer_address == far.local_address and far.peer_address == near.local_address
    if kind == "tls":
        assert near.tls_version and near.tls_version.startswith("TLSv1.")
        assert near.cipher and near.cipher == far.cipher
        der = ssl.PEM_cert_to_DER_cert(pki.server_cert.read_text())
        assert near.peer_cert_der == der
        assert near.peer_cert_sha256 == hashlib.sha256(der).hexdigest()
        client_der = ssl.PEM_cert_to_DER_cert(pki.client_cert.read_text())
        assert far.peer_cert_der == client_der  # mutual TLS: the server saw ours
    elif kind == "tls-srp":
        assert near.tls_version == "TLSv1.2" and near.cipher and "SRP" in near.cipher
        assert near.srp_user == far.srp_user == "alice"
        assert near.peer_cert_der is None
    else:
        assert near.tls_version is None and near.cipher is None and near.srp_user is None


def test_capabilities_are_declared_and_kept(made: tuple[str, Made]) -> None:
    kind, pair = made
    for transport in (pair.near, pair.far):
        assert transport.supports_nowait == (kind in ("tcp", "unix", "tls"))
        assert transport.supports_busy_poll == (kind not in ("memory", "pipe"))
        assert transport.one_frame_per_write == (kind in ("tls", "tls-srp"))
        fd = transport.fileno()
        assert (fd is None) == (kind == "memory")
        assert fd is None or fd >= 0
    near, far = pair.near, pair.far
    if not near.supports_nowait:
        with pytest.raises(UsageError):
            near.recv_nowait(memoryview(bytearray(4)))
    else:
        with pytest.raises(TimeoutError):
            near.recv_nowait(memoryview(bytearray(4)))
        far.send_parts([b"now"])
        buf = bytearray(3)
        for _ in range(200):  # the bytes cross the kernel: retry until they are there
            try:
                assert near.recv_nowait(memoryview(buf)) == 3
                break
            except TimeoutError:
                _read_ready(near)
        assert buf == b"now"
    if near.supports_busy_poll:
        near.set_busy_poll(0.0)
    else:
        with pytest.raises(UsageError):
            near.set_busy_poll(0.0)


def _read_ready(transport: Transport) -> None:
    fd = transport.fileno()
    assert fd is not None
    select.select([fd], [], [], 0.05)


def test_bytes_both_ways_then_end_of_stream(made: tuple[str, Made]) -> None:
    _, pair = made
    pair.near.send_parts([b"ab", b"", b"cd"])
    assert _read(pair.far, 4) == b"abcd"
    big = os.urandom(300_000)
    writer = threading.Thread(target=pair.far.send_parts, args=([big[:7], big[7:]],))
    writer.start()
    assert _read(pair.near, len(big)) == big
    writer.join(WAIT)
    assert not pair.near.closed
    pair.near.close()
    assert pair.near.closed
    assert _read_eof(pair.far) == 0


def test_a_connection_over_it_reports_its_info(made: tuple[str, Made]) -> None:
    _, pair = made
    server = rpyc_ipy.Connection(rpyc_ipy.SlaveService, pair.far)
    thread = threading.Thread(target=server.serve_all, daemon=True)
    thread.start()
    with rpyc_ipy.Connection(rpyc_ipy.VoidService, pair.near) as conn:
        assert conn.transport_info is pair.near.info
        conn.ping()
        assert conn.root.eval("6 * 7") == 42
        if pair.near.fileno() is None:
            with pytest.raises(UsageError):
                conn.fileno()
        else:
            assert conn.fileno() == pair.near.fileno()
    thread.join(WAIT)
    assert not thread.is_alive()
