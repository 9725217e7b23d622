"""SSLAuthenticator (server) and the client-side TLS helpers, over real loopback sockets."""

from __future__ import annotations

import ssl
import time
import warnings
from typing import Any

import pytest
from authkit import PING, PKI, WAIT, OneShot, client_exchange, connect

import rpyc_ipy
from rpyc_ipy.auth.base import SocketLike
from rpyc_ipy.auth.tls_client import (
    certificate_fingerprint,
    create_client_context,
    normalize_fingerprint,
    wrap_client_socket,
)
from rpyc_ipy.auth.tls_server import SSLAuthenticator
from rpyc_ipy.errors import AuthenticationError, ConfigError, UsageError


def server_auth(pki: PKI, **kw: Any) -> SSLAuthenticator:
    return SSLAuthenticator(pki.server_key, pki.server_cert, **kw)


def mutual_auth(pki: PKI, **kw: Any) -> SSLAuthenticator:
    return SSLAuthenticator(pki.server_key, pki.server_cert, ca_certs=pki.ca, **kw)


def assert_echoed(shot: OneShot, reply: bytes) -> None:
    shot.wait()
    assert shot.error is None, shot.error
    assert shot.received == PING
    assert reply == b"pong:" + PING
    assert shot.eof_after_reply is True


def test_mutual_tls_roundtrip(pki: PKI, serve_once: Any) -> None:
    shot = serve_once(mutual_auth(pki))
    ctx = create_client_context(ca=pki.ca, certfile=pki.client_cert, keyfile=pki.client_key)
    tls = wrap_client_socket(connect(shot.port), "127.0.0.1", ctx)
    assert isinstance(tls, SocketLike)
    assert tls.version() in ("TLSv1.2", "TLSv1.3")
    assert tls.gettimeout() == WAIT  # the caller's timeout is back after the handshake
    assert_echoed(shot, client_exchange(tls))
    sock, creds = shot.result
    assert isinstance(sock, SocketLike)
    assert dict(x[0] for x in creds["subject"])["commonName"] == "alice-client"


def test_server_only_tls_by_host_name(pki: PKI, serve_once: Any) -> None:
    shot = serve_once(server_auth(pki))
    ctx = create_client_context(ca=pki.ca)
    tls = wrap_client_socket(connect(shot.port), "localhost", ctx)
    assert_echoed(shot, client_exchange(tls))
    assert shot.result.credentials is None  # no client certificate was asked for


def test_server_socket_back_in_blocking_mode(pki: PKI, serve_once: Any) -> None:
    seen: dict[str, Any] = {}

    def handler(sock: Any, shot: OneShot) -> None:
        seen["timeout"] = sock.gettimeout()

    shot = serve_once(server_auth(pki), handler)
    tls = wrap_client_socket(connect(shot.port), "127.0.0.1", create_client_context(ca=pki.ca))
    shot.wait()
    tls.close()
    assert shot.error is None
    assert seen["timeout"] is None  # accepted sockets are blocking; so is the result


def test_plaintext_client_is_refused_cleanly(pki: PKI, serve_once: Any) -> None:
    # the handshake timeout is far beyond the client's wait: only a refusal ends it in time
    shot = serve_once(server_auth(pki, handshake_timeout=6 * WAIT))
    with connect(shot.port) as raw:
        # what a plain RPyC client would send: a frame header and some brine
        raw.sendall(b"\x00\x00\x00\x0b\x00\x01\x12\x00\x14\x08\x05hello\n")
        raw.settimeout(WAIT)  # TimeoutError here fails the test
        try:
            leftover = raw.recv(4096)  # an alert, or nothing
            assert not leftover.startswith(b"\x00\x00")  # never a frame
        except ConnectionResetError:
            pass
    shot.wait()
    assert isinstance(shot.error, AuthenticationError)
    assert "TLS handshake failed" in str(shot.error)
    assert "timed out" not in str(shot.error)  # refused at once, not by the timeout


def test_untrusted_server_certificate_is_refused(pki: PKI, serve_once: Any) -> None:
    shot = serve_once(SSLAuthenticator(pki.rogue_key, pki.rogue_cert))
    ctx = create_client_context(ca=pki.ca)
    with pytest.raises(AuthenticationError, match="certificate verification failed"):
        wrap_client_socket(connect(shot.port), "127.0.0.1", ctx)
    shot.wait()
    assert isinstance(shot.error, AuthenticationError)  # the server sees the abort


