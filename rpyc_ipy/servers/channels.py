"""Data channels: client connections a server hands to a handler instead of serving them.

A client opens one by sending :data:`CHANNEL_PREFIX` in clear as the very first bytes,
before any TLS handshake, then authenticates as usual, then sends a ticket line (a
one-time token it got on its ordinary connection). No RPyC peer starts that way: a
frame header starting with these bytes would declare a frame of over a gigabyte, and a
TLS ClientHello starts with 0x16. A server built with ``channel_handler`` takes such a
client, authenticates it, and calls ``channel_handler(transport, credentials)``; the
notebook runtime relays it to a session's worker (:mod:`rpyc_ipy.remote.relay`).
"""

from __future__ import annotations

import socket
import time

from rpyc_ipy.core.transport import Transport
from rpyc_ipy.errors import AuthenticationError, UsageError

__all__ = ["CHANNEL_PREFIX", "TICKET_DIGITS", "opens_channel", "read_ticket", "ticket_line"]

CHANNEL_PREFIX = b"RPYCIPY\x01"
#: a ticket is this many hex digits, sent as one line
TICKET_DIGITS = 32
_PARTIAL_WAIT = 0.01  # seconds between peeks while a client's prefix is still arriving
_MAX_WAITS = 100  # poll intervals (0.1 s each) a channel may take to send its ticket


def opens_channel(sock: socket.socket, timeout: float) -> bool:
    """True (and the prefix consumed) if ``sock``'s client opened with the prefix. Reads
    nothing from other clients: it peeks, and stops at the first byte that differs."""
    deadline = time.monotonic() + timeout
    try:
        for _ in range(int(timeout / _PARTIAL_WAIT) + 2):
            sock.settimeout(max(0.0, deadline - time.monotonic()))
            seen = sock.recv(len(CHANNEL_PREFIX), socket.MSG_PEEK)
            if not seen or not CHANNEL_PREFIX.startswith(seen):
                return False
            if len(seen) == len(CHANNEL_PREFIX):
                sock.recv(len(CHANNEL_PREFIX))
                return True
            # part of the prefix: a peek would return it again at once, so wait a little
            # rather than spin on it while the rest is on its way
            time.sleep(_PARTIAL_WAIT)
    except (TimeoutError, OSError):
        pass
    finally:
        sock.settimeout(None)
    raise AuthenticationError("the client's first bytes did not arrive in time")


def ticket_line(ticket: str) -> bytes:
    """What a client sends after authenticating on a data channel."""
    if len(ticket) != TICKET_DIGITS or not all(c in "0123456789abcdef" for c in ticket):
        raise UsageError("a channel ticket is 32 lowercase hex digits")
    return ticket.encode("ascii") + b"\n"


def read_ticket(transport: Transport) -> str:
    """The ticket a data channel starts with; ``AuthenticationError`` if it is late or
    malformed."""
    size = TICKET_DIGITS + 1
    buffer = bytearray(size)
    view = memoryview(buffer)
    filled = waits = 0
    while filled < size:
        try:
            received = transport.recv_into(view[filled:])
        except TimeoutError:
            waits += 1
            if waits > _MAX_WAITS:
                raise AuthenticationError("the data channel sent no ticket in time") from None
            continue
        if not received:
            raise AuthenticationError("the data channel closed before its ticket")
        filled += received
    ticket = buffer[:-1].decode("ascii", "replace")
    if buffer[-1:] != b"\n" or not all(c in "0123456789abcdef" for c in ticket):
        raise AuthenticationError("the data channel's ticket is malformed")
    return ticket
