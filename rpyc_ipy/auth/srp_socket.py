"""TLS-SRP plumbing shared by the server authenticator and the client wrapper.

tlslite-ng's ``TLSConnection`` is close to a socket but not close enough for the
core's transport: ``recv_into`` has no ``nbytes`` and returns ``None`` at EOF,
``fileno`` raises, and, worse, any exception inside a read (a socket timeout
included) shuts the TLS session down for good. :class:`TLSLiteSocket` fixes that:

* the real socket stays non-blocking for the life of the connection and tlslite is
  driven through its ``*Async`` generators, which yield instead of blocking;
* waiting (with the timeout set by :meth:`TLSLiteSocket.settimeout`) happens here,
  outside tlslite, so a timeout leaves a pending read suspended and the next
  ``recv_into`` resumes it: the session survives, exactly like a plain socket;
* one lock for reading, one for writing: one reader thread and any number of
  writer threads may use it at once, as with a socket (tlslite keeps separate
  read and write record states; the heartbeat extension, the one feature whose
  read path would write, is disabled).

Both sides pin TLS 1.2 (SRP cipher suites do not exist in TLS 1.3, and tlslite's
default version negotiation picks 1.3 and fails), AES-CBC with SHA-1 HMAC (the only
SRP suites), encrypt-then-MAC and the extended master secret, groups of 2048 bits or
more, and the fast AES of :mod:`rpyc_ipy.auth.aes`.

Next: :class:`rpyc_ipy.auth.srp_server.SRPAuthenticator` (server) or
:func:`rpyc_ipy.auth.srp_client.srp_client_socket` (client).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from tlslite import HandshakeSettings, TLSConnection
from tlslite.constants import AlertDescription, AlertLevel, CipherSuite, ContentType
from tlslite.errors import (
    TLSAbruptCloseError,
    TLSAlert,
    TLSInsufficientSecurity,
)
from tlslite.mathtls import calc_key

from rpyc_ipy.auth import aes
from rpyc_ipy.auth.base import (
    Deadline,
    check_timeout,
    close_quietly,
    handshake_timed_out,
    wait_readable,
    wait_writable,
)
from rpyc_ipy.auth.tls12_records import CLOSE_NOTIFY, DirectionKeys, TLS12Records
from rpyc_ipy.core.transport import TransportInfo
from rpyc_ipy.errors import AuthenticationError, TLSRecordError

__all__ = [
    "BAD_CREDENTIALS",
    "THROTTLED",
    "LoginRefused",
    "RecordHandover",
    "TLSLiteSocket",
    "describe_srp_error",
    "run_handshake",
    "send_refusal_alert",
    "srp_settings",
    "tlslite_buffered_bytes",
    "tlslite_handover",
]

#: The one message for a wrong password and an unknown user, on both sides.
BAD_CREDENTIALS = "TLS-SRP authentication failed: wrong username or password"
#: What a client is told when the server's login throttle refused it (whether or not
#: the user exists).
THROTTLED = ("TLS-SRP login refused: too many failed logins from this address or for this "
             "user name; wait a few minutes, then try again")
# The alert a throttled login gets. TLS has no "slow down" alert; access_denied
# ("access control said no") is the nearest, and SRP handshakes send it for
# nothing else.
_REFUSAL_ALERT = AlertDescription.access_denied

# Records carry at most 16 KiB; handing tlslite 64 KiB per call keeps its own
# re-slicing of large writes (quadratic in the write size) out of the picture.
_WRITE_CHUNK = 4 * 16384
# Bound for the few blocking flushes tlslite does on its own (alerts, close_notify).
_FLUSH_TIMEOUT = 5.0
_CLOSE_LOCK_WAIT = 0.5
_CLOSE_NOTIFY_TIMEOUT = 1.0
# One recv per wake-up: four full records, so a bulk transfer needs few system calls.
_RECV_SIZE = 4 * 16384 + 4 * 2048
# The suites our own record layer takes over after the handshake, by AES key size.
_RECORD_SUITES = {
    CipherSuite.TLS_SRP_SHA_WITH_AES_128_CBC_SHA: 16,
    CipherSuite.TLS_SRP_SHA_WITH_AES_256_CBC_SHA: 32,
}
_MAC_KEY_SIZE = 20  # HMAC-SHA1
# A failed SRP proof shows up as a MAC failure on the Finished message (or a
# Finished mismatch); unknown_psk_identity cannot happen with fake verifiers but
# must not read differently if it ever did.
_CREDENTIAL_ALERTS = {
    AlertDescription.bad_record_mac,
    AlertDescription.decrypt_error,
    AlertDescription.unknown_psk_identity,
}


class _DeadlinePassed(Exception):
    """Internal: a wait ran out of time; the generator is left suspended."""


class LoginRefused(Exception):
    """Raised by a server's verifier lookup to refuse a login before any password is
    checked, after :func:`send_refusal_alert`; the message is for the server's log."""


