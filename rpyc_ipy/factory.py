"""Ways to open a connection: TCP, TLS, TLS-SRP, unix socket, a thread, a subprocess, a stream.

All of them return a :class:`~rpyc_ipy.Connection`; use ``conn.root`` to reach
the server's service and ``conn.close()`` (or ``with``) when done. Plaintext TCP
to a host that is not loopback is refused unless you pass ``insecure=True``:
use :func:`ssl_connect` or :func:`srp_connect` across a network.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from rpyc_ipy.core.connection import Connection
from rpyc_ipy.core.service import VoidService
from rpyc_ipy.core.transport import Transport
from rpyc_ipy.errors import UsageError
from rpyc_ipy.servers.channels import CHANNEL_PREFIX, ticket_line
from rpyc_ipy.transports.memory import PipeTransport, memory_pair
from rpyc_ipy.transports.sockets import (
    DescribedSocket,
    SocketTransport,
    is_loopback,
    tcp_connect,
)
from rpyc_ipy.transports.sockets import unix_connect as _unix_socket

__all__ = [
    "connect",
    "connect_stream",
    "connect_subproc",
    "connect_thread",
    "srp_connect",
    "ssl_connect",
    "unix_connect",
]

Config = Mapping[str, Any] | None


def connect_stream(transport: Transport, service: Any = VoidService, config: Config = None
                   ) -> Connection:
    """A connection over an already open transport (see :mod:`rpyc_ipy.transports`)."""
    return Connection(service, transport, config)


def connect_socket(sock: socket.socket | DescribedSocket, service: Any = VoidService,
                   config: Config = None) -> Connection:
    """A connection over an already connected socket (or socket-like TLS object)."""
    return Connection(service, SocketTransport(sock), config)


def connect(host: str, port: int, service: Any = VoidService, config: Config = None,
            ipv6: bool = False, keepalive: bool = False, *, insecure: bool = False,
            timeout: float = 10.0, channel_ticket: str | None = None) -> Connection:
    """Plain TCP to ``host:port``; a non-loopback host needs ``insecure=True``.

    ``channel_ticket`` (here and in :func:`ssl_connect`, :func:`srp_connect`) opens a
    data channel instead (:mod:`rpyc_ipy.servers.channels`): the connection then
    reaches what the ticket was issued for, e.g. a notebook session's worker."""
    if not insecure and not is_loopback(host):
        raise UsageError(
            f"refusing plaintext to non-loopback host {host!r}: use ssl_connect/srp_connect, "
            "or pass insecure=True to send everything unencrypted"
        )
    sock = _channel_start(tcp_connect(host, port, timeout=timeout, ipv6=ipv6,
                                      keepalive=keepalive), channel_ticket)
    return connect_socket(_channel_ticket(sock, channel_ticket), service, config)


def unix_connect(path: str, service: Any = VoidService, config: Config = None) -> Connection:
    """A connection over a unix-domain socket."""
    return connect_socket(_unix_socket(path), service, config)


