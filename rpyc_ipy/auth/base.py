"""The authenticator contract, shared by every authenticator and client-side wrapper.

An *authenticator* is a callable ``auth(sock) -> (socket_like, credentials)`` that a
server calls on each freshly accepted socket, before any frame is exchanged. It either
returns the object to talk through from now on (often a TLS wrapper that replaced
``sock``) with the credentials it established, or raises
:class:`~rpyc_ipy.errors.AuthenticationError`. On failure the authenticator has
already closed the socket; closing it again is harmless. The server then passes
``credentials`` into the connection config (key ``"credentials"``), as RPyC does.

Every handshake here runs against a :class:`Deadline`: the whole exchange must end
within ``handshake_timeout`` seconds, however slowly the peer dribbles bytes, so a
silent or slow client costs a bounded amount of time and never a hung thread.

Next: :class:`~rpyc_ipy.auth.tls_server.SSLAuthenticator` (certificates) or
:class:`~rpyc_ipy.auth.srp_server.SRPAuthenticator` (username/password).
"""

from __future__ import annotations

import math
import select
import socket
import time
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, TypeAlias, runtime_checkable

from rpyc_ipy.errors import AuthenticationError, ConfigError

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_MIN_PASSWORD_LENGTH",
    "AuthResult",
    "Authenticator",
    "Credentials",
    "Deadline",
    "SocketLike",
    "check_timeout",
    "close_quietly",
    "handshake_timed_out",
    "wait_readable",
    "wait_writable",
]

#: Seconds a whole handshake may take. A loopback TLS-SRP handshake with a 2048-bit
#: group takes ~20 ms; the margin is for slow links and loaded hosts, not for peers.
DEFAULT_HANDSHAKE_TIMEOUT: float = 10.0

#: The fewest characters a new TLS-SRP password may have (the user database and
#: ``rpyc-ipy users`` both apply it; it lives here because neither loads tlslite then).
DEFAULT_MIN_PASSWORD_LENGTH: int = 8

#: What an authenticator established about the peer: ``getpeercert()`` of a TLS
#: socket (a dict, or ``None`` when no client certificate was requested), the
#: username (``str``) for TLS-SRP, or whatever a custom authenticator chooses.
Credentials: TypeAlias = "dict[str, Any] | str | None"


@runtime_checkable
class SocketLike(Protocol):
    """The socket surface an authenticator returns and the transport calls.

    ``recv_into`` returns 0 at end of file; timeouts raise ``TimeoutError``; every
    other failure is an ``OSError``. Nothing else is relied upon.
    """

    def recv_into(self, buffer: Any, nbytes: int = 0, /) -> int: ...
    def sendall(self, data: Any, /) -> None: ...
    def settimeout(self, value: float | None, /) -> None: ...
    def gettimeout(self) -> float | None: ...
    def close(self) -> None: ...
    def shutdown(self, how: int, /) -> None: ...
    def fileno(self) -> int: ...
    def getpeername(self) -> Any: ...
    def getsockname(self) -> Any: ...


class AuthResult(NamedTuple):
    """``(sock, credentials)``: unpacks like the plain tuple RPyC authenticators return."""

    sock: SocketLike
    credentials: Credentials


#: Anything a server accepts as its ``authenticator`` argument.
Authenticator: TypeAlias = Callable[[socket.socket], "tuple[SocketLike, Credentials]"]


def check_timeout(value: object, name: str = "handshake_timeout") -> float:
    """Return ``value`` as a positive finite float, or raise ``ConfigError``.

    ``None`` is refused on purpose: a handshake without a deadline lets one silent
    client pin a server thread forever.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ConfigError(f"{name} must be positive and finite, got {value!r}")
    return seconds


class Deadline:
    """A point in monotonic time after which a multi-step exchange gives up.

    ``Deadline(None)`` never expires. Call :meth:`remaining` before each wait.
    """

    __slots__ = ("_end", "timeout")

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self._end = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        """Seconds left (never negative), or ``None`` for no limit."""
        if self._end is None:
            return None
        return max(0.0, self._end - time.monotonic())

    def expired(self) -> bool:
        """True once the deadline has passed."""
        return self._end is not None and time.monotonic() >= self._end


def _wait(sock: Any, for_write: bool, deadline: Deadline) -> bool:
    remaining = deadline.remaining()
    fd = sock.fileno()
    if fd < 0:
        raise OSError(9, "Bad file descriptor")
    # poll() rather than select(): select() cannot watch descriptors >= FD_SETSIZE
    # (1024), which a busy server reaches. poll() keeps no kernel state, so a fresh
    # poll object per wait costs nothing. Windows has no poll(); its select() has
    # no descriptor-value limit.
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLOUT if for_write else select.POLLIN)
        ms = None if remaining is None else math.ceil(remaining * 1000)
        while True:
            try:
                return bool(poller.poll(ms))
            except InterruptedError:  # pragma: no cover - PEP 475 retries already
                continue
    watched = [fd]
    if for_write:
        _, ready, _ = select.select([], watched, [], remaining)
    else:
        ready, _, _ = select.select(watched, [], [], remaining)
    return bool(ready)


def wait_readable(sock: Any, deadline: Deadline) -> bool:
    """Block until ``sock`` is readable (or at EOF/error); False if the deadline passed."""
    return _wait(sock, False, deadline)


def wait_writable(sock: Any, deadline: Deadline) -> bool:
    """Block until ``sock`` is writable (or in error); False if the deadline passed."""
    return _wait(sock, True, deadline)


def close_quietly(sock: Any) -> None:
    """Close ``sock`` ignoring errors: used on failure paths that already raise."""
    try:
        sock.close()
    except Exception:  # a failing close must not mask the error being raised
        pass


def handshake_timed_out(what: str, timeout: float) -> AuthenticationError:
    """The one message every handshake uses when its deadline passes."""
    return AuthenticationError(f"{what} handshake timed out after {timeout:g} s")