def send_refusal_alert(raw: socket.socket) -> None:
    """Send the fatal alert of a refused login on ``raw``, a server socket whose
    handshake has read the ClientHello and sent nothing yet.

    Nothing is encrypted before ServerHello, so this is a plain TLS 1.2 alert record
    (RFC 5246 section 6.2.1), written whole by one ``send`` into an empty buffer. A
    peer that is gone just misses it.
    """
    record = bytes((ContentType.alert, 3, 3, 0, 2, AlertLevel.fatal, _REFUSAL_ALERT))
    with contextlib.suppress(OSError):
        raw.send(record)


def srp_settings() -> HandshakeSettings:
    """tlslite ``HandshakeSettings`` for our TLS-SRP, the same on both sides."""
    s = HandshakeSettings()
    s.minVersion = (3, 3)
    s.maxVersion = (3, 3)
    s.versions = [(3, 3)]
    s.cipherNames = ["aes256", "aes128"]
    s.macNames = ["sha"]  # RFC 5054 defines SRP suites with HMAC-SHA1 only
    s.keyExchangeNames = ["srp_sha"]  # password only: no server certificate
    s.useEncryptThenMAC = True
    s.useExtendedMasterSecret = True
    s.requireExtendedMasterSecret = True
    s.use_heartbeat_extension = False
    s.minKeySize = 2048  # a server must not talk a client down to a 1024-bit group
    return s.validate()


class _RawIO:
    """What tlslite sees as its socket: the real one, non-blocking from now on.

    ``recv``/``send`` raise ``BlockingIOError`` when they would block, which makes
    tlslite's generators yield; ``sendall`` (used by tlslite only to flush
    handshake messages and alerts) waits, bounded by ``deadline``.
    """

    def __init__(self, raw: socket.socket) -> None:
        raw.setblocking(False)
        self.raw = raw
        self.deadline: Deadline | None = None

    def recv(self, n: int) -> bytes:
        return self.raw.recv(n)

    def send(self, data: Any) -> int:
        return self.raw.send(data)

    def sendall(self, data: Any) -> None:
        view = memoryview(data).cast("B")
        deadline = self.deadline or Deadline(_FLUSH_TIMEOUT)
        while view:
            try:
                view = view[self.raw.send(view) :]
            except BlockingIOError:
                if not wait_writable(self.raw, deadline):
                    raise TimeoutError("timed out") from None

    def fileno(self) -> int:
        return self.raw.fileno()

    def getsockname(self) -> Any:
        return self.raw.getsockname()

    def getpeername(self) -> Any:
        return self.raw.getpeername()

    def setsockopt(self, *args: Any) -> None:
        self.raw.setsockopt(*args)

    def settimeout(self, value: float | None) -> None:
        """Ignored: the real socket stays non-blocking; timeouts live above."""

    def gettimeout(self) -> float:
        return 0.0

    def shutdown(self, how: int) -> None:
        self.raw.shutdown(how)

    def close(self) -> None:
        # shutdown first: it wakes a thread blocked in poll() on this descriptor,
        # which a bare close() does not do on Linux.
        with contextlib.suppress(OSError):
            self.raw.shutdown(socket.SHUT_RDWR)
        self.raw.close()


def _run(gen: Iterator[Any], raw: socket.socket, deadline: Deadline) -> Any:
    """Drive a tlslite async generator until it produces a value or ends.

    tlslite yields 0 to wait for input, 1 to wait for output; anything else is the
    result. On timeout raises ``_DeadlinePassed`` with ``gen`` still suspended.
    """
    while True:
        try:
            value = next(gen)
        except StopIteration:
            return None
        if type(value) is int:
            ready = (wait_writable if value == 1 else wait_readable)(raw, deadline)
            if not ready:
                raise _DeadlinePassed
            continue
        return value


