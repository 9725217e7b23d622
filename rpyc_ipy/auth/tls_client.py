"""Client-side TLS: build a verifying context once, then wrap connected sockets with it.

Typical use::

    ctx = create_client_context(ca="ca.pem")            # or fingerprint="AB:CD:..."
    sock = socket.create_connection((host, port), timeout=10)
    tls = wrap_client_socket(sock, host, ctx)           # handshake + checks
    # hand `tls` to the stream/transport; it has the socket surface the core uses

The server is verified by default: against ``ca`` when given, else against the
system CA store, with the host name checked. A pinned SHA-256 ``fingerprint`` of the
server's leaf certificate replaces the CA check when there is no ``ca`` (the usual
case for a self-signed server), or adds to it. Turning all of this off takes an
explicit ``verify=False``, which warns every time a context is requested.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import socket
import ssl
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from rpyc_ipy.auth.base import DEFAULT_HANDSHAKE_TIMEOUT, check_timeout
from rpyc_ipy.auth.tls_server import tls_handshake
from rpyc_ipy.errors import AuthenticationError, ConfigError

__all__ = [
    "ClientContext",
    "certificate_fingerprint",
    "create_client_context",
    "format_fingerprint",
    "normalize_fingerprint",
    "wrap_client_socket",
]

_PathArg = str | os.PathLike[str] | None
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CACHE_SIZE = 32
_cache: OrderedDict[tuple[Any, ...], ClientContext] = OrderedDict()
_cache_lock = threading.Lock()


class ClientContext(ssl.SSLContext):
    """An ``ssl.SSLContext`` that may also carry a pinned server fingerprint.

    Made by :func:`create_client_context`; pass it to :func:`wrap_client_socket`.
    """

    #: SHA-256 of the DER server leaf certificate that must be presented, or None.
    pinned_sha256: bytes | None = None


def normalize_fingerprint(fingerprint: str | bytes) -> bytes:
    """The 32 raw bytes of a SHA-256 fingerprint given as hex (colons, spaces and a
    ``sha256:`` prefix allowed) or as 32 raw bytes; ``ConfigError`` otherwise."""
    if isinstance(fingerprint, bytes | bytearray):
        if len(fingerprint) == 32:
            return bytes(fingerprint)
        fingerprint = bytes(fingerprint).decode("ascii", "replace")
    text = str(fingerprint).strip().lower()
    if text.startswith("sha256:"):
        text = text[len("sha256:") :]
    text = re.sub(r"[\s:]", "", text)
    if not _HEX64.fullmatch(text):
        raise ConfigError(
            "fingerprint must be the SHA-256 of the server certificate as 64 hex digits "
            f"(colons allowed), got {fingerprint!r}"
        )
    return bytes.fromhex(text)


def format_fingerprint(digest: bytes) -> str:
    """``AB:CD:...``: the form ``openssl x509 -fingerprint -sha256`` prints."""
    return ":".join(f"{b:02X}" for b in digest)


def certificate_fingerprint(cert: str | os.PathLike[str] | bytes) -> str:
    """SHA-256 fingerprint of a certificate (PEM file path, PEM text or DER bytes),
    formatted for ``create_client_context(fingerprint=...)``."""
    if isinstance(cert, bytes) and not cert.lstrip().startswith(b"-----BEGIN"):
        der = cert
    else:
        if isinstance(cert, bytes):
            pem = cert.decode("ascii")
        else:
            with open(cert, encoding="ascii") as f:
                pem = f.read()
        der = ssl.PEM_cert_to_DER_cert(pem)
    return format_fingerprint(hashlib.sha256(der).digest())


def _file_key(path: str | None) -> tuple[Any, ...]:
    # Key the cache on file identity too, so a rotated certificate is picked up.
    if path is None:
        return (None,)
    try:
        st = os.stat(path)
    except OSError:
        return (path, None)
    return (path, st.st_ino, st.st_size, st.st_mtime_ns)


def _build(
    ca: str | None,
    certfile: str | None,
    keyfile: str | None,
    pin: bytes | None,
    verify: bool,
) -> ClientContext:
    ctx = ClientContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif ca is not None:
        try:
            ctx.load_verify_locations(cafile=ca)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load CA file {ca!r}: {exc}") from exc
    elif pin is not None:
        # The pin is the check: the chain is not validated, the exact leaf is.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if certfile is not None:
        try:
            ctx.load_cert_chain(certfile, keyfile=keyfile)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot load client certificate {certfile!r} / key {keyfile!r}: {exc}"
            ) from exc
    ctx.pinned_sha256 = pin
    return ctx


def create_client_context(
    ca: _PathArg = None,
    certfile: _PathArg = None,
    keyfile: _PathArg = None,
    fingerprint: str | bytes | None = None,
    verify: bool = True,
) -> ClientContext:
    """A TLS 1.2+ client context that verifies the server; build once, reuse freely.

    ``ca``: CA file to verify the server chain and host name against (default: the
    system store). ``fingerprint``: SHA-256 of the server's leaf certificate to pin
    (see :func:`certificate_fingerprint`). ``certfile``/``keyfile``: our client
    certificate for mutual TLS. ``verify=False`` disables every server check and
    warns. Equal arguments return the same cached context. Next:
    :func:`wrap_client_socket`.
    """
    if not verify:
        if ca is not None or fingerprint is not None:
            raise ConfigError("verify=False cannot be combined with ca or fingerprint")
        warnings.warn(
            "TLS server verification is disabled (verify=False): the connection is "
            "encrypted but anyone on the path can impersonate the server",
            RuntimeWarning,
            stacklevel=2,
        )
    if keyfile is not None and certfile is None:
        raise ConfigError("keyfile given without certfile")
    ca_s = os.fspath(ca) if ca is not None else None
    cert_s = os.fspath(certfile) if certfile is not None else None
    key_s = os.fspath(keyfile) if keyfile is not None else None
    pin = normalize_fingerprint(fingerprint) if fingerprint is not None else None
    key = (_file_key(ca_s), _file_key(cert_s), _file_key(key_s), pin, bool(verify))
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None:
            _cache.move_to_end(key)
            return cached
    ctx = _build(ca_s, cert_s, key_s, pin, bool(verify))
    with _cache_lock:
        ctx = _cache.setdefault(key, ctx)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return ctx


def wrap_client_socket(
    sock: socket.socket,
    host: str | None,
    context: ssl.SSLContext,
    *,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
) -> ssl.SSLSocket:
    """TLS-handshake the connected ``sock`` as a client and check the server.

    ``host`` is the name or address we dialled (for SNI and the host-name check).
    Returns the ``ssl.SSLSocket`` back in ``sock``'s original timeout mode. On any
    failure ``sock`` is closed and ``AuthenticationError`` raised.
    """
    timeout = check_timeout(handshake_timeout)
    pin = context.pinned_sha256 if isinstance(context, ClientContext) else None
    return tls_handshake(sock, context, timeout, server_side=False, server_hostname=host or None,
                         check=None if pin is None else _pin_check(pin))


def _pin_check(pin: bytes) -> Callable[[ssl.SSLSocket], None]:
    """A check that the server's leaf certificate has the SHA-256 ``pin``."""

    def check(tls: ssl.SSLSocket) -> None:
        der = tls.getpeercert(binary_form=True) or b""
        got = hashlib.sha256(der).digest()
        if not hmac.compare_digest(got, pin):
            raise AuthenticationError(
                "server certificate fingerprint mismatch: expected "
                f"{format_fingerprint(pin)}, got {format_fingerprint(got)}"
            )

    return check
