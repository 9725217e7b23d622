"""Our TLS 1.2 record layer (rpyc_ipy.auth.tls12_records) after a TLS-SRP handshake.

Two parts: the sans-I/O object on its own (keys chosen here, every check it makes), and
interop over real loopback sockets with plain tlslite-ng as the peer, in both roles.
Attacks the tlslite peer cannot be told to make (a tampered record, an oversized one, a
renegotiation) are crafted with the peer's own keys, taken by ``tlslite_handover``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from authkit import WAIT, OneShot, connect
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from tlslite import TLSConnection
from tlslite.constants import AlertDescription
from tlslite.errors import TLSRemoteAlert
from tlslite.mathtls import makeVerifier

from rpyc_ipy.auth.srp_client import srp_client_socket
from rpyc_ipy.auth.srp_server import SRPAuthenticator
from rpyc_ipy.auth.srp_socket import TLSLiteSocket, srp_settings, tlslite_handover
from rpyc_ipy.auth.tls12_records import (
    ALERT,
    APPLICATION_DATA,
    BAD_RECORD_MAC,
    CLOSE_NOTIFY,
    DECODE_ERROR,
    FATAL,
    HANDSHAKE,
    MAX_CIPHERTEXT,
    MAX_PLAINTEXT,
    RECORD_OVERFLOW,
    UNEXPECTED_MESSAGE,
    WARNING,
    Alert,
    DirectionKeys,
    TLS12Records,
)
from rpyc_ipy.auth.userdb import UserDB
from rpyc_ipy.errors import TLSRecordError

ALICE_PW = "correct horse"
MULTI = os.urandom(5 * MAX_PLAINTEXT + 123)  # six records


# -- the sans-I/O record layer -------------------------------------------------------


def keys(size: int = 32, seqnum: int = 1) -> tuple[DirectionKeys, DirectionKeys]:
    """(client→server, server→client) keys."""
    return (DirectionKeys(os.urandom(size), os.urandom(20), seqnum),
            DirectionKeys(os.urandom(size), os.urandom(20), seqnum))


def pair(size: int = 32, seqnum: int = 1) -> tuple[TLS12Records, TLS12Records]:
    up, down = keys(size, seqnum)
    return TLS12Records(up, down), TLS12Records(down, up)


def reference_record(key: DirectionKeys, content_type: int, fragment: bytes,
                     pad: bytes | None = None) -> bytes:
    """One record built from RFC 5246 / RFC 7366 with per-record contexts, independent
    of the code under test; ``pad`` overrides the padding (to make bad ones)."""
    if pad is None:
        n = 15 - len(fragment) % 16
        pad = bytes((n,)) * (n + 1)
    iv = os.urandom(16)
    enc = Cipher(algorithms.AES(key.cipher_key), modes.CBC(iv)).encryptor()
    body = iv + enc.update(fragment + pad) + enc.finalize()
    mac = hmac.new(key.mac_key, struct.pack(">QBBBH", key.seqnum, content_type, 3, 3,
                                            len(body)) + body, hashlib.sha1).digest()
    return struct.pack(">BBBH", content_type, 3, 3, len(body) + 20) + body + mac


def open_all(records: TLS12Records, wire: bytes, step: int) -> bytes:
    out = []
    for start in range(0, len(wire), step):
        data, alert = records.open(wire[start : start + step])
        assert alert is None
        out.append(data)
    assert records.buffered() == 0
    return b"".join(out)


@pytest.mark.parametrize("size", [16, 32])
@pytest.mark.parametrize("payload", [b"x", bytes(15), bytes(16), os.urandom(MAX_PLAINTEXT),
                                     os.urandom(MAX_PLAINTEXT + 1), MULTI])
def test_seal_then_open(size: int, payload: bytes) -> None:
    client, server = pair(size)
    wire = client.seal(payload)
    records = -(-len(payload) // MAX_PLAINTEXT)
    assert len(wire) == sum(5 + 16 + (n // 16 + 1) * 16 + 20
                            for n in [MAX_PLAINTEXT] * (records - 1)
                            + [len(payload) - MAX_PLAINTEXT * (records - 1)])
    assert open_all(server, wire, len(wire)) == payload
    # the same bytes again, cut anywhere: the chains and sequence numbers carry on
    wire = client.seal(payload) + client.seal(b"tail")
    assert open_all(server, wire, 4097) == payload + b"tail"


def test_byte_by_byte_and_empty() -> None:
    client, server = pair()
    assert client.seal(b"") == b""
    wire = client.seal(b"one") + client.seal(bytearray(b"two")) + client.seal(memoryview(b"3"))
    assert open_all(server, wire, 1) == b"onetwo3"


def test_matches_an_independent_implementation() -> None:
    up, down = keys(16, seqnum=7)
    ours = TLS12Records(up, down)
    peer = TLS12Records(down, up)
    theirs = reference_record(up, APPLICATION_DATA, b"reference")
    # a record built by the book opens, and ours opens with the book's checks
    assert peer.open(theirs) == (b"reference", None)
    mine = ours.seal(b"hello")
    header, body, mac = mine[:5], mine[5:-20], mine[-20:]
    assert header == struct.pack(">BBBH", APPLICATION_DATA, 3, 3, len(body) + 20)
    assert mac == hmac.new(up.mac_key, struct.pack(">QBBBH", 7, APPLICATION_DATA, 3, 3,
                                                   len(body)) + body, hashlib.sha1).digest()
    dec = Cipher(algorithms.AES(up.cipher_key), modes.CBC(body[:16])).decryptor()
    assert dec.update(body[16:]) == b"hello" + bytes((10,)) * 11


def test_every_record_gets_a_fresh_iv() -> None:
    client, _ = pair()
    first, second = client.seal(b"same"), client.seal(b"same")
    assert first[5:21] != second[5:21] and first[21:-20] != second[21:-20]


@pytest.mark.parametrize("where", [0, 1, 2, 5, 20, 21, -21, -1])  # not the length
def test_any_altered_byte_is_refused(where: int) -> None:
    client, server = pair()
    wire = bytearray(client.seal(b"x" * 40))
    wire[where] ^= 0x01
    with pytest.raises(TLSRecordError) as info:
        server.open(bytes(wire))
    assert info.value.alert in (BAD_RECORD_MAC, DECODE_ERROR, UNEXPECTED_MESSAGE)
    with pytest.raises(TLSRecordError):  # and the reading side is done for good
        server.open(client.seal(b"later"))


def test_replayed_or_reordered_record_is_refused() -> None:
    client, server = pair()
    first, second = client.seal(b"1"), client.seal(b"2")
    with pytest.raises(TLSRecordError, match="bad MAC"):
        server.open(second + first)


def test_bad_padding_under_a_good_mac_is_refused() -> None:
    up, down = keys()
    server = TLS12Records(down, up)
    with pytest.raises(TLSRecordError, match="padding") as info:
        server.open(reference_record(up, APPLICATION_DATA, b"abc", pad=bytes((11,)) * 12 + b"\x0c"))
    assert info.value.alert == BAD_RECORD_MAC
    up2, down2 = keys()
    with pytest.raises(TLSRecordError, match="padding"):  # longer than the record
        TLS12Records(down2, up2).open(reference_record(up2, APPLICATION_DATA, b"",
                                                       pad=bytes((40,)) * 16))


def test_record_length_limit_one_step_over() -> None:
    _, server = pair()
    with pytest.raises(TLSRecordError, match="over the limit") as info:
        server.open(struct.pack(">BBBH", APPLICATION_DATA, 3, 3, MAX_CIPHERTEXT + 1))
    assert info.value.alert == RECORD_OVERFLOW
    _, server = pair()
    head = struct.pack(">BBBH", APPLICATION_DATA, 3, 3, MAX_CIPHERTEXT)
    assert server.open(head) == (b"", None)  # at the limit: waits for the body
    filler = os.urandom(MAX_CIPHERTEXT)
    pieces = [filler[start : start + 1000] for start in range(0, MAX_CIPHERTEXT, 1000)]
    for piece in pieces[:-1]:  # held until whole, never more than one record
        assert server.open(piece) == (b"", None)
        assert server.buffered() <= 5 + MAX_CIPHERTEXT
    with pytest.raises(TLSRecordError) as info:  # refused, but not for its size
        server.open(pieces[-1])
    assert info.value.alert == BAD_RECORD_MAC


@pytest.mark.parametrize("length", [0, 16, 20, 51, 52 + 1])
def test_impossible_lengths_are_refused(length: int) -> None:
    _, server = pair()
    with pytest.raises(TLSRecordError, match="impossible length"):
        server.open(struct.pack(">BBBH", APPLICATION_DATA, 3, 3, length) + bytes(length))


def test_other_version_is_refused() -> None:
    _, server = pair()
    with pytest.raises(TLSRecordError, match=r"version 3\.1") as info:
        server.open(struct.pack(">BBBH", APPLICATION_DATA, 3, 1, 52) + bytes(52))
    assert info.value.alert == DECODE_ERROR


def test_alerts() -> None:
    client, server = pair()
    # a warning other than close_notify is skipped; close_notify ends the stream
    wire = (client.seal(b"before") + client.alert(90, WARNING) + client.seal(b"more")
            + client.alert(CLOSE_NOTIFY, WARNING))
    assert server.open(wire + b"ignored after close_notify") == (b"beforemore",
                                                                 Alert(WARNING, CLOSE_NOTIFY))
    with pytest.raises(TLSRecordError, match="closed for writing"):
        client.seal(b"after close_notify")
    with pytest.raises(TLSRecordError, match="closed for reading"):
        server.open(b"")
    client, server = pair()
    assert server.open(client.alert(BAD_RECORD_MAC)) == (b"", Alert(FATAL, BAD_RECORD_MAC))
    client, server = pair()
    with pytest.raises(TLSRecordError, match="malformed TLS alert"):
        server.open(client.seal(b"\x02\x14\x00", ALERT))


def test_renegotiation_and_other_types_are_refused() -> None:
    client, server = pair()
    with pytest.raises(TLSRecordError, match="renegotiate") as info:
        server.open(client.seal(b"\x00\x00\x00\x00", HANDSHAKE))  # HelloRequest
    assert info.value.alert == UNEXPECTED_MESSAGE
    client, server = pair()
    with pytest.raises(TLSRecordError, match="record type 20"):
        server.open(client.seal(b"\x01", 20))  # ChangeCipherSpec


def test_sequence_numbers_never_wrap() -> None:
    client, server = pair(seqnum=2**64 - 2)
    assert server.open(client.seal(b"last")) == (b"last", None)
    with pytest.raises(TLSRecordError, match="exhausted"):
        client.seal(b"one too many")
    with pytest.raises(TLSRecordError, match="exhausted"):
        server.open(struct.pack(">BBBH", APPLICATION_DATA, 3, 3, 52) + bytes(52))
    with pytest.raises(ValueError):
        DirectionKeys(bytes(16), bytes(20), 2**64)
    with pytest.raises(ValueError):
        DirectionKeys(bytes(24), bytes(20), 0)  # AES-192 is no SRP suite


# -- interop with plain tlslite-ng over loopback ----------------------------------------


def tlslite_client(port: int, **settings: Any) -> TLSConnection:
    """A plain tlslite-ng client logged in as alice (blocking, bounded by WAIT)."""
    conn = TLSConnection(connect(port))
    chosen = srp_settings()
    for name, value in settings.items():
        setattr(chosen, name, value)
    conn.handshakeClientSRP(bytearray(b"alice"), bytearray(ALICE_PW.encode()),
                            settings=chosen.validate())
    return conn


@pytest.fixture
def ours_server(userdb: UserDB, serve_once: Any) -> Iterator[tuple[TLSLiteSocket, TLSConnection]]:
    """(our server side, a plain tlslite client)."""
    box: dict[str, Any] = {}
    ready, release = threading.Event(), threading.Event()

    def hold(sock: Any, shot: OneShot) -> None:
        box["ours"] = sock
        ready.set()
        release.wait(WAIT)

    shot = serve_once(SRPAuthenticator(userdb), hold)
    peer = tlslite_client(shot.port)
    assert ready.wait(WAIT)
    try:
        yield box["ours"], peer
    finally:
        peer.sock.socket.close()
        release.set()
        shot.wait()


@pytest.fixture
def ours_client() -> Iterator[tuple[TLSLiteSocket, TLSConnection]]:
    """(our client side, a plain tlslite server)."""
    verifiers = {b"alice": makeVerifier(bytearray(b"alice"), bytearray(ALICE_PW.encode()), 2048)}
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(WAIT)
    box: dict[str, Any] = {}

    def serve() -> None:
        raw, _ = listener.accept()
        raw.settimeout(WAIT)
        conn = TLSConnection(raw)
        conn.handshakeServer(verifierDB=verifiers, settings=srp_settings())
        box["peer"] = conn

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ours = srp_client_socket(connect(listener.getsockname()[1]), "alice", ALICE_PW,
                             handshake_timeout=WAIT)
    thread.join(WAIT)
    listener.close()
    try:
        yield ours, box["peer"]
    finally:
        ours.close()
        box["peer"].sock.socket.close()


@pytest.fixture(params=["ours-server", "ours-client"])
def link(request: pytest.FixtureRequest) -> tuple[TLSLiteSocket, TLSConnection]:
    """Our side and a plain tlslite peer, in either role."""
    fixture = "ours_server" if request.param == "ours-server" else "ours_client"
    value: tuple[TLSLiteSocket, TLSConnection] = request.getfixturevalue(fixture)
    return value


def recv_exactly(sock: TLSLiteSocket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    for _ in range(n + 1):
        if got == n:
            break
        k = sock.recv_into(view[got:])
        assert k, "unexpected EOF"
        got += k
    assert got == n
    return bytes(buf)


def peer_read_exactly(peer: TLSConnection, n: int) -> bytes:
    out = bytearray()
    for _ in range(n + 1):
        if len(out) >= n:
            break
        chunk = peer.read(max=n - len(out))
        assert chunk, "unexpected EOF"
        out += chunk
    return bytes(out)


def crafted(peer: TLSConnection) -> TLS12Records:
    """Our record layer on the tlslite peer's keys (nothing else of the peer is used after)."""
    handover = tlslite_handover(peer)
    assert handover is not None and not handover.plaintext and not handover.raw
    return TLS12Records(handover.write, handover.read)