def describe_srp_error(exc: BaseException) -> str:
    """One line saying why a TLS-SRP handshake failed.

    A wrong password and an unknown user both give exactly :data:`BAD_CREDENTIALS`.
    """
    if isinstance(exc, TLSAlert) and exc.description in _CREDENTIAL_ALERTS:
        return BAD_CREDENTIALS
    if isinstance(exc, TLSAlert) and exc.description == _REFUSAL_ALERT:
        return THROTTLED
    if isinstance(exc, LoginRefused):
        return str(exc)
    if isinstance(exc, TLSAbruptCloseError | ConnectionError | EOFError):
        return "TLS-SRP handshake failed: the peer closed the connection"
    if isinstance(exc, TLSAlert):
        name = AlertDescription.toStr(exc.description)
        detail = getattr(exc, "message", None)  # only alerts we raised carry one
        if exc.description == AlertDescription.insufficient_security and detail:
            return f"TLS-SRP handshake refused: {detail}"
        return f"TLS-SRP handshake failed: {name} alert" + (f" ({detail})" if detail else "")
    if isinstance(exc, TLSInsufficientSecurity):
        return f"TLS-SRP handshake refused: {exc}"
    return f"TLS-SRP handshake failed: {type(exc).__name__}: {exc}"


def run_handshake(
    sock: socket.socket,
    start: Callable[[TLSConnection], Iterator[Any]],
    timeout: float,
    username: str | None,
) -> TLSLiteSocket:
    """Run a tlslite handshake (``start(conn)`` returns its async generator) on
    ``sock`` within ``timeout`` seconds and wrap the result.

    On failure ``sock`` is closed and ``AuthenticationError`` raised.
    """
    timeout = check_timeout(timeout)
    aes.ensure_installed()
    try:
        original_timeout = sock.gettimeout()
        rawio = _RawIO(sock)
    except OSError as exc:
        close_quietly(sock)
        raise AuthenticationError(describe_srp_error(exc)) from exc
    deadline = Deadline(timeout)
    rawio.deadline = deadline
    conn = TLSConnection(rawio)
    gen = start(conn)
    try:
        _run(gen, sock, deadline)
    except _DeadlinePassed:
        gen.close()  # type: ignore[attr-defined]
        close_quietly(rawio)
        raise handshake_timed_out("TLS-SRP", timeout) from None
    except Exception as exc:
        # Anything tlslite raises on hostile input (alerts, decode errors, and the
        # odd ValueError or AssertionError) is a failed authentication.
        close_quietly(rawio)
        raise AuthenticationError(describe_srp_error(exc)) from exc
    except BaseException:  # Ctrl-C during the handshake: the socket is ours to close
        gen.close()  # type: ignore[attr-defined]
        close_quietly(rawio)
        raise
    rawio.deadline = None
    # A peer that drops the TCP connection without close_notify is at EOF, not in
    # error: the frame layer above detects a truncated message by itself.
    conn.ignoreAbruptClose = True
    if conn.version != (3, 3) or conn.session.cipherSuite not in CipherSuite.srpSuites:
        close_quietly(rawio)
        raise AuthenticationError("TLS-SRP handshake negotiated something other than SRP")
    if username is None:
        username = conn.session.srpUsername
    try:
        handover = tlslite_handover(conn)
    except RuntimeError as exc:
        close_quietly(rawio)
        raise AuthenticationError(str(exc)) from None
    return TLSLiteSocket(conn, rawio, original_timeout, username or "", handover)


def tlslite_buffered_bytes(conn: TLSConnection) -> int:
    """Bytes ``conn`` holds above the kernel: decrypted data not yet returned and raw
    bytes its socket wrapper read ahead (part of the next record, still encrypted).

    tlslite-ng (checked up to 0.8.2 and its main branch) has no public call for this,
    so it reads two private buffers: ``TLSRecordLayer._readBuffer`` and
    ``BufferedSocket._read_buffer`` (``conn.sock``), which over-reads 4 KiB at a time.
    Without it a server loop would wait on ``select`` while a whole request sits
    here. No ``getattr`` default: if tlslite renames them this fails loudly, and
    tests/auth/test_auth_srp.py::test_tlslite_buffers_are_counted says so.
    """
    return len(conn._readBuffer) + len(conn.sock._read_buffer)


