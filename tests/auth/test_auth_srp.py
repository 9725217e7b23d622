"""TLS-SRP: SRPAuthenticator against srp_client_socket over real loopback sockets."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from authkit import PING, PKI, WAIT, OneShot, client_exchange, connect, read_line
from tlslite import TLSConnection
from tlslite.mathtls import makeVerifier
from waitkit import wait_until

from rpyc_ipy.auth.base import SocketLike
from rpyc_ipy.auth.srp_client import srp_client_socket
from rpyc_ipy.auth.srp_server import SRPAuthenticator
from rpyc_ipy.auth.srp_socket import (
    BAD_CREDENTIALS,
    TLSLiteSocket,
    run_handshake,
    srp_settings,
    tlslite_buffered_bytes,
)
from rpyc_ipy.auth.tls_client import create_client_context, wrap_client_socket
from rpyc_ipy.auth.tls_server import SSLAuthenticator
from rpyc_ipy.auth.userdb import UserDB
from rpyc_ipy.errors import AuthenticationError, UsageError

ALICE_PW = "correct horse"


def login(port: int, user: str | bytes = "alice", pw: str | bytes = ALICE_PW) -> TLSLiteSocket:
    return srp_client_socket(connect(port), user, pw, handshake_timeout=WAIT)


def assert_echoed(shot: OneShot, reply: bytes) -> None:
    shot.wait()
    assert shot.error is None, shot.error
    assert shot.received == PING
    assert reply == b"pong:" + PING
    assert shot.eof_after_reply is True


def failed_login(serve_once: Any, auth: SRPAuthenticator, user: str, pw: str) -> tuple[str, str]:
    """(server error text, client error text) of a login that must fail."""
    shot = serve_once(auth)
    with pytest.raises(AuthenticationError) as info:
        login(shot.port, user, pw)
    shot.wait()
    assert isinstance(shot.error, AuthenticationError)
    return str(shot.error), str(info.value)


@pytest.mark.parametrize("user", ["alice", b"alice"])
def test_right_password(userdb: UserDB, serve_once: Any, user: str | bytes) -> None:
    shot = serve_once(SRPAuthenticator(userdb))
    tls = login(shot.port, user, ALICE_PW.encode() if isinstance(user, bytes) else ALICE_PW)
    assert isinstance(tls, SocketLike)
    assert tls.username == "alice"
    assert tls.version() == "TLSv1.2"
    assert tls.cipher() == ("TLS_SRP_SHA_WITH_AES_256_CBC_SHA", "TLSv1.2", 256)
    assert tls.cipher_implementation() == "openssl"  # the fast AES is in use
    assert tls.gettimeout() == WAIT  # the caller's mode is back
    assert_echoed(shot, client_exchange(tls))
    sock, creds = shot.result
    assert creds == "alice" and isinstance(creds, str)
    assert isinstance(sock, SocketLike)


def test_wrong_password_and_unknown_user_fail_identically(userdb: UserDB, serve_once: Any) -> None:
    auth = SRPAuthenticator(userdb, handshake_timeout=WAIT)
    wrong = failed_login(serve_once, auth, "alice", "not the password")
    unknown = failed_login(serve_once, auth, "mallory", ALICE_PW)
    # the client's text is the same; the server's names the user tried, for its log
    assert wrong == (f"{BAD_CREDENTIALS} (user 'alice')", BAD_CREDENTIALS)
    assert unknown == (f"{BAD_CREDENTIALS} (user 'mallory')", BAD_CREDENTIALS)
    # another user's password is just a wrong password
    assert failed_login(serve_once, auth, "alice", "battery staple") == wrong


def test_non_ascii_username(userdb: UserDB, serve_once: Any) -> None:
    userdb.add("zoë", "pässwörd")
    shot = serve_once(SRPAuthenticator(userdb))
    tls = login(shot.port, "zoë", "pässwörd")
    assert_echoed(shot, client_exchange(tls))
    assert shot.result.credentials == "zoë"


def test_users_added_or_removed_later(userdb: UserDB, serve_once: Any) -> None:
    auth = SRPAuthenticator(userdb.path)  # by path: its own UserDB instance
    UserDB(userdb.path).add("carol", "carol password")  # another process, say the CLI
    shot = serve_once(auth)
    assert_echoed(shot, client_exchange(login(shot.port, "carol", "carol password")))
    UserDB(userdb.path).delete("carol")
    assert failed_login(serve_once, auth, "carol", "carol password") == \
        (f"{BAD_CREDENTIALS} (user 'carol')", BAD_CREDENTIALS)


def test_corrupt_database_fails_closed(userdb: UserDB, serve_once: Any) -> None:
    auth = SRPAuthenticator(userdb)
    Path(userdb.path).write_text(json.dumps({"format": "nope"}))
    shot = serve_once(auth)
    with pytest.raises(AuthenticationError):
        login(shot.port)
    shot.wait()
    assert isinstance(shot.error, AuthenticationError)
    assert "user database unavailable" in str(shot.error)


def test_silent_client_times_out(userdb: UserDB, serve_once: Any) -> None:
    shot = serve_once(SRPAuthenticator(userdb, handshake_timeout=0.3))
    with connect(shot.port):
        assert shot.done.wait(WAIT)  # while the client is still connected and silent
    shot.wait()
    assert isinstance(shot.error, AuthenticationError)
    assert str(shot.error) == "TLS-SRP handshake timed out after 0.3 s"


def test_silent_server_times_out_the_client(serve_once: Any) -> None:
    # a server that accepts and never answers, holding the connection until released
    release = threading.Event()

    def mute(sock: socket.socket) -> None:
        release.wait(WAIT)
        sock.close()

    shot = serve_once(mute, handler=None)
    try:
        with pytest.raises(AuthenticationError, match=r"timed out after 0\.3 s"):
            srp_client_socket(connect(shot.port), "alice", "pw", handshake_timeout=0.3)
    finally:
        release.set()
    shot.wait()


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\x00\x00\x0b\x00\x01\x12\x00\x14\x08\x05hello\n",  # a plain RPyC frame
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x03\x00\x05hello",  # a TLS record holding nonsense
    ],
)
def test_plaintext_client_is_refused(userdb: UserDB, serve_once: Any, garbage: bytes) -> None:
    shot = serve_once(SRPAuthenticator(userdb, handshake_timeout=1.0))
    with connect(shot.port) as raw:
        raw.sendall(garbage)
        assert shot.done.wait(WAIT)
    shot.wait()
    assert isinstance(shot.error, AuthenticationError)
    assert shot.error.args[0].startswith("TLS-SRP handshake")


def test_srp_client_against_certificate_server(pki: PKI, serve_once: Any) -> None:
    shot = serve_once(SSLAuthenticator(pki.server_key, pki.server_cert, handshake_timeout=WAIT))
    with pytest.raises(AuthenticationError):
        login(shot.port)
    shot.wait()
    assert isinstance(shot.error, AuthenticationError)


def test_certificate_client_against_srp_server(pki: PKI, userdb: UserDB, serve_once: Any) -> None:
    shot = serve_once(SRPAuthenticator(userdb, handshake_timeout=WAIT))
    with pytest.raises(AuthenticationError):
        wrap_client_socket(connect(shot.port), "127.0.0.1", create_client_context(ca=pki.ca))
    shot.wait()
    assert isinstance(shot.error, AuthenticationError)


def test_client_refuses_a_weak_group(serve_once: Any) -> None:
    # a hostile server offering a 1024-bit group, which UserDB would never store
    weak = dict.fromkeys([b"alice"], makeVerifier(bytearray(b"alice"), bytearray(b"pw"), 1024))

    class Weak(dict):
        def __bool__(self) -> bool:
            return True

    settings = srp_settings()
    settings.minKeySize = 1024

    def weak_server(sock: socket.socket) -> Any:
        return run_handshake(
            sock,
            lambda conn: conn.handshakeServerAsync(verifierDB=Weak(weak), settings=settings),
            WAIT,
            None,
        )

    shot = serve_once(weak_server, handler=None)
    with pytest.raises(AuthenticationError, match="refused: N value is too small"):
        login(shot.port, "alice", "pw")
    shot.wait()


def test_bad_client_arguments_close_the_socket() -> None:
    a, b = socket.socketpair()
    with b:
        with pytest.raises(UsageError):
            srp_client_socket(a, "alice", "")
        assert a.fileno() == -1
        a2, b2 = socket.socketpair()
        with b2, pytest.raises(UsageError):
            srp_client_socket(a2, "", "pw")
        assert a2.fileno() == -1


# -- the socket surface after the handshake ---------------------------------------


@pytest.fixture
def pair(userdb: UserDB, serve_once: Any) -> Iterator[tuple[TLSLiteSocket, TLSLiteSocket]]:
    """(server side, client side) of one authenticated connection."""
    box: dict[str, Any] = {}
    ready = threading.Event()
    release = threading.Event()

    def hold(sock: Any, shot: OneShot) -> None:
        box["server"] = sock
        ready.set()
        release.wait(WAIT)

    shot = serve_once(SRPAuthenticator(userdb), hold)
    client = login(shot.port)
    assert ready.wait(WAIT)
    try:
        yield box["server"], client
    finally:
        client.close()
        release.set()
        shot.wait()


def recv_exactly(sock: Any, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        assert k, "unexpected EOF"
        got += k
    return bytes(buf)


def test_surface_matches_the_real_socket(pair: tuple[TLSLiteSocket, TLSLiteSocket]) -> None:
    server, client = pair
    assert server.getsockname() == client.getpeername()
    assert server.getpeername() == client.getsockname()
    assert server.fileno() >= 0 and server.family == socket.AF_INET
    assert server.type == socket.SOCK_STREAM
    assert server.gettimeout() is None  # accepted sockets are blocking
    server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with pytest.raises(ValueError):
        server.settimeout(-1)
    client.sendall(b"abc")
    buf = bytearray(10)
    assert server.recv_into(buf, 2) == 2 and buf[:2] == b"ab"  # nbytes is honoured
    assert server.pending() >= 1
    assert server.recv_into(memoryview(buf)[5:]) == 1 and buf[5:6] == b"c"
    assert server.recv_into(bytearray(0)) == 0
    assert server.pending() == 0
    assert server.send(b"xyz") == 3 and client.recv(10) == b"xyz"


def test_tlslite_buffers_are_counted() -> None:
    """pending() reads two private tlslite-ng buffers (tlslite has no public call
    for it); a tlslite release that renames or stops using them fails here first."""
    ours, peer = socket.socketpair()
    with ours, peer:
        conn = TLSConnection(ours)
        assert tlslite_buffered_bytes(conn) == 0
        conn.unread(b"abc")  # public: puts decrypted bytes back in front of the stream
        assert tlslite_buffered_bytes(conn) == 3
        peer.sendall(b"0123456789")
        assert conn.sock.recv(1) == b"0"  # tlslite's socket wrapper reads ahead
        assert tlslite_buffered_bytes(conn) == 3 + 9


def test_read_timeout_leaves_the_session_usable(
    pair: tuple[TLSLiteSocket, TLSLiteSocket],
) -> None:
    server, client = pair
    server.settimeout(0.05)
    with pytest.raises(TimeoutError):
        server.recv_into(bytearray(10))
    server.setblocking(False)
    with pytest.raises(BlockingIOError):
        server.recv_into(bytearray(10))
    server.settimeout(WAIT)
    client.sendall(b"still alive")
    assert recv_exactly(server, 11) == b"still alive"


def test_timeouts_in_the_middle_of_records_resume(userdb: UserDB, serve_once: Any) -> None:
    # A relay that, once told to, trickles client->server bytes 5 at a time, so the
    # server's short reads time out halfway through records again and again.
    slow, release = threading.Event(), threading.Event()
    shot = serve_once(SRPAuthenticator(userdb), lambda sock, shot: release.wait(WAIT))
    relay = socket.create_server(("127.0.0.1", 0))
    relay.settimeout(WAIT)

    def pump(src: socket.socket, dst: socket.socket, trickle: bool) -> None:
        try:
            while data := src.recv(65536):
                while trickle and slow.is_set() and data:
                    dst.sendall(data[:5])
                    data = data[5:]
                    time.sleep(0.002)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            dst.close()

    def accept() -> None:
        inner, _ = relay.accept()
        outer = connect(shot.port)
        threading.Thread(target=pump, args=(inner, outer, True), daemon=True).start()
        threading.Thread(target=pump, args=(outer, inner, False), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    client = srp_client_socket(connect(relay.getsockname()[1]), "alice", ALICE_PW)
    assert shot.done.wait(WAIT)
    server = shot.result.sock
    try:
        slow.set()
        message = os.urandom(3000)
        client.sendall(message)
        server.settimeout(0.001)
        got, timeouts = b"", 0

        def all_received() -> bool:
            nonlocal got, timeouts
            try:
                got += server.recv(len(message) - len(got))
            except TimeoutError:
                timeouts += 1
            return len(got) == len(message)

        wait_until(all_received, WAIT, step=0.0, what="the whole message")
        assert got == message
        assert timeouts > 10  # the point: many timeouts mid-record, no damage
        server.settimeout(WAIT)
        server.sendall(b"ok\n")
        assert read_line(client) == b"ok\n"
    finally:
        client.close()
        release.set()
        shot.wait()
        relay.close()


def test_send_retry_after_timeout_under_backpressure(
    pair: tuple[TLSLiteSocket, TLSLiteSocket],
) -> None:
    # The core transport's write loop: send() with a short timeout, retry the same
    # view on TimeoutError. The peer does not read for a while, so sends time out
    # with records half written; the stream must come out intact.
    server, client = pair
    payload = os.urandom(8 * 1024 * 1024)
    received: list[bytes] = []

    def reader() -> None:
        time.sleep(0.5)
        client.settimeout(WAIT)
        received.append(recv_exactly(client, len(payload)))

    t = threading.Thread(target=reader)
    t.start()
    server.settimeout(0.02)
    view, timeouts = memoryview(payload), 0

    def all_sent() -> bool:
        nonlocal view, timeouts
        try:
            view = view[server.send(view) :]
        except TimeoutError:
            timeouts += 1
        return not view

    wait_until(all_sent, 4 * WAIT, step=0.0, what="the whole payload sent")
    t.join(4 * WAIT)
    assert not view and timeouts > 0
    assert hashlib.sha256(received[0]).digest() == hashlib.sha256(payload).digest()


def test_retrying_with_other_data_breaks_the_stream(
    pair: tuple[TLSLiteSocket, TLSLiteSocket],
) -> None:
    server, _client = pair
    server.settimeout(0.01)
    big = bytes(64 * 1024)
    with pytest.raises(TimeoutError):
        for _ in range(10_000):  # fill the socket buffers until a send times out
            server.send(big)
    with pytest.raises(BrokenPipeError):
        server.send(b"something else")
    with pytest.raises(BrokenPipeError):
        server.sendall(b"anything")


def test_full_duplex_transfer(pair: tuple[TLSLiteSocket, TLSLiteSocket]) -> None:
    server, client = pair
    server.settimeout(WAIT)
    client.settimeout(WAIT)
    size = 2 * 1024 * 1024
    up, down = os.urandom(size), os.urandom(size)
    results: dict[str, bytes] = {}
    errors: list[BaseException] = []

    def run(name: str, fn: Any, *args: Any) -> threading.Thread:
        def target() -> None:
            try:
                out = fn(*args)
                if out is not None:
                    results[name] = out
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=target)
        t.start()
        return t

    threads = [
        run("c-send", client.sendall, up),
        run("s-send", server.sendall, down),
        run("s-recv", recv_exactly, server, size),
        run("c-recv", recv_exactly, client, size),
    ]
    for t in threads:
        t.join(4 * WAIT)
    assert not errors
    assert results["s-recv"] == up and results["c-recv"] == down


def test_close_wakes_a_blocked_reader(pair: tuple[TLSLiteSocket, TLSLiteSocket]) -> None:
    server, _client = pair
    server.settimeout(None)
    outcome: list[object] = []

    def block() -> None:
        try:
            outcome.append(server.recv_into(bytearray(10)))
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=block)
    t.start()
    time.sleep(0.1)
    server.close()
    t.join(WAIT)
    assert not t.is_alive() and outcome == [0]
    assert server.closed
    server.close()  # idempotent
    with pytest.raises(OSError):
        server.sendall(b"x")


def test_peer_close_reads_as_eof(pair: tuple[TLSLiteSocket, TLSLiteSocket]) -> None:
    server, client = pair
    server.settimeout(WAIT)
    client.sendall(b"last words")
    client.close()  # with close_notify
    assert recv_exactly(server, 10) == b"last words"
    assert server.recv_into(bytearray(10)) == 0
    assert server.recv_into(bytearray(10)) == 0


def test_abrupt_peer_close_reads_as_eof(pair: tuple[TLSLiteSocket, TLSLiteSocket]) -> None:
    server, client = pair
    server.settimeout(WAIT)
    client.shutdown(socket.SHUT_RDWR)  # the TCP connection ends, no close_notify
    assert server.recv_into(bytearray(10)) == 0