@pytest.mark.parametrize("payload", [b"ping", MULTI])
def test_both_ways_with_tlslite_as_peer(link: tuple[TLSLiteSocket, TLSConnection],
                                        payload: bytes) -> None:
    ours, peer = link
    assert ours.record_layer() == "rpyc_ipy"
    ours.settimeout(WAIT)
    peer.write(payload)
    assert recv_exactly(ours, len(payload)) == payload
    ours.sendall(payload)
    assert peer_read_exactly(peer, len(payload)) == payload
    taken = ours.send(payload)  # one call takes at most four records' worth
    assert taken == min(len(payload), 4 * MAX_PLAINTEXT)
    assert peer_read_exactly(peer, taken) == payload[:taken]


def test_close_notify_from_tlslite_reads_as_eof(link: tuple[TLSLiteSocket, TLSConnection]) -> None:
    ours, peer = link
    ours.settimeout(WAIT)
    peer.write(b"last words")
    peer.close()  # sends close_notify
    assert recv_exactly(ours, 10) == b"last words"
    assert ours.recv_into(bytearray(10)) == 0
    assert ours.recv_into(bytearray(10)) == 0


def test_close_notify_to_tlslite(link: tuple[TLSLiteSocket, TLSConnection]) -> None:
    ours, peer = link
    ours.sendall(b"bye")
    ours.close()
    assert peer.read(max=3) == b"bye"
    assert peer.read() == b""  # tlslite's EOF after a close_notify
    assert peer.closed