def ssl_connect(host: str, port: int, keyfile: str | None = None, certfile: str | None = None,
                ca_certs: str | None = None, cert_reqs: Any = None, ssl_version: Any = None,
                ciphers: str | None = None, service: Any = VoidService, config: Config = None,
                ipv6: bool = False, keepalive: bool = False, *, fingerprint: str | None = None,
                verify: bool = True, timeout: float = 10.0,
                channel_ticket: str | None = None) -> Connection:
    """TLS with certificates. The server is verified against ``ca_certs`` (or the
    system store) or a pinned SHA-256 ``fingerprint``; ``verify=False`` turns that
    off, loudly. ``keyfile``/``certfile`` present a client certificate. ``ssl_version``
    may only name the negotiating protocols: older, fixed versions are refused."""
    from rpyc_ipy.auth.tls_client import create_client_context, wrap_client_socket

    if cert_reqs is not None:
        verify = verify and cert_reqs != ssl.CERT_NONE
    if ssl_version not in (None, ssl.PROTOCOL_TLS_CLIENT, ssl.PROTOCOL_TLS):
        raise UsageError(f"ssl_version={ssl_version!r} is not supported: connections negotiate "
                         "TLS 1.2 or newer; leave ssl_version out (or pass PROTOCOL_TLS_CLIENT)")
    context = create_client_context(ca=ca_certs, certfile=certfile, keyfile=keyfile,
                                    fingerprint=fingerprint, verify=verify)
    if ciphers:
        context.set_ciphers(ciphers)
    sock = _channel_start(tcp_connect(host, port, timeout=timeout, ipv6=ipv6,
                                      keepalive=keepalive), channel_ticket)
    try:
        tls = wrap_client_socket(sock, host, context)
    except Exception:
        sock.close()
        raise
    return connect_socket(_channel_ticket(tls, channel_ticket), service, config)


def srp_connect(host: str, port: int, username: str, password: str, service: Any = VoidService,
                config: Config = None, *, ipv6: bool = False, timeout: float = 10.0,
                channel_ticket: str | None = None) -> Connection:
    """TLS-SRP: username and password, no certificates. The password comes from you."""
    from rpyc_ipy.auth.srp_client import srp_client_socket

    sock = _channel_start(tcp_connect(host, port, timeout=timeout, ipv6=ipv6), channel_ticket)
    try:
        tls = srp_client_socket(sock, username, password, timeout)
    except Exception:
        sock.close()
        raise
    return connect_socket(_channel_ticket(tls, channel_ticket), service, config)


def _channel_start(sock: Any, ticket: str | None) -> Any:
    """Open a data channel on a fresh TCP socket: the prefix goes first, in clear."""
    if ticket is not None:
        ticket_line(ticket)  # a malformed ticket fails here, before any byte is sent
        try:
            sock.sendall(CHANNEL_PREFIX)
        except OSError:
            sock.close()
            raise
    return sock


def _channel_ticket(sock: Any, ticket: str | None) -> Any:
    """After authenticating, a data channel names what it is for."""
    if ticket is not None:
        try:
            sock.sendall(ticket_line(ticket))
        except OSError:
            sock.close()
            raise
    return sock


def connect_thread(service: Any = VoidService, config: Config = None,
                   remote_service: Any = VoidService, remote_config: Config = None) -> Connection:
    """A connection to ``remote_service`` served by a thread of this process."""
    near, far = memory_pair()
    ready = threading.Event()
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            server_side = Connection(remote_service, far, remote_config)
        except BaseException as exc:  # report set-up failures to the caller
            failure.append(exc)
            ready.set()
            return
        ready.set()
        server_side.serve_all()

    threading.Thread(target=serve, name="rpyc_ipy-connect-thread", daemon=True).start()
    ready.wait(30)
    if failure:
        raise failure[0]
    return Connection(service, near, config)


def connect_subproc(args: Sequence[str], service: Any = VoidService, config: Config = None
                    ) -> Connection:
    """Start ``args`` as a subprocess that serves over its stdin/stdout, and connect.

    The process is terminated when the connection closes.
    """
    proc = subprocess.Popen(list(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    transport = _ProcessTransport(proc)
    conn = Connection(service, transport, config)
    conn.proc = proc  # type: ignore[attr-defined]
    return conn


class _ProcessTransport(PipeTransport):
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        super().__init__(proc.stdout.fileno(), proc.stdin.fileno())
        self._proc = proc

    def close(self) -> None:
        super().close()
        for stream in (self._proc.stdin, self._proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        try:
            self._proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._proc.kill()


def python_subproc_args(module: str, *extra: str) -> list[str]:
    """``[sys.executable, "-m", module, *extra]``: the usual ``connect_subproc`` args."""
    return [sys.executable, "-m", module, *extra]