class RecordHandover(NamedTuple):
    """What moves from tlslite to :class:`~rpyc_ipy.auth.tls12_records.TLS12Records`
    after the handshake: each direction's keys and sequence number, decrypted bytes
    tlslite has not returned yet, and raw bytes it read ahead (records to open)."""

    write: DirectionKeys
    read: DirectionKeys
    plaintext: bytes
    raw: bytes


_INTERNALS_CHANGED = ("this tlslite-ng version keeps its record state differently ({}); "
                      "install tlslite-ng>=0.8.0,<0.9, which rpyc_ipy supports")


def tlslite_handover(conn: TLSConnection) -> RecordHandover | None:
    """The state our record layer needs to carry on ``conn``, an established TLS 1.2
    session; None when the session is not one it handles (another suite, or no
    encrypt-then-MAC): then tlslite keeps the records.

    The keys come from the public PRF (``calc_key``) over the session's master secret
    and the hello randoms; the randoms, the side, the sequence numbers and the buffers
    are private tlslite-ng attributes (0.8.x), all read here and nowhere else. Raises
    ``RuntimeError`` saying so if they are missing or if the derived MAC keys do not
    match tlslite's own (tests/auth/test_auth_records.py checks this on every release).
    """
    key_size = _RECORD_SUITES.get(conn.session.cipherSuite)
    if conn.version != (3, 3) or key_size is None or not conn.encryptThenMAC:
        return None
    try:
        client = bool(conn._client)
        randoms = bytes(conn._clientRandom), bytes(conn._serverRandom)
        layer = conn._recordLayer
        states = layer._writeState, layer._readState
        macs = [state.macContext.copy() for state in states]
        seqnums = [int(state.seqnum) for state in states]
        plaintext = bytes(conn._readBuffer)
        raw = bytes(conn.sock._read_buffer)
    except AttributeError as exc:
        raise RuntimeError(_INTERNALS_CHANGED.format(exc)) from None
    block = bytes(calc_key((3, 3), conn.session.masterSecret, conn.session.cipherSuite,
                           b"key expansion", client_random=randoms[0],
                           server_random=randoms[1],
                           output_length=2 * (_MAC_KEY_SIZE + key_size)))
    # RFC 5246 6.3: client MAC key, server MAC key, client key, server key
    mac_keys = block[:_MAC_KEY_SIZE], block[_MAC_KEY_SIZE : 2 * _MAC_KEY_SIZE]
    cipher_keys = block[2 * _MAC_KEY_SIZE : -key_size], block[-key_size:]
    order = (0, 1) if client else (1, 0)  # (write, read)
    keys = []
    for index, side in enumerate(order):
        probe = b"rpyc_ipy key check"
        macs[index].update(probe)
        if macs[index].digest() != hmac.new(mac_keys[side], probe, hashlib.sha1).digest():
            raise RuntimeError(_INTERNALS_CHANGED.format("derived MAC key differs"))
        keys.append(DirectionKeys(cipher_keys[side], mac_keys[side], seqnums[index]))
    return RecordHandover(keys[0], keys[1], plaintext, raw)


