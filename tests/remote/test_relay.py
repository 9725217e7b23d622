"""The data channel's relay: what has already arrived goes on in one send.

Real sockets: a TLS connection on 127.0.0.1 (the client's side of a data channel) and
a socket pair (the worker's side)."""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
from collections.abc import Sequence
from typing import Any

from authkit import tls_socket_pair
from waitkit import wait_until

from rpyc_ipy.remote.relay import Relay
from rpyc_ipy.transports.sockets import SocketTransport

RECORD = 4096  # plaintext bytes per TLS record the client writes
RECORDS = 16
TLS13_OVERHEAD = 22  # header 5, content type 1, AEAD tag 16


class CountingTransport(SocketTransport):
    """A socket transport that counts its sends."""

    sends = 0

    def send_parts(self, parts: Sequence[bytes | memoryview]) -> None:
        self.sends += 1
        super().send_parts(parts)


def _unread(sock: socket.socket) -> int:
    return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD,
                                              b"\0\0\0\0"))[0])


def test_tls_records_already_received_are_relayed_in_one_send(pki: Any) -> None:
    """A TLS read returns one record: 16 records waiting are still one send to the
    worker (not 16 system calls there and 16 wake-ups of the worker)."""
    server_side, client = tls_socket_pair(pki)
    worker_end, relay_end = socket.socketpair()
    payload = bytes(range(256)) * (RECORD * RECORDS // 256)
    for start in range(0, len(payload), RECORD):
        client.sendall(payload[start:start + RECORD])
    # every record has reached the server's socket before the relay reads any
    assert wait_until(lambda: _unread(server_side) >= len(payload) + RECORDS * TLS13_OVERHEAD,
                      10.0)
    sink = CountingTransport(relay_end)
    relay = Relay(SocketTransport(server_side), sink).start()
    try:
        worker_end.settimeout(10.0)
        got = bytearray()
        for _ in range(RECORDS + 1):
            if len(got) >= len(payload):
                break
            got += worker_end.recv(len(payload) - len(got))
        assert bytes(got) == payload
        assert sink.sends == 1
    finally:
        relay.close()
        client.close()
        worker_end.close()
