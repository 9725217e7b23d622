"""TLS with certificates end to end: our ThreadedServer with SSLAuthenticator, our
ssl_connect, real sockets on 127.0.0.1, real stdlib ssl."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest
from integkit import CONFIG, WAIT
from waitkit import wait_until

import rpyc_ipy
from rpyc_ipy.auth import SSLAuthenticator
from rpyc_ipy.auth.tls_client import certificate_fingerprint


def server_auth(pki: Any, mutual: bool = False, **kwargs: Any) -> SSLAuthenticator:
    return SSLAuthenticator(pki.server_key, pki.server_cert,
                            ca_certs=pki.ca if mutual else None, **kwargs)


def test_server_verified_with_the_ca(pki: Any, serve: Any) -> None:
    server = serve(authenticator=server_auth(pki))
    with rpyc_ipy.ssl_connect("127.0.0.1", server.port, ca_certs=str(pki.ca), config=CONFIG,
                              timeout=WAIT) as conn:
        assert conn.root.add(2, 2) == 4
        assert conn.root.credentials() is None  # no client certificate was asked for
        with pytest.raises(ValueError, match="over tls"):
            conn.root.fail("over tls")


def test_server_verified_by_pinned_fingerprint(pki: Any, serve: Any) -> None:
    server = serve(authenticator=server_auth(pki))
    pin = certificate_fingerprint(pki.server_cert)
    with rpyc_ipy.ssl_connect("127.0.0.1", server.port, fingerprint=pin, config=CONFIG,
                              timeout=WAIT) as conn:
        assert conn.root.add(1, 1) == 2
    wrong = certificate_fingerprint(pki.ca)
    with pytest.raises(rpyc_ipy.AuthenticationError, match="fingerprint mismatch"):
        rpyc_ipy.ssl_connect("127.0.0.1", server.port, fingerprint=wrong, timeout=WAIT)


def test_untrusted_server_certificate_is_refused(pki: Any, serve: Any) -> None:
    rogue = serve(authenticator=SSLAuthenticator(pki.rogue_key, pki.rogue_cert))
    with pytest.raises(rpyc_ipy.AuthenticationError, match="verification failed"):
        rpyc_ipy.ssl_connect("127.0.0.1", rogue.port, ca_certs=str(pki.ca), timeout=WAIT)
    # no CA given: the system store does not know our throwaway CA either
    with pytest.raises(rpyc_ipy.AuthenticationError, match="verification failed"):
        rpyc_ipy.ssl_connect("127.0.0.1", rogue.port, timeout=WAIT)


def test_mutual_tls_credentials_reach_the_service(pki: Any, serve: Any) -> None:
    server = serve(authenticator=server_auth(pki, mutual=True))
    with rpyc_ipy.ssl_connect("127.0.0.1", server.port, keyfile=str(pki.client_key),
                              certfile=str(pki.client_cert), ca_certs=str(pki.ca),
                              config=CONFIG, timeout=WAIT) as conn:
        assert conn.root.peer_common_name() == "alice-client"
        fields = dict(conn.root.credentials())
        assert "alice-client" in fields["subject"]
        assert "rpyc_ipy test CA" in fields["issuer"]


def _refused(call: Any) -> BaseException:
    """Run ``call`` (connect, then one request) and return the error it raised.

    Under TLS 1.3 the server's verdict on the client certificate arrives after the
    client's handshake is done, so the refusal surfaces at the first request."""
    with pytest.raises((rpyc_ipy.AuthenticationError, rpyc_ipy.ConnectionClosed)) as info:
        conn = call()
        try:
            conn.root.add(1, 1)
        finally:
            conn.close()
    return info.value


def test_mutual_tls_without_a_client_certificate_is_refused(pki: Any, serve: Any,
                                                           caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="rpyc_ipy.server")
    server = serve(authenticator=server_auth(pki, mutual=True))
    # the client sees the refusal as an alert ("certificate required") or as the
    # server closing the connection, whichever reaches it first
    _refused(lambda: rpyc_ipy.ssl_connect("127.0.0.1", server.port, ca_certs=str(pki.ca),
                                          config=CONFIG, timeout=WAIT))
    # a certificate from a CA the server does not trust fails the same way
    _refused(lambda: rpyc_ipy.ssl_connect("127.0.0.1", server.port, keyfile=str(pki.rogue_key),
                                          certfile=str(pki.rogue_cert), ca_certs=str(pki.ca),
                                          config=CONFIG, timeout=WAIT))
    def refused() -> list[str]:
        return [r.getMessage() for r in caplog.records if "authentication failed" in r.getMessage()]

    wait_until(lambda: len(refused()) >= 2, WAIT, what="two refusals logged")
    assert len(refused()) == 2, [r.getMessage() for r in caplog.records]
    # and the server still serves a client that has one
    with rpyc_ipy.ssl_connect("127.0.0.1", server.port, keyfile=str(pki.client_key),
                              certfile=str(pki.client_cert), ca_certs=str(pki.ca),
                              config=CONFIG, timeout=WAIT) as conn:
        assert conn.root.add(3, 4) == 7


def test_plaintext_client_gets_a_clean_error_and_server_keeps_serving(pki: Any,
                                                                      serve: Any) -> None:
    # refused at once: were it left to the handshake timeout, the client's calls (which
    # give up after WAIT with TimeoutError) and reads would time out first
    server = serve(authenticator=server_auth(pki, handshake_timeout=6 * WAIT))
    with pytest.raises(rpyc_ipy.ConnectionClosed):
        conn = rpyc_ipy.connect("127.0.0.1", server.port, config=CONFIG)
        try:
            conn.root.add(1, 2)
        finally:
            conn.close()
    # raw garbage is refused the same way
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
    try:
        raw.sendall(b"GET / HTTP/1.0\r\n\r\n")
        try:
            data = raw.recv(4096)
        except ConnectionResetError:
            data = b""
        assert b"HTTP" not in data
    finally:
        raw.close()
    for _ in range(3):
        with rpyc_ipy.ssl_connect("127.0.0.1", server.port, ca_certs=str(pki.ca),
                                  config=CONFIG, timeout=WAIT) as conn:
            assert conn.root.add(1, 2) == 3


def test_silent_client_is_dropped_after_the_handshake_deadline(pki: Any, serve: Any) -> None:
    server = serve(authenticator=server_auth(pki, handshake_timeout=0.5))
    silent = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
    try:
        with rpyc_ipy.ssl_connect("127.0.0.1", server.port, ca_certs=str(pki.ca),
                                  config=CONFIG, timeout=WAIT) as conn:
            assert conn.root.add(1, 2) == 3
        assert silent.recv(1) == b""  # closed by the server, not by our timeout
    finally:
        silent.close()


def test_classic_over_tls(pki: Any, serve: Any) -> None:
    server = serve(rpyc_ipy.SlaveService, authenticator=server_auth(pki, mutual=True))
    with rpyc_ipy.classic.ssl_connect("127.0.0.1", server.port, keyfile=str(pki.client_key),
                                      certfile=str(pki.client_cert),
                                      ca_certs=str(pki.ca)) as conn:
        conn.execute("import os; pid = os.getpid()")
        import os

        assert conn.eval("pid") == os.getpid()