class TLSLiteSocket:
    """A tlslite-ng TLS connection with the socket surface the core transport uses.

    Made by :func:`run_handshake`; ``username`` is the authenticated SRP user.
    ``recv_into`` returns 0 at EOF; a timeout raises ``TimeoutError`` and leaves the
    connection usable (reads and :meth:`send` resume where they stopped); TLS
    failures raise ``ConnectionAbortedError``.

    With a ``handover`` (see :func:`tlslite_handover`) the application data goes
    through our :class:`~rpyc_ipy.auth.tls12_records.TLS12Records`; without one
    (a session it does not handle) through tlslite's own record layer.
    """

    def __init__(
        self, conn: TLSConnection, rawio: _RawIO, timeout: float | None, username: str,
        handover: RecordHandover | None = None,
    ) -> None:
        self._conn = conn
        self._rawio = rawio
        self._raw = rawio.raw
        self._timeout = timeout
        self.username = username
        self._rlock = threading.Lock()
        self._wlock = threading.Lock()
        self._closed = False
        self._write_broken = False
        self._reader: Any = None  # a suspended tlslite readAsync generator
        # a suspended tlslite writeAsync, or the unsent rest of our sealed records
        self._pending_write: tuple[Any, bytes] | None = None
        self._rbuf = memoryview(b"")
        self._records: TLS12Records | None = None
        self._carry = b""  # raw bytes tlslite read ahead, opened before the socket's
        self._read_end: str | None = None  # "" at EOF, else why reading failed
        if handover is not None:
            self._records = TLS12Records(handover.write, handover.read)
            self._rbuf = memoryview(handover.plaintext)
            self._carry = handover.raw

    # -- reading -----------------------------------------------------------------

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """Read up to ``nbytes`` (default: the buffer's size) into ``buffer``; 0 at EOF."""
        if flags:
            raise ValueError("flags are not supported on a TLS socket")
        target = memoryview(buffer).cast("B")
        want = len(target) if nbytes <= 0 else min(nbytes, len(target))
        if want == 0:
            return 0
        with self._rlock:
            if not self._rbuf and not self._fill():
                return 0
            n = min(want, len(self._rbuf))
            target[:n] = self._rbuf[:n]
            self._rbuf = self._rbuf[n:]
            return n

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """Read up to ``bufsize`` bytes; ``b""`` at EOF."""
        buf = bytearray(bufsize)
        n = self.recv_into(buf, bufsize, flags)
        return bytes(buf[:n])

    def _fill(self) -> bool:
        """Decrypt at least one record into ``_rbuf``; False at EOF. Holds ``_rlock``."""
        if self._records is not None:
            return self._fill_records(self._records)
        if self._closed:
            return False
        gen = self._reader
        if gen is None:
            gen = self._reader = self._conn.readAsync(max=None, min=1)
        try:
            data = _run(gen, self._raw, Deadline(self._timeout))
        except _DeadlinePassed:
            # Keep the generator suspended: the next call picks up where this left off.
            if self._timeout == 0:
                raise BlockingIOError(errno.EAGAIN, "no data available") from None
            raise TimeoutError("timed out") from None
        except Exception as exc:
            self._reader = None
            if self._closed:  # close() from another thread tore the session down
                return False
            if isinstance(exc, OSError):
                raise
            raise ConnectionAbortedError(f"TLS-SRP connection failed: {exc!r}") from exc
        self._reader = None
        gen.close()
        if not data:
            return False
        self._rbuf = memoryview(data)
        return True

    def _fill_records(self, records: TLS12Records) -> bool:
        """:meth:`_fill` on our record layer: read and open until some data comes."""
        if self._read_end is not None:
            if self._read_end:
                raise ConnectionAbortedError(self._read_end)
            return False
        if self._closed:
            return False
        raw = self._raw
        deadline = None
        while True:
            data = self._carry
            if data:
                self._carry = b""
            else:
                try:
                    try:
                        data = raw.recv(_RECV_SIZE)
                    except BlockingIOError:
                        deadline = deadline or Deadline(self._timeout)
                        if wait_readable(raw, deadline):
                            continue
                        if self._timeout == 0:
                            raise BlockingIOError(errno.EAGAIN, "no data available") from None
                        raise TimeoutError("timed out") from None
                except OSError as exc:
                    if self._closed and not isinstance(exc, TimeoutError | BlockingIOError):
                        return False  # close() from another thread
                    raise
                if not data:  # the peer closed TCP: EOF (the frame layer spots truncation)
                    self._read_end = ""
                    return False
            try:
                plain, alert = records.open(data)
            except TLSRecordError as exc:
                self._read_end = f"TLS-SRP connection closed: {exc}"
                self._send_alert(exc.alert)
                raise ConnectionAbortedError(self._read_end) from None
            if alert is not None:
                self._read_end = "" if alert.description == CLOSE_NOTIFY else (
                    f"TLS-SRP connection closed by the peer: fatal "
                    f"{AlertDescription.toStr(alert.description)} alert")
            if plain:
                self._rbuf = memoryview(plain)
                return True
            if alert is not None:
                return self._fill_records(records)

    def _send_alert(self, description: int) -> None:
        """Tell the peer why we stop (best effort, bounded), then close the socket."""
        records = self._records
        assert records is not None
        got = self._wlock.acquire(timeout=_CLOSE_LOCK_WAIT)
        try:
            if got and not self._write_broken and self._pending_write is None:
                self._write_broken = True
                with contextlib.suppress(Exception):
                    self._push(memoryview(records.alert(description)), b"",
                               Deadline(_CLOSE_NOTIFY_TIMEOUT))
        finally:
            if got:
                self._wlock.release()
            self._closed = True
            close_quietly(self._rawio)

    def pending(self) -> int:
        """Bytes received and buffered above the kernel (possibly still encrypted).

        Call ``recv_into`` before waiting on :meth:`fileno` while this is non-zero:
        such data will not wake a ``select``/``poll``. (Our record layer opens every
        whole record it receives at once, so only decrypted bytes and the bytes tlslite
        handed over count: an incomplete record needs the socket anyway.)
        """
        if self._records is not None:
            return len(self._rbuf) + len(self._carry)
        return len(self._rbuf) + tlslite_buffered_bytes(self._conn)

    def record_layer(self) -> str:
        """Whose record layer carries the application data: ``"rpyc_ipy"`` (ours,
        after the handshake) or ``"tlslite"`` (a session ours does not handle)."""
        return "tlslite" if self._records is None else "rpyc_ipy"

    # -- writing -----------------------------------------------------------------

    def send(self, data: Any) -> int:
        """Send a prefix of ``data`` (at most 64 KiB, as whole TLS records); returns
        how many bytes were taken.

        On ``TimeoutError`` nothing counts as sent, but the records already made
        stay queued: call ``send`` again with the same data (as with an ``SSLSocket``)
        and it finishes them first. Retrying with different data breaks the stream.
        """
        view = memoryview(data).cast("B")
        with self._wlock:
            self._check_writable()
            if self._pending_write is not None:
                gen, chunk = self._pending_write
                if view[: len(chunk)] != chunk:
                    self._write_broken = True
                    raise BrokenPipeError(
                        errno.EPIPE, "send retried with other data after a timeout"
                    )
                self._drive_write(gen, chunk, Deadline(self._timeout))
                return len(chunk)
            if not view:
                return 0
            piece = view[:_WRITE_CHUNK]
            self._write(piece, Deadline(self._timeout))
            return len(piece)

    def sendall(self, data: Any) -> None:
        """Send all of ``data``; the timeout bounds the whole call, as for sockets."""
        view = memoryview(data).cast("B")
        with self._wlock:
            self._check_writable()
            if self._pending_write is not None:
                # a sendall cannot be "the same call again": its position is unknown
                self._write_broken = True
                raise BrokenPipeError(errno.EPIPE, "sendall after an unfinished send")
            deadline = Deadline(self._timeout)
            for start in range(0, len(view), _WRITE_CHUNK):
                piece = view[start : start + _WRITE_CHUNK]
                try:
                    self._write(piece, deadline)
                except (TimeoutError, BlockingIOError):
                    # how much went out is unknown to the caller: the stream is done
                    self._write_broken = True
                    raise

    def _check_writable(self) -> None:
        if self._closed:
            raise OSError(errno.EBADF, "TLS-SRP socket is closed")
        if self._write_broken:
            raise BrokenPipeError(errno.EPIPE, "TLS-SRP stream broken by an earlier error")

    def _write(self, piece: memoryview, deadline: Deadline) -> None:
        """Send ``piece`` as records, through our record layer or tlslite's."""
        records = self._records
        if records is None:
            self._drive_write(self._conn.writeAsync(piece), piece, deadline)
            return
        try:
            wire = records.seal(piece)
        except TLSRecordError as exc:
            self._write_broken = True
            raise ConnectionAbortedError(f"TLS-SRP connection failed: {exc}") from None
        self._push(memoryview(wire), piece, deadline)

    def _push(self, wire: memoryview, chunk: memoryview | bytes, deadline: Deadline) -> None:
        """Send sealed records; on timeout park the rest in ``_pending_write``."""
        raw = self._raw
        while wire:
            try:
                wire = wire[raw.send(wire) :]
                continue
            except BlockingIOError:
                pass
            except OSError:
                self._pending_write = None
                self._write_broken = True
                raise
            if not wait_writable(raw, deadline):
                self._pending_write = (wire, bytes(chunk))
                if self._timeout == 0:
                    raise BlockingIOError(errno.EAGAIN, "send would block")
                raise TimeoutError("timed out")
        self._pending_write = None

    def _drive_write(self, gen: Any, chunk: memoryview | bytes, deadline: Deadline) -> None:
        """Finish a parked write: a tlslite writeAsync generator (run it; on timeout
        park it in ``_pending_write``) or the rest of our sealed records."""
        if type(gen) is memoryview:
            self._push(gen, chunk, deadline)
            return
        try:
            _run(gen, self._raw, deadline)
        except _DeadlinePassed:
            # copy now: the caller's buffer may change before it retries
            self._pending_write = (gen, bytes(chunk))
            if self._timeout == 0:
                raise BlockingIOError(errno.EAGAIN, "send would block") from None
            raise TimeoutError("timed out") from None
        except Exception as exc:
            self._pending_write = None
            self._write_broken = True
            if isinstance(exc, OSError):
                raise
            raise ConnectionAbortedError(f"TLS-SRP connection failed: {exc!r}") from exc
        self._pending_write = None

    # -- socket housekeeping -------------------------------------------------------

    def settimeout(self, value: float | None) -> None:
        """Timeout for each ``recv_into``/``sendall``: None blocks, 0 never waits."""
        if value is not None:
            value = float(value)
            if value < 0:
                raise ValueError("Timeout value out of range")
        self._timeout = value

    def gettimeout(self) -> float | None:
        """The timeout set by :meth:`settimeout` (None: blocking)."""
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        """``settimeout(None)`` if ``flag`` else ``settimeout(0.0)``."""
        self.settimeout(None if flag else 0.0)

    def fileno(self) -> int:
        """The real socket's descriptor; mind :meth:`pending` before polling it."""
        return self._raw.fileno()

    @property
    def family(self) -> int:
        """The real socket's address family (so callers can set TCP_NODELAY)."""
        return int(self._raw.family)

    @property
    def type(self) -> int:
        """The real socket's type."""
        return int(self._raw.type)

    def getpeername(self) -> Any:
        return self._raw.getpeername()

    def getsockname(self) -> Any:
        return self._raw.getsockname()

    def setsockopt(self, *args: Any) -> None:
        self._raw.setsockopt(*args)

    def shutdown(self, how: int) -> None:
        """Shut down the real socket (no close_notify: :meth:`close` sends that)."""
        self._raw.shutdown(how)

    def close(self) -> None:
        """Send close_notify if the writer is free, then close the real socket.

        Idempotent; wakes a thread blocked in ``recv_into`` (it then sees EOF).
        """
        if self._closed:
            return
        self._closed = True
        got = self._wlock.acquire(timeout=_CLOSE_LOCK_WAIT)
        try:
            if got and not self._write_broken and self._pending_write is None:
                deadline = Deadline(_CLOSE_NOTIFY_TIMEOUT)
                with contextlib.suppress(Exception):
                    if self._records is not None:
                        self._push(memoryview(self._records.alert(CLOSE_NOTIFY)), b"", deadline)
                    else:
                        self._rawio.deadline = deadline
                        _run(self._conn.closeAsync(), self._raw, deadline)
        finally:
            if got:
                self._wlock.release()
            close_quietly(self._rawio)

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def version(self) -> str:
        """``"TLSv1.2"``, as ``ssl.SSLSocket.version()`` spells it."""
        return "TLSv1.2"

    def cipher(self) -> tuple[str, str, int]:
        """``(suite name, protocol, secret bits)``, as ``ssl.SSLSocket.cipher()``."""
        suite = self._conn.session.cipherSuite
        name = CipherSuite.ietfNames.get(suite, hex(suite))
        bits = 256 if suite in CipherSuite.aes256Suites else 128
        return name, "TLSv1.2", bits

    def describe(self) -> TransportInfo:
        """The transport facts of this socket (it is a ``DescribedSocket``, see
        :mod:`rpyc_ipy.transports.sockets`)."""
        try:
            local, peer = self._raw.getsockname(), self._raw.getpeername()
        except OSError:
            local, peer = None, None
        return TransportInfo("tls-srp", local, peer, tls_version=self.version(),
                             cipher=self.cipher()[0], srp_user=self.username)

    def cipher_implementation(self) -> str:
        """The AES tlslite used for the handshake ("openssl" is the fast one); the
        records after it use cryptography's (OpenSSL) AES when :meth:`record_layer` is
        ``"rpyc_ipy"``."""
        return str(self._conn.getCipherImplementation())

    def __enter__(self) -> TLSLiteSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<TLSLiteSocket {state} user={self.username!r}>"
