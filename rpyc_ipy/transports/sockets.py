"""Socket transports: TCP, unix sockets, and anything socket-like (TLS, TLS-SRP).

Connect with :func:`tcp_connect` or :func:`unix_connect`, or wrap a socket you
already have in :class:`SocketTransport`. TCP sockets get ``TCP_NODELAY``: a
request is one write and must not wait for Nagle's timer.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import sys
import threading
from typing import Any

from rpyc_ipy.errors import ConnectionClosed, UsageError
from rpyc_ipy.transports.spin import DEFAULT_COORDINATOR, DEFAULT_MAX_SPIN, SpinCoordinator

__all__ = [
    "POLL_INTERVAL",
    "SocketTransport",
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


class SocketTransport:
    """A connection's byte pipe over a socket or a socket-like object.

    The socket-like object needs ``recv_into``, ``sendall``, ``settimeout`` and
    ``close``; plain sockets also use ``sendmsg`` for gathered writes. A plain
    socket's reader polls briefly before sleeping, for up to ``max_spin`` seconds,
    as ``spin`` allows (see transports/spin.py).
    """

    def __init__(self, sock: Any, poll_interval: float = POLL_INTERVAL,
                 max_spin: float = DEFAULT_MAX_SPIN,
                 spin: SpinCoordinator = DEFAULT_COORDINATOR) -> None:
        self.sock = sock
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
        if self._polled:
            sock.setblocking(False)
            self._readable = select.poll()
            self._readable.register(sock.fileno(), select.POLLIN)
            self._writable = select.poll()
            self._writable.register(sock.fileno(), select.POLLOUT)
            self._spin = spin.policy(max_spin)
        else:
            self._spin = spin.policy(0.0)
            sock.settimeout(poll_interval)
        try:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass

    @property
    def closed(self) -> bool:
        return self._closed

    def set_busy_poll(self, window: float) -> None:
        """The longest this transport polls for data before sleeping (0: never)."""
        self._spin.set_maximum(window if self._polled else 0.0)

    @property
    def busy_poll_window(self) -> float:
        """The longest this transport now polls for data before sleeping (0: never)."""
        return self._spin.maximum

    def recv_into(self, buffer: memoryview) -> int:
        if self._polled:
            return self._recv_polled(buffer)
        try:
            return int(self.sock.recv_into(buffer))
        except TimeoutError:
            if self._closed:
                return 0
            raise
        except OSError as exc:
            if self._closed:
                return 0
            raise ConnectionClosed(f"connection reset: {exc}") from None

    def _recv_polled(self, buffer: memoryview) -> int:
        # A small read comes between frames, when the reader expects to wait (a reply,
        # the next request): an optimistic recv would mostly fail with EAGAIN, so poll
        # first. A large one is the rest of a big frame that is streaming in: read first.
        if len(buffer) > _JOIN_LIMIT:
            try:
                return int(self.sock.recv_into(buffer))
            except BlockingIOError:
                pass
            except OSError as exc:
                return self._recv_failed(exc)
        if self._closed:
            return 0
        if not self._spin.wait(self._readable.poll, self._poll_ms, self._poll_interval):
            raise TimeoutError("no data within the poll interval")
        return self._recv_ready(buffer)

    def recv_nowait(self, buffer: memoryview) -> int:
        """One read of what has arrived; ``TimeoutError`` at once if nothing has."""
        try:
            return int(self.sock.recv_into(buffer))
        except BlockingIOError:
            raise TimeoutError("no data yet") from None
        except OSError as exc:
            return self._recv_failed(exc)

    @property
    def pollable(self) -> bool:
        """True for plain non-blocking sockets, which an event loop can wait on."""
        return self._polled

    def _recv_ready(self, buffer: memoryview) -> int:
        try:
            received = self.sock.recv_into(buffer)
            self._spin.received()
            return int(received)
        except BlockingIOError:  # a spurious wake-up: the reader just calls again
            raise TimeoutError("no data yet") from None
        except OSError as exc:
            return self._recv_failed(exc)

    def _recv_failed(self, exc: OSError) -> int:
        if self._closed:
            return 0
        raise ConnectionClosed(f"connection reset: {exc}") from None

    def _wait_writable(self) -> None:
        """Wait for room in the send buffer; the loop around it re-checks ``closed``."""
        if self._closed:
            raise ConnectionClosed("connection closed while sending")
        if self._polled:
            self._writable.poll(self._poll_ms)

    def send_parts(self, parts: list[bytes]) -> None:
        try:
            if len(parts) == 1:
                self._sendall(parts[0])
            elif self._gather:
                self._sendmsg_all(parts)
            else:
                self._send_joined(parts)
        except OSError as exc:
            raise ConnectionClosed(f"cannot send: {exc}") from None

    def _sendall(self, data: bytes) -> None:
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

    def _send_joined(self, parts: list[bytes]) -> None:
        small: list[bytes] = []
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

    def _sendmsg_all(self, parts: list[bytes]) -> None:
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

    def endpoints(self) -> tuple[Any, Any]:
        """``(local address, peer address)``, as RPyC's ``endpoints`` config."""
        try:
            return self.sock.getsockname(), self.sock.getpeername()
        except (OSError, AttributeError):
            return None, None


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
