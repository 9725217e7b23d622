"""Socket transports: TCP, unix sockets, and anything socket-like (TLS, TLS-SRP).

Connect with :func:`tcp_connect` or :func:`unix_connect`, or wrap a socket you
already have in :class:`SocketTransport`. TCP sockets get ``TCP_NODELAY``: a
request is one write and must not wait for Nagle's timer. TLS sockets
(``ssl.SSLSocket``, from :mod:`rpyc_ipy.auth.tls_client` and
:mod:`rpyc_ipy.auth.tls_server`) are described here; socket-likes of our own
(the TLS-SRP socket) describe themselves (:class:`DescribedSocket`).
"""

from __future__ import annotations

import ipaddress
import select
import socket
import ssl
import struct
import sys
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from rpyc_ipy.core.transport import TransportInfo
from rpyc_ipy.errors import ConnectionClosed, UsageError
from rpyc_ipy.transports.spin import DEFAULT_COORDINATOR, DEFAULT_MAX_SPIN, SpinCoordinator

__all__ = [
    "POLL_INTERVAL",
    "DescribedSocket",
    "SocketTransport",
    "describe_socket",
    "is_loopback",
    "tcp_connect",
    "unix_connect",
]

#: how long one blocking read waits before the reader re-checks its deadlines
POLL_INTERVAL = 0.5
# below this, parts are joined into one buffer; above, they are written as they are
_JOIN_LIMIT = 1 << 16
_IOV_MAX = 512


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and names that resolve only to loopback."""
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


class DescribedSocket(Protocol):
    """A socket-like object that is not a ``socket.socket`` (the TLS-SRP socket):
    the socket calls :class:`SocketTransport` makes, and :meth:`describe`. A custom
    authenticator returns either a ``socket.socket`` (``ssl.SSLSocket`` included)
    or one of these."""

    @property
    def family(self) -> int: ...

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int: ...

    def send(self, data: Any) -> int: ...

    def settimeout(self, value: float | None) -> None: ...

    def setsockopt(self, *args: Any) -> None: ...

    def shutdown(self, how: int) -> None: ...

    def close(self) -> None: ...

    def fileno(self) -> int: ...

    def pending(self) -> int:
        """Bytes it holds above the kernel (received, perhaps still encrypted), which a
        wait on :meth:`fileno` would not see: the transport reads before waiting."""
        ...

    def describe(self) -> TransportInfo:
        """What this socket is: kind, addresses, TLS facts."""
        ...


def describe_socket(sock: socket.socket | DescribedSocket) -> TransportInfo:
    """The :class:`TransportInfo` of a connected socket (plain, TLS or socket-like)."""
    if not isinstance(sock, socket.socket):
        return sock.describe()
    try:
        local, peer = sock.getsockname(), sock.getpeername()
    except OSError:
        local, peer = None, None
    if isinstance(sock, ssl.SSLSocket):
        cipher = sock.cipher()
        return TransportInfo("tls", local, peer, tls_version=sock.version(),
                             cipher=cipher[0] if cipher else None,
                             peer_cert_der=sock.getpeercert(binary_form=True))
    return TransportInfo("unix" if sock.family.name == "AF_UNIX" else "tcp", local, peer)


class SocketTransport:
    """A connection's byte pipe over a socket (plain or TLS) or a :class:`DescribedSocket`.

    Plain sockets support ``recv_nowait``, busy polling and a server loop, and are
    written with ``sendmsg``; on Linux they stay blocking with kernel timeouts, so a
    read sleeps in ``recv`` itself, elsewhere they are non-blocking and polled. TLS sockets are
    non-blocking too (``recv_nowait`` and a server loop, which also asks
    :meth:`held_bytes`), waited on with a timeout, and write one frame per call;
    socket-likes are read with a timeout and write one frame per call. The reader
    of a plain, a TLS or a TLS-SRP socket polls briefly before sleeping, for up to
    ``max_spin`` seconds, as ``spin`` allows (see transports/spin.py).
    """

    def __init__(self, sock: socket.socket | DescribedSocket, poll_interval: float = POLL_INTERVAL,
                 max_spin: float = DEFAULT_MAX_SPIN,
                 spin: SpinCoordinator = DEFAULT_COORDINATOR) -> None:
        self.sock: Any = sock
        self._info = describe_socket(sock)
        self._closed = False
        self._close_lock = threading.Lock()
        self._gather = isinstance(sock, socket.socket) and type(sock) is socket.socket and \
            hasattr(sock, "sendmsg")
        #: TLS objects buffer decrypted data where a peer's readiness check can't see it
        self.one_frame_per_write = not self._gather
        self._poll_ms = max(1, int(poll_interval * 1000))
        self._poll_interval = poll_interval
        # plain sockets are non-blocking and waited on with poll(): one syscall per read
        # when data is there, and a short polling window before sleeping (see spin.py)
        self._polled = self._gather and hasattr(select, "poll")
        # OpenSSL must not read and write one TLS connection from two threads at once
        # (a reader and a writer would, and a relay always does): TLS sockets are
        # non-blocking, waited on outside the lock, and each read or write of records
        # takes this lock
        self._tls_lock: threading.Lock | None = None
        self._tls_polled = False
        # plain sockets stay blocking where the kernel can time a read out: a reply is
        # then waited for in the recv itself (one syscall, not poll + recv), and reads
        # that must not wait say so per call (MSG_DONTWAIT)
        self._blocking_reads = False
        self._dontwait = 0
        self._drained = True
        if self._polled and isinstance(sock, socket.socket):
            self._blocking_reads = _kernel_timeouts(sock, poll_interval)
            if self._blocking_reads:
                self._dontwait = socket.MSG_DONTWAIT
            else:
                sock.setblocking(False)
            self._readable = select.poll()
            self._readable.register(sock.fileno(), select.POLLIN)
            self._writable = select.poll()
            self._writable.register(sock.fileno(), select.POLLOUT)
            self._spin = spin.policy(max_spin, sock.fileno())
        elif isinstance(sock, ssl.SSLSocket):
            self._tls_lock = threading.Lock()
            sock.setblocking(False)
            self._tls_polled = hasattr(select, "poll")
            if self._tls_polled:
                # a round trip costs two thread wake-ups with TLS as without: poll alike
                self._spin = spin.policy(max_spin, sock.fileno())
                self._readable = select.poll()
                self._readable.register(sock.fileno(), select.POLLIN)
            else:
                self._spin = spin.policy(0.0)
        else:
            sock.settimeout(poll_interval)
            # a socket-like (TLS-SRP) is waited on like a TLS socket: its descriptor,
            # unless it holds bytes above the kernel (pending)
            self._tls_polled = not isinstance(sock, socket.socket) and hasattr(select, "poll")
            self._spin = spin.policy(max_spin if self._tls_polled else 0.0)
            if self._tls_polled:
                self._readable = select.poll()
                self._readable.register(sock.fileno(), select.POLLIN)
        try:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def info(self) -> TransportInfo:
        return self._info

    @property
    def supports_nowait(self) -> bool:
        """True for plain and TLS sockets (non-blocking), which a server loop can wait
        on; a TLS socket's loop must also ask :meth:`held_bytes`."""
        return self._polled or self._tls_lock is not None

    def held_bytes(self) -> int:
        """Bytes received and decrypted but not read yet: they sit inside the TLS
        object, where waiting on :meth:`fileno` does not see them (0 for plain sockets)."""
        lock = self._tls_lock
        if lock is None:
            return 0
        try:
            with lock:
                return int(self.sock.pending())
        except (OSError, ValueError):  # closed under us: nothing to read
            return 0

    @property
    def supports_busy_poll(self) -> bool:
        return self._polled or self._tls_polled

    def fileno(self) -> int:
        return int(self.sock.fileno())

    def set_busy_poll(self, window: float) -> None:
        """The longest this transport polls for data before sleeping (0: never)."""
        if not self.supports_busy_poll:
            raise UsageError("only a plain or TLS socket transport busy-polls")
        self._spin.set_maximum(window)

    @property
    def busy_poll_window(self) -> float:
        """The longest this transport now polls for data before sleeping (0: never)."""
        return self._spin.maximum

    def recv_into(self, buffer: memoryview) -> int:
        if self._polled:
            return self._recv_polled(buffer)
        if self._tls_lock is not None:
            return self._recv_tls(buffer, self._tls_lock)
        sock = self.sock
        try:
            if self._tls_polled:
                if not sock.pending() and not self._wait_tls(sock):
                    raise TimeoutError("no data within the poll interval")
                received = int(sock.recv_into(buffer))
                self._spin.received()
                return received
            return int(sock.recv_into(buffer))
        except TimeoutError:
            if self._closed:
                return 0
            raise
        except OSError as exc:
            if self._closed:
                return 0
            raise ConnectionClosed(f"connection reset: {exc}") from None

    def _recv_tls(self, buffer: memoryview, lock: threading.Lock) -> int:
        sock = self.sock
        try:
            if not sock.pending() and not self._wait_tls(sock):
                raise TimeoutError("no data within the poll interval")
            with lock:
                received = sock.recv_into(buffer)
            self._spin.received()
            return int(received)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            # part of a record (the rest is on its way), or a handshake message to answer
            raise TimeoutError("no whole TLS record yet") from None
        except TimeoutError:
            if self._closed:
                return 0
            raise
        except (OSError, ValueError) as exc:  # ValueError: closed under us
            if self._closed:
                return 0
            raise ConnectionClosed(f"connection reset: {exc}") from None

    def _wait_tls(self, sock: ssl.SSLSocket | DescribedSocket) -> bool:
        """Wait for bytes on a TLS socket's descriptor (perhaps only part of a record)."""
        if self._tls_polled:
            return bool(self._spin.wait(self._readable.poll, self._poll_ms, self._poll_interval))
        return bool(select.select([sock], [], [], self._poll_interval)[0])

    def _recv_tls_nowait(self, buffer: memoryview, lock: threading.Lock) -> int:
        try:
            with lock:
                return int(self.sock.recv_into(buffer))
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            # no whole record yet: the rest, when it comes, makes the socket readable
            raise TimeoutError("no whole TLS record yet") from None
        except (OSError, ValueError) as exc:  # ValueError: closed under us
            if self._closed:
                return 0
            raise ConnectionClosed(f"connection reset: {exc}") from None

    def _send_tls(self, data: bytes | memoryview, lock: threading.Lock) -> None:
        view = memoryview(data)
        while view:
            with lock:
                try:
                    sent = self.sock.send(view)
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    sent = 0  # retried with the same bytes, as OpenSSL requires
            if sent:
                view = view[sent:]
                continue
            if self._closed:
                raise ConnectionClosed("connection closed while sending")
            select.select([], [self.sock], [], self._poll_interval)

    def _recv_polled(self, buffer: memoryview) -> int:
        # A small read comes between frames, when the reader expects to wait (a reply,
        # the next request): an optimistic recv would mostly fail with EAGAIN, so poll
        # first. A large one is the rest of a big frame that is streaming in: read first.
        if len(buffer) > _JOIN_LIMIT:
            try:
                received = self.sock.recv_into(buffer, 0, self._dontwait)
                self._drained = received < len(buffer)
                return int(received)
            except BlockingIOError:
                pass
            except OSError as exc:
                return self._recv_failed(exc)
        if self._closed:
            return 0
        if self._blocking_reads:
            return self._recv_blocking(buffer)
        if not self._spin.wait(self._readable.poll, self._poll_ms, self._poll_interval):
            raise TimeoutError("no data within the poll interval")
        try:  # the read after the wait, here rather than in a helper: once per frame
            received = self.sock.recv_into(buffer)
            self._drained = received < len(buffer)
            self._spin.received()
            return int(received)
        except BlockingIOError:  # a spurious wake-up: the reader just calls again
            raise TimeoutError("no data yet") from None
        except OSError as exc:
            return self._recv_failed(exc)

    def _recv_blocking(self, buffer: memoryview) -> int:
        """Poll through the spin window if one is granted, else sleep in the read
        itself, which the kernel ends after the poll interval (SO_RCVTIMEO)."""
        spin = self._spin
        clock = spin.clock
        started = clock()
        caught = spin.spin(self._readable.poll, started) if spin.window else None
        try:
            received = self.sock.recv_into(buffer)
        except BlockingIOError:  # the kernel's timeout: nothing within the poll interval
            self._drained = True
            spin.record_block(self._poll_interval)
            raise TimeoutError("no data within the poll interval") from None
        except OSError as exc:
            return self._recv_failed(exc)
        self._drained = received < len(buffer)
        if not caught:
            spin.record_block(clock() - started)
        spin.received()
        return int(received)

    def recv_nowait(self, buffer: memoryview) -> int:
        """One read of what has arrived; ``TimeoutError`` at once if nothing has."""
        if self._tls_lock is not None:
            return self._recv_tls_nowait(buffer, self._tls_lock)
        if not self._polled:
            raise UsageError("only a plain or TLS socket transport reads without waiting")
        try:
            received = self.sock.recv_into(buffer, 0, self._dontwait)
        except BlockingIOError:
            self._drained = True
            raise TimeoutError("no data yet") from None
        except OSError as exc:
            return self._recv_failed(exc)
        self._drained = received < len(buffer)
        return int(received)

    def drained(self) -> bool:
        """True if the last read of a plain socket took less than it asked for, or
        found nothing: the kernel held no more bytes then, so bytes that come later
        are news to an edge-triggered wait. False when a read filled its buffer
        (more may be waiting, and no new edge will say so)."""
        return self._drained

    def _recv_failed(self, exc: OSError) -> int:
        if self._closed:
            return 0
        raise ConnectionClosed(f"connection reset: {exc}") from None

    def _wait_writable(self) -> None:
        """Wait for room in the send buffer; the loop around it re-checks ``closed``."""
        if self._closed:
            raise ConnectionClosed("connection closed while sending")
        if self._polled and not self._blocking_reads:  # a blocking send waited already
            self._writable.poll(self._poll_ms)

    def send_parts(self, parts: Sequence[bytes | memoryview]) -> None:
        try:
            if len(parts) == 1:
                self._sendall(parts[0])
            elif self._gather:
                self._sendmsg_all(parts)
            else:
                self._send_joined(parts)
        except OSError as exc:
            raise ConnectionClosed(f"cannot send: {exc}") from None

    def _sendall(self, data: bytes | memoryview) -> None:
        if self._tls_lock is not None:
            self._send_tls(data, self._tls_lock)
            return
        # sendall with a timeout would give up on a slow reader; wait it out instead
        try:
            sent = self.sock.send(data)
        except (TimeoutError, BlockingIOError):
            sent = 0
        if sent == len(data):
            return
        view = memoryview(data)[sent:]
        while view:
            try:
                sent = self.sock.send(view)
            except (TimeoutError, BlockingIOError):
                self._wait_writable()
                continue
            view = view[sent:]

    def _send_joined(self, parts: Sequence[bytes | memoryview]) -> None:
        small: list[bytes | memoryview] = []
        for part in parts:
            if len(part) < _JOIN_LIMIT:
                small.append(part)
                continue
            if small:
                self._sendall(b"".join(small))
                small = []
            self._sendall(part)
        if small:
            self._sendall(b"".join(small))

    def _sendmsg_all(self, parts: Sequence[bytes | memoryview]) -> None:
        views = [memoryview(p) for p in parts if len(p)]
        while views:
            try:
                sent = self.sock.sendmsg(views[:_IOV_MAX])
            except (TimeoutError, BlockingIOError):
                self._wait_writable()
                continue
            while sent and views:
                first = len(views[0])
                if sent >= first:
                    sent -= first
                    views.pop(0)
                else:
                    views[0] = views[0][sent:]
                    sent = 0

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError, TypeError, ValueError):
            pass
        try:
            self.sock.close()
        except Exception:
            pass


