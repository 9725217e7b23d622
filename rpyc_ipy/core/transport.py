"""The transport contract: everything a connection or a server may ask of its byte pipe.

A transport is a reliable byte pipe (see :class:`Transport`): TCP and unix
sockets, TLS and TLS-SRP sockets (:mod:`rpyc_ipy.transports.sockets`), pipes and
the in-memory pair (:mod:`rpyc_ipy.transports.memory`). Besides reading and
writing, every transport states what it is (:class:`TransportInfo`, from its
``info`` property) and which optional behaviours it has: a capability it lacks is
declared ``False``, never left for the caller to discover. Frames are read from
it by :class:`~rpyc_ipy.core.frame_reader.FrameReader`.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = ["DEFAULT_BUSY_POLL_WINDOW", "Transport", "TransportInfo", "TransportKind"]

#: the longest a socket reader polls for data before sleeping (seconds; the
#: ``busy_poll_window`` config key, see transports/spin.py); 0 turns polling off
DEFAULT_BUSY_POLL_WINDOW = 200e-6

TransportKind = Literal["tcp", "unix", "tls", "tls-srp", "pipe", "memory"]


@dataclass(frozen=True)
class TransportInfo:
    """What carries a connection, fixed when the transport is made (status displays,
    audit lines). Addresses are as the socket reports them (``None`` where there is
    no socket); the TLS fields are ``None`` on a plaintext transport."""

    kind: TransportKind
    local_address: Any = None
    peer_address: Any = None
    tls_version: str | None = None
    cipher: str | None = None
    #: the peer's certificate (DER), if it presented one
    peer_cert_der: bytes | None = None
    #: the authenticated TLS-SRP user name
    srp_user: str | None = None

    @property
    def encrypted(self) -> bool:
        return self.tls_version is not None

    @property
    def authenticated(self) -> bool:
        """True when the transport proved who the peer is: a TLS client certificate
        or a TLS-SRP user."""
        return self.peer_cert_der is not None or self.srp_user is not None

    @property
    def peer_is_local(self) -> bool:
        """True for a peer on this machine: a loopback IP address, a unix socket, a
        pipe or the in-memory pair (no network address at all)."""
        if self.kind in ("unix", "pipe", "memory"):
            return True
        peer = self.peer_address
        if isinstance(peer, (str, bytes)):  # TLS over a unix socket
            return True
        try:
            return ipaddress.ip_address(str(peer[0]).split("%", 1)[0]).is_loopback
        except (ValueError, TypeError, IndexError):
            return False

    @property
    def peer_cert_sha256(self) -> str | None:
        """Hex SHA-256 of the peer's certificate, the value pinned by a fingerprint."""
        if self.peer_cert_der is None:
            return None
        return hashlib.sha256(self.peer_cert_der).hexdigest()


@runtime_checkable
class Transport(Protocol):
    """What a connection needs from its byte pipe.

    ``recv_into`` returns 0 at end of stream and raises ``TimeoutError`` when
    nothing arrived within the poll interval (the reader then checks its
    deadlines and calls again). ``send_parts`` writes all parts, in order, as
    one contiguous piece of the stream.

    The capabilities, each answered by every transport:

    * ``supports_nowait``: ``recv_nowait`` reads what has arrived without ever
      waiting (``TimeoutError`` at once if nothing has); a transport without it
      raises ``UsageError`` from ``recv_nowait``. A server loop needs it.
    * ``fileno()``: the descriptor to wait on for readability (``select``; a
      server loop, with ``supports_nowait``), or ``None`` where there is none
      (the memory pair).
    * ``one_frame_per_write``: each frame must be its own ``send_parts`` call
      (TLS: a peer reading one frame per readiness event would never see a second
      frame already decrypted inside its TLS object).
    * ``supports_busy_poll``: ``set_busy_poll(window)`` sets how long a read polls
      for data before sleeping; a transport without it raises ``UsageError``.
    """

    @property
    def supports_nowait(self) -> bool: ...

    @property
    def supports_busy_poll(self) -> bool: ...

    @property
    def one_frame_per_write(self) -> bool: ...

    def recv_into(self, buffer: memoryview) -> int: ...

    def recv_nowait(self, buffer: memoryview) -> int: ...

    def send_parts(self, parts: Sequence[bytes | memoryview]) -> None: ...

    def close(self) -> None: ...

    @property
    def closed(self) -> bool: ...

    @property
    def info(self) -> TransportInfo: ...

    def fileno(self) -> int | None: ...

    def set_busy_poll(self, window: float) -> None: ...
