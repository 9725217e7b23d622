"""Each place where rpyc_ipy chooses safety over rpyc's default, and the one setting
that restores rpyc's behaviour (README, "Differences from RPyC"): each test shows the
default and then the setting at work, against the real rpyc 6.0.2 where a peer is needed."""

from __future__ import annotations

import os
import socket
import ssl
import threading
from typing import Any

import pytest
from authkit import PKI, pki
from interopkit import rpyc

import rpyc_ipy
from rpyc_ipy import classic
from rpyc_ipy.auth.tls_server import SSLAuthenticator
from rpyc_ipy.core.connection import Connection
from rpyc_ipy.core.transport import TransportInfo
from rpyc_ipy.errors import AuthenticationError, ConnectionLost, SecurityError, UsageError
from rpyc_ipy.transports.sockets import SocketTransport

__all__ = ["pki"]  # the certificates fixture, shared with tests/auth


class Echo(rpyc_ipy.Service):
    def exposed_echo(self, value: Any) -> Any:
        return value


def test_servers_bind_loopback_unless_a_host_and_the_insecure_flag_are_given() -> None:
    with rpyc_ipy.ThreadedServer(Echo, port=0) as server:
        assert server.host == "127.0.0.1"  # rpyc binds every interface by default
    with pytest.raises(UsageError, match="allow_insecure_remote"):
        rpyc_ipy.ThreadedServer(Echo, hostname="0.0.0.0", port=0)
    with rpyc_ipy.ThreadedServer(Echo, hostname="0.0.0.0", port=0,
                                 allow_insecure_remote=True) as server:
        assert server.host == "0.0.0.0"
        server.start_in_background()
        with rpyc_ipy.connect("127.0.0.1", server.port) as conn:
            assert conn.root.echo(1) == 1


def test_tls_clients_verify_the_server_unless_told_not_to(pki: PKI, start_server: Any) -> None:
    server = start_server(Echo, authenticator=SSLAuthenticator(str(pki.server_key),
                                                               str(pki.server_cert)))
    # rpyc's ssl_connect without ca_certs does not verify; ours checks the system store
    with pytest.raises((AuthenticationError, ssl.SSLError, OSError)):
        rpyc_ipy.ssl_connect("127.0.0.1", server.port)
    for relaxed in ({"verify": False}, {"cert_reqs": ssl.CERT_NONE}):
        with pytest.warns(RuntimeWarning), rpyc_ipy.ssl_connect("127.0.0.1", server.port,
                                                               **relaxed) as conn:
            assert conn.root.echo("tls") == "tls"


def test_obtain_needs_pickle_allowed_on_the_unpickling_side(rpyc_server: Any) -> None:
    server = rpyc_server(rpyc.SlaveService)
    with classic.connect("127.0.0.1", server.port) as conn:
        remote = conn.eval("{'a': [1, 2]}")
        with pytest.raises(SecurityError, match="allow_pickle"):
            classic.obtain(remote)
    with classic.connect("127.0.0.1", server.port, config={"allow_pickle": True}) as conn:
        assert classic.obtain(conn.eval("{'a': [1, 2]}")) == {"a": [1, 2]}


class ClientProbe(rpyc.Service):
    """An rpyc server that reaches into its client, as rpyc's classic client allows."""

    def on_connect(self, conn: Any) -> None:
        self.client = conn

    def exposed_client_pid(self) -> int:
        return int(self.client.root.getmodule("os").getpid())


def test_our_classic_client_exposes_nothing_unless_asked(rpyc_server: Any) -> None:
    server = rpyc_server(ClientProbe)
    with classic.connect("127.0.0.1", server.port) as conn:
        # the root the server sees offers rpyc's classic names, each None (FakeSlaveService)
        with pytest.raises(TypeError, match="'NoneType' object is not callable"):
            conn.root.client_pid()
    with classic.connect("127.0.0.1", server.port, expose_local=True) as conn:
        assert conn.root.client_pid() == os.getpid()


class Failing(rpyc_ipy.Service):
    def exposed_fail(self) -> None:
        raise KeyError("the message travels")


class _FromElsewhere(SocketTransport):
    """One end of a socketpair that says its peer is a host beyond loopback."""

    @property
    def info(self) -> TransportInfo:
        return TransportInfo("tcp", ("10.0.0.1", 18812), ("192.0.2.7", 50000))


@pytest.mark.parametrize("knob", [False, True])
def test_tracebacks_go_to_unauthenticated_peers_beyond_loopback_only_when_asked(knob: bool
                                                                                 ) -> None:
    ours, theirs = socket.socketpair()
    server = Connection(Failing, _FromElsewhere(ours), {"traceback_to_unauthenticated": knob})
    serving = threading.Thread(target=server.serve_all, daemon=True)
    serving.start()
    client = rpyc.connect_stream(rpyc.SocketStream(theirs),
                                 config={"sync_request_timeout": 10})
    try:
        with pytest.raises(KeyError) as caught:
            client.root.fail()
        remote_tb = "".join(caught.value._remote_tb)  # type: ignore[attr-defined]
        assert "the message travels" in str(caught.value)
        # rpyc sends its traceback to any peer; we do so beyond loopback only when asked
        assert (__file__ in remote_tb) is knob
    finally:
        client.close()
        server.close()
        serving.join(10)


def test_registry_servers_bind_loopback_unless_a_host_is_given() -> None:
    from rpyc_ipy.utils.registry import TCPRegistryServer, UDPRegistryServer

    for kind in (UDPRegistryServer, TCPRegistryServer):
        with kind(port=0) as registry:
            assert registry.host == "127.0.0.1"  # rpyc binds every interface by default
        with kind(host="0.0.0.0", port=0) as registry:
            assert registry.host == "0.0.0.0"


def test_frame_and_decoding_limits_are_raised_by_config(rpyc_server: Any) -> None:
    from rpyc_ipy.protocol.limits import Limits

    server = rpyc_server(rpyc.SlaveService)
    size = 161 << 20  # past the default 160 MiB frame limit; rpyc has none
    with classic.connect("127.0.0.1", server.port) as conn:
        with pytest.raises(ConnectionLost, match="beyond the frame limit"):
            conn.eval(f"b'x' * {size}")
    raised = Limits(max_frame_size=256 << 20, max_bytes_len=256 << 20)
    with classic.connect("127.0.0.1", server.port, config={"limits": raised}) as conn:
        assert len(conn.eval(f"b'x' * {size}")) == size
