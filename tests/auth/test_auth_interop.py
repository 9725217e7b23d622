"""TLS-level interop with the real rpyc 6.0.2 package (a test-only peer).

Our SSLAuthenticator must accept what rpyc's ssl_connect sends, and our client
wrapper must talk to rpyc's SSLAuthenticator, client certificates included.
"""

from __future__ import annotations

import ssl
from typing import Any

import pytest
from authkit import PING, PKI, WAIT, OneShot, client_exchange, connect

from rpyc_ipy.auth.tls_client import create_client_context, wrap_client_socket
from rpyc_ipy.auth.tls_server import SSLAuthenticator

rpyc = pytest.importorskip("rpyc")
pytestmark = pytest.mark.interop


def assert_echoed(shot: OneShot, reply: bytes) -> None:
    shot.wait()
    assert shot.error is None, shot.error
    assert shot.received == PING and reply == b"pong:" + PING


def test_rpyc_ssl_client_against_our_authenticator(pki: PKI, serve_once: Any) -> None:
    from rpyc.core.stream import SocketStream

    shot = serve_once(SSLAuthenticator(pki.server_key, pki.server_cert, ca_certs=pki.ca))
    stream = SocketStream.ssl_connect(
        "127.0.0.1",
        shot.port,
        {
            "ca_certs": str(pki.ca),
            "certfile": str(pki.client_cert),
            "keyfile": str(pki.client_key),
            "cert_reqs": ssl.CERT_REQUIRED,
        },
        timeout=WAIT,
    )
    try:
        stream.write(PING)
        reply = stream.read(len(b"pong:" + PING))
    finally:
        stream.close()
    assert_echoed(shot, reply)
    assert dict(x[0] for x in shot.result.credentials["subject"])["commonName"] == "alice-client"


def test_our_client_against_rpyc_authenticator(pki: PKI, serve_once: Any) -> None:
    from rpyc.utils.authenticators import SSLAuthenticator as RpycSSLAuthenticator

    shot = serve_once(
        RpycSSLAuthenticator(str(pki.server_key), str(pki.server_cert), ca_certs=str(pki.ca))
    )
    ctx = create_client_context(ca=pki.ca, certfile=pki.client_cert, keyfile=pki.client_key)
    reply = client_exchange(wrap_client_socket(connect(shot.port), "127.0.0.1", ctx))
    assert_echoed(shot, reply)