def test_host_name_mismatch_is_refused(pki: PKI, serve_once: Any) -> None:
    shot = serve_once(server_auth(pki))
    ctx = create_client_context(ca=pki.ca)
    with pytest.raises(AuthenticationError, match="certificate verification failed"):
        wrap_client_socket(connect(shot.port), "not-this-host.example", ctx)
    shot.wait()


def test_default_context_uses_system_store_not_nothing(pki: PKI, serve_once: Any) -> None:
    # No ca, no pin: verification is still on (system CAs), so our test CA fails.
    shot = serve_once(server_auth(pki))
    with pytest.raises(AuthenticationError, match="certificate verification failed"):
        wrap_client_socket(connect(shot.port), "127.0.0.1", create_client_context())
    shot.wait()


def test_mutual_tls_without_client_certificate_is_refused(pki: PKI, serve_once: Any) -> None:
    shot = serve_once(mutual_auth(pki))
    ctx = create_client_context(ca=pki.ca)  # no client certificate
    try:
        # TLS 1.3 lets the client finish before the server has judged it; the
        # refusal then arrives on the first read or write.
        tls = wrap_client_socket(connect(shot.port), "127.0.0.1", ctx)
        try:
            tls.sendall(PING)
            assert tls.recv(100) == b""
        except OSError:  # ssl.SSLError included
            pass
        tls.close()
    except AuthenticationError:
        pass
    shot.wait()
    assert isinstance(shot.error, AuthenticationError)
    assert shot.received == b""  # nothing reached the application


def test_client_certificate_from_another_ca_is_refused(pki: PKI, serve_once: Any) -> None:
    shot = serve_once(mutual_auth(pki))
    # present the rogue certificate as a client certificate
    ctx = create_client_context(ca=pki.ca, certfile=pki.rogue_cert, keyfile=pki.rogue_key)
    try:
        tls = wrap_client_socket(connect(shot.port), "127.0.0.1", ctx)
        try:
            tls.recv(100)
        except OSError:  # ssl.SSLError included
            pass
        tls.close()
    except AuthenticationError:
        pass
    shot.wait()
    assert isinstance(shot.error, AuthenticationError)
    assert "certificate" in str(shot.error)


def test_fingerprint_pin_accepts_the_right_certificate(pki: PKI, serve_once: Any) -> None:
    # The pin replaces the CA: this works with the untrusted-CA certificate too.
    shot = serve_once(SSLAuthenticator(pki.rogue_key, pki.rogue_cert))
    ctx = create_client_context(fingerprint=certificate_fingerprint(pki.rogue_cert))
    tls = wrap_client_socket(connect(shot.port), "127.0.0.1", ctx)
    assert_echoed(shot, client_exchange(tls))


def test_fingerprint_pin_refuses_another_certificate(pki: PKI, serve_once: Any) -> None:
    shot = serve_once(server_auth(pki))
    ctx = create_client_context(fingerprint=certificate_fingerprint(pki.rogue_cert))
    with pytest.raises(AuthenticationError, match="fingerprint mismatch") as info:
        wrap_client_socket(connect(shot.port), "127.0.0.1", ctx)
    # the message names what the server presented, so a user can compare it
    assert certificate_fingerprint(pki.server_cert) in str(info.value)
    shot.wait()


def test_pin_and_ca_together_need_both(pki: PKI, serve_once: Any) -> None:
    shot = serve_once(server_auth(pki))
    ctx = create_client_context(ca=pki.ca, fingerprint=certificate_fingerprint(pki.server_cert))
    assert_echoed(shot, client_exchange(wrap_client_socket(connect(shot.port), "127.0.0.1", ctx)))
    shot = serve_once(server_auth(pki))
    ctx = create_client_context(ca=pki.ca, fingerprint=certificate_fingerprint(pki.rogue_cert))
    with pytest.raises(AuthenticationError, match="fingerprint mismatch"):
        wrap_client_socket(connect(shot.port), "127.0.0.1", ctx)
    shot.wait()


def test_fingerprint_formats() -> None:
    digest = bytes(range(32))
    colon = ":".join(f"{b:02X}" for b in digest)
    assert normalize_fingerprint(colon) == digest
    assert normalize_fingerprint("sha256:" + digest.hex()) == digest
    assert normalize_fingerprint(digest) == digest
    for bad in ("", "abc", digest.hex()[:-2], "zz" * 32, b"short"):
        with pytest.raises(ConfigError):
            normalize_fingerprint(bad)


def test_verify_false_warns_every_call(pki: PKI, serve_once: Any) -> None:
    for _ in range(2):
        with pytest.warns(RuntimeWarning, match="verification is disabled"):
            ctx = create_client_context(verify=False)
    shot = serve_once(SSLAuthenticator(pki.rogue_key, pki.rogue_cert))
    tls = wrap_client_socket(connect(shot.port), "127.0.0.1", ctx)
    assert_echoed(shot, client_exchange(tls))


