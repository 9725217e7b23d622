"""TLS 1.2 records of an established session, for one suite family only.

Sans-I/O: :class:`TLS12Records` turns plaintext into wire bytes (:meth:`~TLS12Records.seal`)
and received wire bytes into plaintext (:meth:`~TLS12Records.open`); the caller moves
the bytes. It knows exactly one protection: AES-CBC (128 or 256 bit keys) with
HMAC-SHA1 in encrypt-then-MAC order (RFC 7366) and TLS 1.2 explicit IVs, which is
what our TLS-SRP negotiates. The handshake, and any session that negotiated
something else, stay with tlslite-ng (see :mod:`rpyc_ipy.auth.srp_socket`).

Why it is fast: one long-lived ``cryptography`` CBC context per direction. A sealed
record starts with a fresh random block encrypted in the running chain; its
ciphertext is the record's IV for the receiver (RFC 4346 6.2.3.2 (2)(b)). Opening
feeds whole records, IV block included, to a long-lived decryptor: a CBC block only
depends on the ciphertext block before it, so every block after the IV block
decrypts right, and the IV block's output is dropped. HMACs are keyed once and
copied per record.

Checks on input: the MAC first (constant-time compare) and only then decryption,
then the padding; record length at most 2^14 + 2048; version 3.3; sequence numbers
never wrap; application data, alerts and nothing else (a handshake record means
renegotiation, which is refused). Errors raise :class:`~rpyc_ipy.errors.TLSRecordError`
naming the alert to send back; after one, the object refuses further use.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from rpyc_ipy.errors import TLSRecordError

__all__ = [
    "ALERT",
    "APPLICATION_DATA",
    "BAD_RECORD_MAC",
    "CLOSE_NOTIFY",
    "DECODE_ERROR",
    "FATAL",
    "HANDSHAKE",
    "MAX_CIPHERTEXT",
    "MAX_PLAINTEXT",
    "RECORD_OVERFLOW",
    "UNEXPECTED_MESSAGE",
    "WARNING",
    "Alert",
    "DirectionKeys",
    "TLS12Records",
]

# Content types and alerts (RFC 5246 6.2.1 and 7.2).
CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA = 20, 21, 22, 23
WARNING, FATAL = 1, 2
CLOSE_NOTIFY = 0
UNEXPECTED_MESSAGE = 10
BAD_RECORD_MAC = 20
RECORD_OVERFLOW = 22
DECODE_ERROR = 50

#: Largest plaintext per record, and largest ciphertext accepted (RFC 5246 6.2.3).
MAX_PLAINTEXT = 1 << 14
MAX_CIPHERTEXT = MAX_PLAINTEXT + 2048

_BLOCK = 16
_MAC_SIZE = 20  # HMAC-SHA1
_HEADER_SIZE = 5
_SMALLEST = 2 * _BLOCK + _MAC_SIZE  # IV block, one padded block, MAC
_SEQ_END = 1 << 64
_HEADER = struct.Struct(">BBBH")
_MAC_HEADER = struct.Struct(">QBBBH")  # seq_num, type, version, length
# Padding for a fragment of n bytes: _PADS[n % 16] fills it to whole blocks.
_PADS = tuple(bytes((15 - r,)) * (16 - r) for r in range(_BLOCK))
_VALID_PAD = tuple(bytes((p,)) * (p + 1) for p in range(256))


class Alert(NamedTuple):
    """An alert the peer sent: ``level`` (1 warning, 2 fatal) and ``description``."""

    level: int
    description: int


@dataclass(frozen=True)
class DirectionKeys:
    """What protects one direction: AES key (16 or 32 bytes), MAC key, next sequence number."""

    cipher_key: bytes
    mac_key: bytes
    seqnum: int

    def __post_init__(self) -> None:
        if len(self.cipher_key) not in (16, 32) or len(self.mac_key) != _MAC_SIZE:
            raise ValueError("AES-128/256-CBC with HMAC-SHA1 keys expected")
        if not 0 <= self.seqnum < _SEQ_END:
            raise ValueError("sequence number out of range")


class TLS12Records:
    """Seal and open the records of one TLS 1.2 connection (see the module docstring).

    ``write`` protects what :meth:`seal` produces, ``read`` what :meth:`open` accepts.
    One thread may seal while another opens; each direction alone is not thread-safe.
    """

    def __init__(self, write: DirectionKeys, read: DirectionKeys,
                 random: Callable[[int], bytes] = os.urandom) -> None:
        # The IVs of these contexts never reach the wire: every record begins with
        # its own block (see the module docstring).
        zero = bytes(_BLOCK)
        self._enc = Cipher(algorithms.AES(write.cipher_key), modes.CBC(zero)).encryptor()
        self._dec = Cipher(algorithms.AES(read.cipher_key), modes.CBC(zero)).decryptor()
        self._wmac = hmac.new(write.mac_key, digestmod=hashlib.sha1)
        self._rmac = hmac.new(read.mac_key, digestmod=hashlib.sha1)
        self._wseq = write.seqnum
        self._rseq = read.seqnum
        self._random = random
        self._parts: list[bytes] = []  # a partial record (or header) received so far
        self._held = 0
        self._need = _HEADER_SIZE
        self._read_done = False  # after an alert or an error: nothing more is opened
        self._write_done = False

    # -- sending ---------------------------------------------------------------------

    def seal(self, data: Any, content_type: int = APPLICATION_DATA) -> bytes:
        """The records carrying ``data`` (any bytes-like; ``b""`` for empty input),
        at most :data:`MAX_PLAINTEXT` plaintext bytes each, as one ``bytes``."""
        if self._write_done:
            raise TLSRecordError("TLS record layer is closed for writing", CLOSE_NOTIFY)
        size = len(data) if type(data) is bytes else memoryview(data).nbytes
        if size <= MAX_PLAINTEXT:
            return self._seal_one(content_type, data) if size else b""
        view = memoryview(data).cast("B")
        return b"".join([self._seal_one(content_type, view[i : i + MAX_PLAINTEXT])
                         for i in range(0, size, MAX_PLAINTEXT)])

    def alert(self, description: int, level: int = FATAL) -> bytes:
        """A sealed alert record. A fatal one, or close_notify, ends the writing side."""
        record = self.seal(bytes((level, description)), ALERT)
        if level == FATAL or description == CLOSE_NOTIFY:
            self._write_done = True
        return record

    def _seal_one(self, content_type: int, fragment: Any) -> bytes:
        seq = self._wseq
        if seq + 1 >= _SEQ_END:  # RFC 5246 6.1: renegotiate or close; we close
            self._write_done = True
            raise TLSRecordError("TLS sequence number exhausted: reconnect", CLOSE_NOTIFY)
        self._wseq = seq + 1
        n = len(fragment) if type(fragment) is bytes else memoryview(fragment).nbytes
        body = self._enc.update(b"".join((self._random(_BLOCK), fragment, _PADS[n % _BLOCK])))
        mac = self._wmac.copy()
        mac.update(_MAC_HEADER.pack(seq, content_type, 3, 3, len(body)))
        mac.update(body)
        return b"".join((_HEADER.pack(content_type, 3, 3, len(body) + _MAC_SIZE), body,
                         mac.digest()))

    # -- receiving -------------------------------------------------------------------

    def buffered(self) -> int:
        """Bytes of an incomplete record held until the rest arrives (never a whole one)."""
        return self._held

    def open(self, data: bytes) -> tuple[bytes, Alert | None]:
        """Feed received bytes; returns the application data of every record they
        complete, and the alert that ended the stream (close_notify or a fatal one), if
        any: nothing after it is read. Warning alerts other than close_notify are skipped.

        Raises :class:`~rpyc_ipy.errors.TLSRecordError` for a record that fails a check.
        """
        if self._read_done:
            raise TLSRecordError("TLS record layer is closed for reading", CLOSE_NOTIFY)
        if self._parts:
            self._parts.append(data)
            self._held += len(data)
            if self._held < self._need:  # a record arriving in pieces: join it once
                return b"", None
            data = b"".join(self._parts)
            self._parts, self._held = [], 0
        try:
            return self._open_records(data)
        except TLSRecordError:
            self._read_done = True
            self._parts, self._held = [], 0
            raise

    def _open_records(self, data: bytes) -> tuple[bytes, Alert | None]:
        out: list[bytes] = []
        pos, size = 0, len(data)
        view = memoryview(data)
        while size - pos >= _HEADER_SIZE:
            content_type, major, minor, length = _HEADER.unpack_from(data, pos)
            if length > MAX_CIPHERTEXT:
                raise TLSRecordError(f"TLS record of {length} bytes is over the limit of "
                                     f"{MAX_CIPHERTEXT}: closing the connection", RECORD_OVERFLOW)
            if (major, minor) != (3, 3):
                raise TLSRecordError(f"TLS record with version {major}.{minor} after a TLS 1.2 "
                                     "handshake: closing the connection", DECODE_ERROR)
            end = pos + _HEADER_SIZE + length
            if end > size:
                self._need = _HEADER_SIZE + length
                break
            fragment = self._open_one(content_type, view[pos + _HEADER_SIZE : end])
            pos = end
            if content_type == APPLICATION_DATA:
                out.append(fragment)
                continue
            alert = self._check_alert(content_type, fragment)
            if alert is not None:
                self._read_done = True
                return b"".join(out), alert
        else:
            self._need = _HEADER_SIZE
        if pos < size:
            self._parts, self._held = [data[pos:]], size - pos
        return (out[0] if len(out) == 1 else b"".join(out)), None

    def _open_one(self, content_type: int, record: memoryview) -> bytes:
        length = len(record) - _MAC_SIZE
        if length + _MAC_SIZE < _SMALLEST or length % _BLOCK:
            raise TLSRecordError("TLS record has an impossible length for AES-CBC: closing "
                                 "the connection", BAD_RECORD_MAC)
        seq = self._rseq
        if seq + 1 >= _SEQ_END:
            raise TLSRecordError("TLS sequence number exhausted: reconnect", CLOSE_NOTIFY)
        body = record[:length]
        mac = self._rmac.copy()
        mac.update(_MAC_HEADER.pack(seq, content_type, 3, 3, length))
        mac.update(body)
        if not hmac.compare_digest(mac.digest(), record[length:]):
            raise TLSRecordError("TLS record failed its integrity check (bad MAC): data was "
                                 "altered in transit; closing the connection", BAD_RECORD_MAC)
        self._rseq = seq + 1
        plain = self._dec.update(body)
        pad = plain[-1]
        # EtM: the MAC already vouched for these bytes, so this check leaks nothing
        if pad + 1 > length - _BLOCK or not plain.endswith(_VALID_PAD[pad]):
            raise TLSRecordError("TLS record has bad padding: closing the connection",
                                 BAD_RECORD_MAC)
        return plain[_BLOCK : length - pad - 1]

    def _check_alert(self, content_type: int, fragment: bytes) -> Alert | None:
        """The alert that ends the stream, None for one to skip; raise for the rest."""
        if content_type == ALERT:
            if len(fragment) != 2:
                raise TLSRecordError("malformed TLS alert record: closing the connection",
                                     DECODE_ERROR)
            alert = Alert(fragment[0], fragment[1])
            if alert.description == CLOSE_NOTIFY or alert.level != WARNING:
                return alert
            return None
        if content_type == HANDSHAKE:
            raise TLSRecordError("the peer tried to renegotiate the TLS session, which is not "
                                 "supported: reconnect instead", UNEXPECTED_MESSAGE)
        raise TLSRecordError(f"unexpected TLS record type {content_type} after the "
                             "handshake: closing the connection", UNEXPECTED_MESSAGE)
