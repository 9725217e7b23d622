"""Interop over real TLS with the real rpyc 6.0.2 package (a test-only peer):
rpyc's clients against our server, and our clients against rpyc's server, in
service mode and classic mode, doing real calls."""

from __future__ import annotations

import os
import ssl
from typing import Any

import pytest
from integkit import CONFIG, WAIT, CredentialsService

import rpyc_ipy
from rpyc_ipy.auth import SSLAuthenticator

rpyc = pytest.importorskip("rpyc")
from rpyc import Service as RpycBaseService  # noqa: E402

pytestmark = pytest.mark.interop


# -- rpyc's clients, our server ---------------------------------------------------------


def test_rpyc_ssl_client_against_our_service(pki: Any, serve: Any) -> None:
    server = serve(CredentialsService, SSLAuthenticator(pki.server_key, pki.server_cert,
                                                        ca_certs=pki.ca))
    conn = rpyc.ssl_connect("127.0.0.1", server.port, keyfile=str(pki.client_key),
                            certfile=str(pki.client_cert), ca_certs=str(pki.ca),
                            cert_reqs=ssl.CERT_REQUIRED, config=dict(CONFIG))
    try:
        assert conn.root.add(19, 23) == 42
        assert conn.root.add("con", "cat") == "concat"
        assert conn.root.peer_common_name() == "alice-client"
        assert conn.root.get_service_name() == "CREDENTIALS"
        with pytest.raises(ValueError, match="from our server"):
            conn.root.fail("from our server")
        # our server's policy still applies to rpyc's client
        with pytest.raises(AttributeError):
            conn.root._conn  # noqa: B018
    finally:
        conn.close()


def test_rpyc_classic_ssl_client_against_our_slave_service(pki: Any, serve: Any) -> None:
    server = serve(rpyc_ipy.SlaveService, SSLAuthenticator(pki.server_key, pki.server_cert,
                                                           ca_certs=pki.ca))
    conn = rpyc.classic.ssl_connect("127.0.0.1", server.port, keyfile=str(pki.client_key),
                                    certfile=str(pki.client_cert), ca_certs=str(pki.ca),
                                    cert_reqs=ssl.CERT_REQUIRED)
    try:
        assert conn.modules.os.getpid() == os.getpid()  # the server runs in this process
        conn.execute("squares = [i * i for i in range(5)]")
        assert conn.eval("sum(squares)") == 30
        assert conn.builtins.len([1, 2, 3]) == 3
        remote_list = conn.eval("squares")
        assert list(remote_list) == [0, 1, 4, 9, 16]
        with pytest.raises(ZeroDivisionError):
            conn.eval("1 / 0")
    finally:
        conn.close()


# -- our clients, rpyc's server -------------------------------------------------------


class RpycSideService(RpycBaseService):
    def on_connect(self, conn: Any) -> None:
        self._conn = conn

    def exposed_add(self, a: Any, b: Any) -> Any:
        return a + b

    def exposed_fail(self, message: str) -> None:
        raise KeyError(message)

    def exposed_peer_common_name(self) -> Any:
        creds = self._conn._config.get("credentials")
        if not isinstance(creds, dict):
            return None
        return dict(pair[0] for pair in creds.get("subject", ())).get("commonName")


def rpyc_authenticator(pki: Any, mutual: bool = False) -> Any:
    from rpyc.utils.authenticators import SSLAuthenticator as RpycSSLAuthenticator

    return RpycSSLAuthenticator(str(pki.server_key), str(pki.server_cert),
                                ca_certs=str(pki.ca) if mutual else None)


def test_our_ssl_client_against_rpyc_service(pki: Any, serve_rpyc: Any) -> None:
    server = serve_rpyc(RpycSideService, rpyc_authenticator(pki))
    with rpyc_ipy.ssl_connect("127.0.0.1", server.port, ca_certs=str(pki.ca), config=CONFIG,
                              timeout=WAIT) as conn:
        assert conn.root.add(20, 22) == 42
        assert conn.root.add((1, 2), (3,)) == (1, 2, 3)
        with pytest.raises(KeyError, match="from rpyc"):
            conn.root.fail("from rpyc")
        assert conn.root.peer_common_name() is None


def test_our_ssl_client_with_certificate_against_rpyc_mutual_tls(pki: Any,
                                                                  serve_rpyc: Any) -> None:
    server = serve_rpyc(RpycSideService, rpyc_authenticator(pki, mutual=True))
    with rpyc_ipy.ssl_connect("127.0.0.1", server.port, keyfile=str(pki.client_key),
                              certfile=str(pki.client_cert), ca_certs=str(pki.ca),
                              config=CONFIG, timeout=WAIT) as conn:
        assert conn.root.peer_common_name() == "alice-client"
        assert conn.root.add(1, 2) == 3


def test_our_classic_ssl_client_against_rpyc_classic_server(pki: Any,
                                                             serve_rpyc: Any) -> None:
    # what rpyc_classic serves; our classic client exposes nothing back
    server = serve_rpyc(rpyc.SlaveService, rpyc_authenticator(pki))
    with rpyc_ipy.classic.ssl_connect("127.0.0.1", server.port, ca_certs=str(pki.ca),
                                      config={"sync_request_timeout": 3}) as conn:
        # the netref of getpid is dropped here: its release rides with the next request
        assert conn.modules.os.getpid() == os.getpid()
        conn.execute("answer = 6 * 7")
        assert conn.eval("answer") == 42
        with pytest.raises(ZeroDivisionError):
            conn.eval("1 / 0")


def test_our_client_refuses_an_rpyc_server_it_cannot_verify(pki: Any, serve_rpyc: Any) -> None:
    from rpyc.utils.authenticators import SSLAuthenticator as RpycSSLAuthenticator

    rogue = serve_rpyc(RpycSideService,
                       RpycSSLAuthenticator(str(pki.rogue_key), str(pki.rogue_cert)))
    with pytest.raises(rpyc_ipy.AuthenticationError, match="verification failed"):
        rpyc_ipy.ssl_connect("127.0.0.1", rogue.port, ca_certs=str(pki.ca), timeout=WAIT)
