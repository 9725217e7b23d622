"""Ways to open a connection: TCP, TLS, TLS-SRP, unix socket, a thread, a subprocess, a
stream, a pair of pipes, or a server found in a registry (:func:`connect_by_service`).

All of them return a :class:`~rpyc_ipy.Connection`; use ``conn.root`` to reach
the server's service and ``conn.close()`` (or ``with``) when done. Plaintext TCP
to a host that is not loopback is refused unless you pass ``insecure=True``:
use :func:`ssl_connect` or :func:`srp_connect` across a network.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

from rpyc_ipy.core.connection import Connection
from rpyc_ipy.core.service import Slave, VoidService
from rpyc_ipy.core.transport import Transport
from rpyc_ipy.errors import (
    AuthenticationError,
    ConnectionClosed,
    DiscoveryError,
    ForbiddenError,
    ProtocolError,
    UsageError,
)
from rpyc_ipy.protocol.framing import TLS_RECORD
from rpyc_ipy.servers.channels import CHANNEL_PREFIX, ticket_line
from rpyc_ipy.servers.registry import RegistryClient, UDPRegistryClient
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
    "connect_by_service",
    "connect_multiprocess",
    "connect_pipes",
    "connect_stdpipes",
    "connect_stream",
    "connect_subproc",
    "connect_thread",
    "discover",
    "list_services",
    "srp_connect",
    "ssl_connect",
    "unix_connect",
]

Config = Mapping[str, Any] | None
#: told each step of a connect as it starts ("connecting to host:port", "TLS handshake")
StageCallback = Callable[[str], None] | None


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
            timeout: float = 10.0, channel_ticket: str | None = None,
            on_stage: StageCallback = None) -> Connection:
    """Plain TCP to ``host:port``; a non-loopback host needs ``insecure=True``.

    ``channel_ticket`` (here and in :func:`ssl_connect`, :func:`srp_connect`) opens a
    data channel instead (:mod:`rpyc_ipy.servers.channels`): the connection then
    reaches what the ticket was issued for, e.g. a notebook session's worker.
    ``on_stage(text)`` (in all three) is told each step as it starts, for a progress
    line; a ``KeyboardInterrupt`` at any step closes what was opened."""
    if not insecure and not is_loopback(host):
        raise UsageError(
            f"refusing plaintext to non-loopback host {host!r}: use ssl_connect/srp_connect, "
            "or pass insecure=True to send everything unencrypted"
        )
    _stage(on_stage, f"connecting to {_address(host, port)}")
    sock = _channel_start(tcp_connect(host, port, timeout=timeout, ipv6=ipv6,
                                      keepalive=keepalive), channel_ticket)
    conn = connect_socket(_channel_ticket(sock, channel_ticket), service, config)
    try:
        _stage(on_stage, "first request")
        # the first request, made now: a server that speaks TLS or TLS-SRP fails here, at
        # connect time, rather than on first use (the root is fetched once, then kept)
        conn.fetch_root(timeout)
    except (ConnectionClosed, ProtocolError, TimeoutError) as exc:
        conn.close()
        # the failure's own family: EOFError for a closed connection (as in RPyC), which
        # is how a TLS answer ends too
        family = next(kind for kind in (ConnectionClosed, ProtocolError, TimeoutError)
                      if isinstance(exc, kind))
        raise family(_not_plaintext(host, port, exc, timeout)) from None
    except BaseException:
        conn.close()
        raise
    return conn


def _not_plaintext(host: str, port: int, exc: BaseException, timeout: float) -> str:
    """Why the first reply of a plaintext connection failed, and what to use instead."""
    address = _address(host, port)
    if isinstance(exc, TimeoutError):
        what = f"no reply within {timeout:g} s"
    else:
        what = str(exc).split(" lost: ", 1)[-1]  # "connection c1 lost: <what the peer did>"
    if TLS_RECORD in what:
        why, hint = "speaks TLS, not plaintext RPyC", "connect"
    elif isinstance(exc, ConnectionClosed):
        # a server also closes clients over its limit of connections waiting to be served
        why = f"closed the connection before answering ({what})"
        hint = ("it may have too many new connections to serve: try again; "
                "or it uses TLS: connect")
    else:
        why = f"did not answer as a plaintext RPyC server ({what})"
        hint = "if it uses TLS, connect"
    return (f"{address} {why}: {hint} with ssl_connect or srp_connect (in IPython: "
            "%rpyc_connect with --ca FILE, --fingerprint or --srp-user USER)")


def unix_connect(path: str, service: Any = VoidService, config: Config = None) -> Connection:
    """A connection over a unix-domain socket."""
    return connect_socket(_unix_socket(path), service, config)


def ssl_connect(host: str, port: int, keyfile: str | None = None, certfile: str | None = None,
                ca_certs: str | None = None, cert_reqs: Any = None, ssl_version: Any = None,
                ciphers: str | None = None, service: Any = VoidService, config: Config = None,
                ipv6: bool = False, keepalive: bool = False, *, fingerprint: str | None = None,
                verify: bool = True, timeout: float = 10.0,
                channel_ticket: str | None = None, on_stage: StageCallback = None
                ) -> Connection:
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
    _stage(on_stage, f"connecting to {_address(host, port)}")
    sock = _channel_start(tcp_connect(host, port, timeout=timeout, ipv6=ipv6,
                                      keepalive=keepalive), channel_ticket)
    try:
        _stage(on_stage, "TLS handshake")
        tls = wrap_client_socket(sock, host, context)
    except AuthenticationError as exc:
        sock.close()
        raise AuthenticationError(_with_hint(exc, _NOT_TLS)) from None
    except BaseException:  # Ctrl-C included: no socket left open
        sock.close()
        raise
    return connect_socket(_channel_ticket(tls, channel_ticket), service, config)


def srp_connect(host: str, port: int, username: str, password: str, service: Any = VoidService,
                config: Config = None, *, ipv6: bool = False, timeout: float = 10.0,
                channel_ticket: str | None = None, on_stage: StageCallback = None
                ) -> Connection:
    """TLS-SRP: username and password, no certificates. The password comes from you."""
    from rpyc_ipy.auth.srp_client import srp_client_socket

    _stage(on_stage, f"connecting to {_address(host, port)}")
    sock = _channel_start(tcp_connect(host, port, timeout=timeout, ipv6=ipv6), channel_ticket)
    try:
        _stage(on_stage, "SRP login")
        tls = srp_client_socket(sock, username, password, timeout)
    except AuthenticationError as exc:
        sock.close()
        raise AuthenticationError(_with_hint(exc, _NOT_SRP)) from None
    except BaseException:  # Ctrl-C included: no socket left open
        sock.close()
        raise
    return connect_socket(_channel_ticket(tls, channel_ticket), service, config)


_NOT_TLS = ("if the server uses TLS-SRP, connect with srp_connect (%rpyc_connect --srp-user "
            "USER); if it is plaintext, with connect() (no TLS options)")
_NOT_SRP = ("if the server uses certificates, connect with ssl_connect (%rpyc_connect --ca "
            "FILE or --fingerprint); if it is plaintext, with connect() (no --srp-user)")


def _stage(on_stage: StageCallback, text: str) -> None:
    if on_stage is not None:
        on_stage(text)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _with_hint(exc: AuthenticationError, hint: str) -> str:
    """A failed handshake (not a refused password or certificate) may be the wrong
    method: say which one to try."""
    text = str(exc)
    if text.startswith(("TLS handshake failed", "TLS-SRP handshake failed")):
        return f"{text}: {hint}"
    return text


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


def connect_multiprocess(service: Any = VoidService, config: Config = None,
                         remote_service: Any = VoidService, remote_config: Config = None,
                         args: Mapping[str, Any] | None = None, *, timeout: float = 30.0
                         ) -> Connection:
    """A connection to ``remote_service`` served by a forked child process (POSIX).

    ``args`` (e.g. ``multiprocessing.Value``/``Array`` for memory both processes
    share) go into the served service's ``namespace`` (classic) or
    ``exposed_namespace`` (a service that defines that dict). The child ends when
    the connection closes."""
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        raise UsageError("connect_multiprocess needs fork (POSIX); use connect_subproc")
    remote = remote_service() if isinstance(remote_service, type) else remote_service
    if args:
        namespace = remote.namespace if isinstance(remote, Slave) \
            else getattr(remote, "exposed_namespace", None)
        if not isinstance(namespace, dict):
            raise UsageError(f"connect_multiprocess(args=...): {type(remote).__name__} has no "
                             "namespace dict to put them in; define exposed_namespace = {}")
        namespace.update(args)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    child = multiprocessing.get_context("fork").Process(
        target=_serve_one, args=(listener, remote, remote_config, timeout), daemon=True)
    child.start()
    try:
        conn = connect("127.0.0.1", listener.getsockname()[1], service, config,
                       timeout=timeout)
    finally:
        listener.close()
    conn.proc = child  # type: ignore[attr-defined]
    return conn


def _serve_one(listener: socket.socket, service: Any, config: Config, timeout: float) -> None:
    """In the child of :func:`connect_multiprocess`: serve the first client, then exit."""
    listener.settimeout(timeout)
    with listener:
        sock, _ = listener.accept()
    sock.settimeout(None)
    connect_socket(sock, service, config).serve_all()


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


class _FileTransport(PipeTransport):
    """Pipes given as file objects: the transport reads and writes its own copies of
    their descriptors, and closing it closes the files too."""

    def __init__(self, incoming: IO[Any], outgoing: IO[Any]) -> None:
        outgoing.flush()
        super().__init__(os.dup(incoming.fileno()), os.dup(outgoing.fileno()))
        self._files = (incoming, outgoing)

    def close(self) -> None:
        super().close()
        for stream in self._files:
            try:
                stream.close()
            except OSError:
                pass


def connect_pipes(input: IO[Any], output: IO[Any], service: Any = VoidService,
                  config: Config = None) -> Connection:
    """A connection over two pipes given as file objects: read ``input``, write ``output``."""
    return Connection(service, _FileTransport(input, output), config)


def connect_stdpipes(service: Any = VoidService, config: Config = None) -> Connection:
    """A connection over this process's stdin and stdout (the other side is our parent).
    Print nothing to stdout afterwards: it carries the protocol."""
    return connect_pipes(sys.stdin, sys.stdout, service, config)


# -- the registry ------------------------------------------------------------------


def discover(service_name: str, host: str | None = None, registrar: RegistryClient | None = None,
             timeout: float = 2) -> list[tuple[str, int]]:
    """The ``(host, port)`` of every server registered as ``service_name`` (on ``host``
    only, if given). Without ``registrar``, asks by UDP broadcast.

    Raises :class:`~rpyc_ipy.errors.DiscoveryError` when there is none."""
    if registrar is None:
        registrar = UDPRegistryClient(timeout=timeout)
    addresses = list(registrar.discover(service_name))
    if not addresses:
        raise DiscoveryError(f"no server of {service_name!r} is registered with the registry "
                             f"at {registrar.ip}:{registrar.port}; is the server running "
                             "with auto_register?")
    if host:
        ips = socket.gethostbyname_ex(host)[2]
        addresses = [(h, p) for h, p in addresses if h in ips]
        if not addresses:
            raise DiscoveryError(f"no server of {service_name!r} is registered on {host}")
    return addresses


def list_services(registrar: RegistryClient | None = None, filter_host: str | None = None,
                  timeout: float = 2) -> tuple[str, ...]:
    """The service names registered (on ``filter_host`` only, if given); ``()`` when no
    registry answered. Raises :class:`~rpyc_ipy.errors.ForbiddenError` when the
    registry does not allow listing."""
    if registrar is None:
        registrar = UDPRegistryClient(timeout=timeout)
    services = registrar.list(filter_host)
    if services is None:
        raise ForbiddenError(f"the registry at {registrar.ip}:{registrar.port} does not allow "
                             "listing (start it with allow_listing=True, or --listing)")
    return services


def connect_by_service(service_name: str, host: str | None = None,
                       registrar: RegistryClient | None = None, timeout: float = 2,
                       service: Any = VoidService, config: Config = None) -> Connection:
    """Connect to the first registered server of ``service_name`` that answers.

    Registered servers are reached with :func:`connect`, so one that is not on
    loopback is refused unless reached some other way (use :func:`discover` and
    :func:`ssl_connect` across a network)."""
    addresses = discover(service_name, host, registrar, timeout)
    failures = []
    for address, port in addresses:
        try:
            return connect(address, port, service, config, timeout=timeout)
        except OSError as exc:
            failures.append(f"{address}:{port} ({exc.strerror or exc})")
    raise DiscoveryError(f"every registered server of {service_name!r} is down: "
                         + ", ".join(failures))
