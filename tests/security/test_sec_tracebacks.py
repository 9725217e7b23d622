"""Tracebacks go only to peers we know: local ones, and authenticated ones.

A local traceback names our files, paths and source lines. As rpyc does, a peer on
this machine (loopback, unix socket, pipe) or one that authenticated (TLS client
certificate, SRP, an authenticator's credentials) gets it with the exception
(``include_local_traceback``). A peer beyond loopback that did not authenticate
gets the exception's type and message only, unless the connection config says
``traceback_to_unauthenticated=True``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from seckit import WAIT

import rpyc_ipy
from rpyc_ipy.core.connection import Connection
from rpyc_ipy.core.transport import TransportInfo
from rpyc_ipy.errors import ConfigError
from rpyc_ipy.protocol.vinegar import TRACEBACK_DENIED
from rpyc_ipy.transports.sockets import SocketTransport

pytestmark = pytest.mark.timeout(60)

ELSEWHERE = ("192.0.2.7", 50000)  #: a documentation address, beyond loopback


class Failing(rpyc_ipy.Service):
    def exposed_fail(self) -> None:
        raise KeyError("the message travels")

    def exposed_ping(self) -> str:
        return "pong"


class Described(SocketTransport):
    """A socket transport that says its peer is ``info`` (one end of a socketpair,
    standing in for a TCP connection from another host, or an authenticated one)."""

    def __init__(self, sock: socket.socket, info: TransportInfo) -> None:
        super().__init__(sock)
        self._described = info

    @property
    def info(self) -> TransportInfo:
        return self._described


@contextlib.contextmanager
def pair(info: TransportInfo, **server_config: Any) -> Iterator[Connection]:
    """A client connection to a Failing service whose transport is described by ``info``."""
    ours, theirs = socket.socketpair()
    server = Connection(Failing, Described(theirs, info), server_config)
    client = Connection(rpyc_ipy.VoidService, SocketTransport(ours),
                        {"sync_request_timeout": WAIT})
    serving = threading.Thread(target=server.serve_all, daemon=True)
    serving.start()
    try:
        yield client
    finally:
        client.close()
        server.close()
        serving.join(WAIT)


def remote_failure(client: Connection) -> Any:
    with pytest.raises(KeyError) as caught:
        client.root.fail()
    return caught.value


FROM_ELSEWHERE = TransportInfo("tcp", ("10.0.0.1", 18812), ELSEWHERE)


def test_a_stranger_beyond_loopback_gets_type_and_message_only() -> None:
    with pair(FROM_ELSEWHERE) as client:
        exc = remote_failure(client)
        assert exc.args == ("the message travels",)
        assert exc.remote_traceback == TRACEBACK_DENIED
        assert __file__ not in str(exc)
        assert client.root.ping() == "pong"  # and the connection goes on


@pytest.mark.parametrize("who", ["srp user", "client certificate", "credentials"])
def test_an_authenticated_peer_beyond_loopback_gets_the_traceback(who: str) -> None:
    info, config = FROM_ELSEWHERE, {}
    if who == "srp user":
        info = replace(info, kind="tls-srp", tls_version="TLSv1.2", srp_user="alice")
    elif who == "client certificate":
        info = replace(info, kind="tls", tls_version="TLSv1.3", peer_cert_der=b"0\x82")
    else:
        config = {"credentials": "alice"}
    with pair(info, **config) as client:
        exc = remote_failure(client)
        assert __file__ in exc.remote_traceback
        assert "exposed_fail" in exc.remote_traceback


def test_the_knob_sends_tracebacks_to_strangers_too() -> None:
    with pair(FROM_ELSEWHERE, traceback_to_unauthenticated=True) as client:
        assert __file__ in remote_failure(client).remote_traceback


def test_include_local_traceback_false_still_wins() -> None:
    info = replace(FROM_ELSEWHERE, srp_user="alice")
    with pair(info, include_local_traceback=False) as client:
        assert remote_failure(client).remote_traceback == TRACEBACK_DENIED


def test_a_loopback_peer_gets_the_traceback(serve: Any) -> None:
    server = serve(Failing)
    with rpyc_ipy.connect("127.0.0.1", server.port, config={"sync_request_timeout": WAIT}) as conn:
        assert __file__ in remote_failure(conn).remote_traceback


def test_the_knob_is_a_bool() -> None:
    ours, theirs = socket.socketpair()
    try:
        with pytest.raises(ConfigError, match="traceback_to_unauthenticated"):
            Connection(Failing, SocketTransport(ours), {"traceback_to_unauthenticated": "yes"})
    finally:
        ours.close()
        theirs.close()


@pytest.mark.parametrize(("info", "local"), [
    (TransportInfo("tcp", ("127.0.0.1", 1), ("127.0.0.1", 2)), True),
    (TransportInfo("tcp", ("::1", 1, 0, 0), ("::1", 2, 0, 0)), True),
    (TransportInfo("tcp", ("10.0.0.1", 1), ELSEWHERE), False),
    (TransportInfo("tls", ("10.0.0.1", 1), ELSEWHERE, tls_version="TLSv1.3"), False),
    (TransportInfo("tcp"), False),  # no address known: not local
    (TransportInfo("unix", "/run/x.sock", ""), True),
    (TransportInfo("pipe"), True),
    (TransportInfo("memory"), True),
])
def test_peer_is_local(info: TransportInfo, local: bool) -> None:
    assert info.peer_is_local is local