def test_verified_context_does_not_warn(pki: PKI) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        create_client_context(ca=pki.ca)


def test_contexts_are_built_once(pki: PKI, serve_once: Any) -> None:
    a = create_client_context(ca=pki.ca, certfile=pki.client_cert, keyfile=pki.client_key)
    b = create_client_context(ca=str(pki.ca), certfile=pki.client_cert, keyfile=pki.client_key)
    assert a is b
    assert create_client_context(ca=pki.ca) is not a
    auth = mutual_auth(pki)
    ctx = auth.context
    for _ in range(2):
        shot = serve_once(auth)
        assert_echoed(shot, client_exchange(wrap_client_socket(connect(shot.port), "127.0.0.1", a)))
        assert shot.result.sock.context is ctx
    assert auth.context is ctx


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_minimum_tls_version_is_1_2(pki: PKI, serve_once: Any) -> None:
    shot = serve_once(server_auth(pki))
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(AuthenticationError):
        wrap_client_socket(connect(shot.port), "127.0.0.1", old)
    shot.wait()
    assert isinstance(shot.error, AuthenticationError)


def test_silent_client_times_out(pki: PKI, serve_once: Any) -> None:
    shot = serve_once(server_auth(pki, handshake_timeout=0.3))
    with connect(shot.port):
        assert shot.done.wait(WAIT)  # while the client is still connected and silent
    shot.wait()
    assert isinstance(shot.error, AuthenticationError)
    assert "timed out after 0.3 s" in str(shot.error)


def test_dribbling_client_hits_the_overall_deadline(pki: PKI, serve_once: Any) -> None:
    # One byte every 50 ms never trips a per-read timeout of 0.3 s; the deadline
    # covers the whole handshake, so it still ends.
    shot = serve_once(server_auth(pki, handshake_timeout=0.3))
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 500
    with connect(shot.port) as raw:
        for byte in hello:
            if shot.done.is_set():
                break
            try:
                raw.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.05)
    shot.wait()
    assert isinstance(shot.error, AuthenticationError)
    assert "timed out" in str(shot.error)


def test_configuration_errors(pki: PKI) -> None:
    with pytest.raises(ConfigError, match="ssl_version"):
        server_auth(pki, ssl_version=ssl.PROTOCOL_TLS_CLIENT)
    with pytest.raises(ConfigError, match="ca_certs"):
        server_auth(pki, cert_reqs=ssl.CERT_REQUIRED)
    with pytest.raises(ConfigError, match="cert_reqs"):
        server_auth(pki, cert_reqs=7)
    with pytest.raises(ConfigError, match="cannot load certificate"):
        SSLAuthenticator(pki.server_key, pki.server_cert.with_name("missing.pem"))
    with pytest.raises(ConfigError, match="cipher"):
        server_auth(pki, ciphers="NO-SUCH-CIPHER")
    with pytest.raises(ConfigError, match="handshake_timeout"):
        server_auth(pki, handshake_timeout=0)
    with pytest.raises(ConfigError, match="handshake_timeout"):
        server_auth(pki, handshake_timeout=None)
    with pytest.raises(ConfigError):
        create_client_context(ca=pki.ca, verify=False)
    with pytest.raises(ConfigError):
        create_client_context(keyfile=pki.client_key)
    with pytest.raises(ConfigError, match="CA file"):
        create_client_context(ca=pki.ca.with_name("missing.pem"))


def test_rpyc_compatible_attributes(pki: PKI) -> None:
    auth = SSLAuthenticator(str(pki.server_key), str(pki.server_cert), str(pki.ca))
    assert auth.cert_reqs == ssl.CERT_REQUIRED
    assert (auth.keyfile, auth.certfile, auth.ca_certs) == (
        str(pki.server_key),
        str(pki.server_cert),
        str(pki.ca),
    )
    assert server_auth(pki).cert_reqs == ssl.CERT_NONE
    assert mutual_auth(pki, cert_reqs=ssl.CERT_OPTIONAL).cert_reqs == ssl.CERT_OPTIONAL


def test_ssl_connect_refuses_a_fixed_old_protocol_version() -> None:
    # refused before any packet: the port is never reached
    with pytest.raises(UsageError, match="ssl_version"):
        rpyc_ipy.ssl_connect("127.0.0.1", 9, ssl_version=ssl.PROTOCOL_TLSv1_2)