def _kernel_timeouts(sock: socket.socket, seconds: float) -> bool:
    """Make ``sock`` blocking, its reads and writes timed out by the kernel after
    ``seconds`` (SO_RCVTIMEO, SO_SNDTIMEO); False, and ``sock`` as it was, where
    that or MSG_DONTWAIT is not available."""
    if not hasattr(socket, "MSG_DONTWAIT") or not sys.platform.startswith("linux"):
        return False
    whole = int(seconds)
    timeval = struct.pack("ll", whole, int((seconds - whole) * 1e6))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
    except OSError:
        return False
    sock.settimeout(None)
    return True


def tcp_connect(host: str, port: int, *, timeout: float = 10.0, ipv6: bool = False,
                keepalive: bool = False) -> socket.socket:
    """An open TCP socket to ``host:port`` (blocking mode; the transport sets its own)."""
    if not isinstance(port, int) or not 0 < port < 65536:
        raise UsageError(f"invalid port {port!r}")
    family = socket.AF_INET6 if ipv6 else 0
    last: OSError | None = None
    for info in socket.getaddrinfo(host, port, family, socket.SOCK_STREAM):
        sock = socket.socket(info[0], info[1], info[2])
        try:
            sock.settimeout(timeout)
            sock.connect(info[4])
        except OSError as exc:
            sock.close()
            last = exc
            continue
        except BaseException:  # Ctrl-C while connecting: leave no socket open
            sock.close()
            raise
        if keepalive:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.settimeout(None)
        return sock
    raise last if last is not None else OSError(f"cannot resolve {host!r}")


def unix_connect(path: str, *, timeout: float = 10.0) -> socket.socket:
    """An open unix-domain socket to ``path``."""
    if sys.platform == "win32":  # pragma: no cover
        raise UsageError("unix sockets are not available on Windows")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    sock.settimeout(None)
    return sock
