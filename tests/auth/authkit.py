"""Helpers and fixtures for the authenticator tests: throwaway PKI, one-shot servers,
a user DB. (A uniquely named module, not conftest, so tests can import from it.)

Everything listens on 127.0.0.1 port 0, and every wait is bounded.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rpyc_ipy.auth.userdb import UserDB

WAIT = 10.0  # upper bound for any single wait in these tests
PING = b"ping from the client\n"


# -- throwaway PKI ------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server: bool = False,
    client: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass(frozen=True)
class PKI:
    """Paths of the throwaway certificates (all PEM)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    untrusted_ca: Path
    rogue_cert: Path  # for 127.0.0.1/localhost, but issued by the untrusted CA
    rogue_key: Path


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    d = tmp_path_factory.mktemp("pki")

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def save(name: str, cert: x509.Certificate, k: ec.EllipticCurvePrivateKey | None) -> Path:
        (d / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        if k is not None:
            _write_key(d / f"{name}.key", k)
        return d / f"{name}.pem"

    ca_key, bad_ca_key = key(), key()
    save("ca", _cert("rpyc_ipy test CA", ca_key, "rpyc_ipy test CA", ca_key, ca=True), None)
    save(
        "untrusted_ca",
        _cert("untrusted CA", bad_ca_key, "untrusted CA", bad_ca_key, ca=True),
        None,
    )
    k = key()
    save("server", _cert("127.0.0.1", k, "rpyc_ipy test CA", ca_key, server=True), k)
    k = key()
    save("client", _cert("alice-client", k, "rpyc_ipy test CA", ca_key, client=True), k)
    k = key()
    save("rogue", _cert("127.0.0.1", k, "untrusted CA", bad_ca_key, server=True), k)
    return PKI(
        ca=d / "ca.pem",
        server_cert=d / "server.pem",
        server_key=d / "server.key",
        client_cert=d / "client.pem",
        client_key=d / "client.key",
        untrusted_ca=d / "untrusted_ca.pem",
        rogue_cert=d / "rogue.pem",
        rogue_key=d / "rogue.key",
    )


# -- a one-shot server that drives an authenticator ---------------------------------


def read_line(sock: Any, limit: int = 4096) -> bytes:
    """Read through ``recv_into`` until a newline or EOF (the contract under test)."""
    buf = bytearray(limit)
    view = memoryview(buf)
    got = 0
    while got < limit:
        n = sock.recv_into(view[got:], min(7, limit - got))  # small reads on purpose
        if n == 0:
            break
        got += n
        if b"\n" in bytes(view[got - n : got]):
            break
    return bytes(buf[:got])


@dataclass
class OneShot:
    """Result of serving exactly one connection with an authenticator."""

    port: int
    thread: threading.Thread
    result: Any = None
    error: BaseException | None = None
    received: bytes = b""
    eof_after_reply: bool | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def wait(self, timeout: float = WAIT) -> OneShot:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "server thread did not finish in time"
        return self


def _echo(sock: Any, shot: OneShot) -> None:
    sock.settimeout(WAIT)
    shot.received = read_line(sock)
    sock.sendall(b"pong:" + shot.received)
    # the client closes after reading the reply: EOF must read as 0
    shot.eof_after_reply = sock.recv_into(bytearray(16), 16) == 0


@pytest.fixture
def serve_once() -> Iterator[Callable[..., OneShot]]:
    """``serve_once(auth, handler=echo)``: accept one client, run ``auth`` on it and,
    on success, ``handler(sock, shot)``; the returned socket is closed afterwards."""
    listeners: list[socket.socket] = []
    shots: list[OneShot] = []

    def start(
        authenticator: Callable[[socket.socket], Any],
        handler: Callable[[Any, OneShot], None] | None = _echo,
    ) -> OneShot:
        lst = socket.create_server(("127.0.0.1", 0))
        lst.settimeout(WAIT)
        listeners.append(lst)

        def run() -> None:
            try:
                conn, _ = lst.accept()
            except OSError as exc:
                shot.error = exc
                return
            try:
                shot.result = authenticator(conn)
            except BaseException as exc:
                shot.error = exc
                conn.close()
                return
            finally:
                shot.done.set()
            if not isinstance(shot.result, tuple):
                return  # a stand-in "authenticator" that handled the socket itself
            sock = shot.result[0]
            try:
                if handler is not None:
                    handler(sock, shot)
            except BaseException as exc:
                shot.error = exc
            finally:
                sock.close()

        shot = OneShot(port=lst.getsockname()[1], thread=threading.Thread(target=run, daemon=True))
        shots.append(shot)
        shot.thread.start()
        return shot

    yield start
    for lst in listeners:
        lst.close()
    for shot in shots:
        shot.thread.join(WAIT)


def connect(port: int, timeout: float | None = WAIT) -> socket.socket:
    """A plain TCP connection to 127.0.0.1:port."""
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def client_exchange(sock: Any) -> bytes:
    """The client half of the echo handler: send PING, return the reply, close."""
    try:
        sock.sendall(PING)
        return read_line(sock)
    finally:
        sock.close()


@pytest.fixture
def userdb(tmp_path: Path) -> UserDB:
    """A fresh database with alice (password "correct horse") and bob."""
    db = UserDB.create(tmp_path / "users.json")
    db.add("alice", "correct horse")
    db.add("bob", "battery staple")
    return db


def tls_socket_pair(pki: PKI) -> tuple[ssl.SSLSocket, ssl.SSLSocket]:
    """``(server side, client side)`` of one TLS 1.3 connection on 127.0.0.1, the server
    presenting ``pki``'s certificate and the client verifying it."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pki.server_cert, pki.server_key)
    server_ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(pki.ca)
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[ssl.SSLSocket] = []
    acceptor = threading.Thread(
        target=lambda: accepted.append(server_ctx.wrap_socket(listener.accept()[0],
                                                              server_side=True)),
        daemon=True)
    acceptor.start()
    client = client_ctx.wrap_socket(socket.create_connection(listener.getsockname()),
                                    server_hostname="127.0.0.1")
    acceptor.join(10)
    listener.close()
    return accepted[0], client