def expect_alert(peer: TLSConnection, description: int) -> None:
    with pytest.raises(TLSRemoteAlert) as info:
        peer.read()
    assert info.value.description == description


def test_tampered_record_is_refused(link: tuple[TLSLiteSocket, TLSConnection]) -> None:
    ours, peer = link
    ours.settimeout(WAIT)
    record = bytearray(crafted(peer).seal(b"transfer 100 to alice"))
    record[30] ^= 0x40
    peer.sock.socket.sendall(record)
    with pytest.raises(ConnectionAbortedError, match="bad MAC"):
        ours.recv_into(bytearray(100))
    with pytest.raises(ConnectionAbortedError, match="bad MAC"):  # and it stays refused
        ours.recv_into(bytearray(100))
    expect_alert(peer, AlertDescription.bad_record_mac)
    with pytest.raises(OSError):
        ours.sendall(b"nothing more")


def test_record_one_byte_over_the_limit_is_refused(
    link: tuple[TLSLiteSocket, TLSConnection],
) -> None:
    ours, peer = link
    ours.settimeout(WAIT)
    peer.sock.socket.sendall(struct.pack(">BBBH", APPLICATION_DATA, 3, 3, MAX_CIPHERTEXT + 1))
    with pytest.raises(ConnectionAbortedError, match="over the limit"):
        ours.recv_into(bytearray(100))
    expect_alert(peer, AlertDescription.record_overflow)


def test_renegotiation_is_refused(link: tuple[TLSLiteSocket, TLSConnection]) -> None:
    ours, peer = link
    ours.settimeout(WAIT)
    peer.sock.socket.sendall(crafted(peer).seal(b"\x00\x00\x00\x00", HANDSHAKE))  # HelloRequest
    with pytest.raises(ConnectionAbortedError, match="renegotiate"):
        ours.recv_into(bytearray(100))
    expect_alert(peer, AlertDescription.unexpected_message)


def test_fatal_alert_from_the_peer_is_an_error(
    link: tuple[TLSLiteSocket, TLSConnection],
) -> None:
    ours, peer = link
    ours.settimeout(WAIT)
    records = crafted(peer)
    peer.sock.socket.sendall(records.seal(b"then") + records.alert(AlertDescription.internal_error))
    assert recv_exactly(ours, 4) == b"then"
    with pytest.raises(ConnectionAbortedError, match="fatal internal_error alert"):
        ours.recv_into(bytearray(10))


def test_without_encrypt_then_mac_tlslite_keeps_the_records(
    userdb: UserDB, serve_once: Any,
) -> None:
    box: dict[str, Any] = {}

    def echo(sock: Any, shot: OneShot) -> None:
        box["layer"] = sock.record_layer()
        sock.settimeout(WAIT)
        sock.sendall(recv_exactly(sock, 5))

    shot = serve_once(SRPAuthenticator(userdb), echo)
    peer = tlslite_client(shot.port, useEncryptThenMAC=False)
    try:
        assert not peer.encryptThenMAC
        peer.write(b"hello")
        assert peer_read_exactly(peer, 5) == b"hello"
    finally:
        peer.close()
    shot.wait()
    assert shot.error is None, shot.error
    assert box["layer"] == "tlslite"
    assert tlslite_handover(peer) is None


def test_handover_keys_and_buffers_match_tlslite(ours_client: Any) -> None:
    """tlslite_handover reads private tlslite-ng state (pinned <0.9): a release that
    changes it fails here. Both ends of one session must derive mirrored keys, and
    bytes tlslite read but did not return must be carried over."""
    ours, peer = ours_client
    ours.sendall(b"A" * 100 + b"B" * 100 + b"C" * 100)
    assert peer.read(max=10) == b"A" * 10  # tlslite now holds decrypted and maybe raw bytes
    handover = tlslite_handover(peer)
    assert handover is not None
    assert handover.write.seqnum == 1 and handover.read.seqnum == 2
    records = TLS12Records(handover.write, handover.read)
    rest = handover.plaintext + records.open(handover.raw)[0]
    raw = peer.sock.socket
    for _ in range(300):
        if len(rest) >= 290:
            break
        rest += records.open(raw.recv(4096))[0]
    assert rest == b"A" * 90 + b"B" * 100 + b"C" * 100
    raw.sendall(records.seal(b"answer"))
    ours.settimeout(WAIT)
    assert recv_exactly(ours, 6) == b"answer"


def test_changed_tlslite_internals_fail_loudly(
    ours_client: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a tlslite-ng release without the state tlslite_handover reads looks like:
    a clear error naming the versions to install, not an AttributeError."""
    _, peer = ours_client
    monkeypatch.delattr(peer, "_clientRandom")
    with pytest.raises(RuntimeError, match=r"install tlslite-ng>=0\.8\.0,<0\.9"):
        tlslite_handover(peer)
