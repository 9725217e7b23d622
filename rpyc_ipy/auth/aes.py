"""Fast AES-CBC for tlslite-ng's record layer, backed by the ``cryptography`` package.

tlslite-ng picks its AES implementation in ``tlslite.utils.cipherfactory.createAES``:
M2Crypto ("openssl") or PyCrypto ("pycrypto") when importable, else its pure-Python
Rijndael at about 0.4 MB/s. Neither of the first two is a dependency of ours, so
without help every TLS-SRP byte would go through the slow path.

:func:`install` is the one place that changes this. It replaces ``createAES`` in
the two modules that hold a reference to it (``tlslite.utils.cipherfactory`` and
``tlslite.recordlayer``, which imported the name) with a function that returns a
:class:`CryptographyAES` for every AES-CBC key the record layer sets up. It is
idempotent and thread-safe; :func:`uninstall` undoes it. When ``cryptography``
cannot be imported it changes nothing and logs one warning.

Every TLS-SRP handshake calls :func:`ensure_installed` first; nothing else needs to.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from tlslite.utils.aes import AES as _TlsliteAES

__all__ = ["CryptographyAES", "ensure_installed", "install", "installed", "uninstall"]

log = logging.getLogger("rpyc_ipy.auth")

_lock = threading.Lock()
_state: dict[str, bool] = {}  # "installed": set once decided; "warned": logged once
_MODE_CBC = 2  # tlslite's constant for CBC (6 is CTR, which we leave alone)

try:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
except ImportError:  # pragma: no cover - cryptography is a declared dependency
    Cipher = None  # type: ignore[assignment,misc]


class CryptographyAES(_TlsliteAES):
    """tlslite's AES interface (CBC, chained across calls) over ``cryptography``.

    Like tlslite's own implementation, one object keeps a single CBC chain shared by
    :meth:`encrypt` and :meth:`decrypt`; the record layer uses one object per
    direction, so in practice each object only ever goes one way.
    """

    def __init__(self, key: bytes | bytearray, mode: int, IV: bytes | bytearray) -> None:
        super().__init__(key, mode, IV, "openssl")  # tlslite reports native impls as this
        if mode != _MODE_CBC:
            raise NotImplementedError("only CBC mode is provided")
        self._key = bytes(key)
        self.IV = bytes(IV)
        self._enc: Any = None
        self._dec: Any = None

    def _cipher(self) -> Any:
        return Cipher(algorithms.AES(self._key), modes.CBC(self.IV))

    def encrypt(self, plaintext: bytes | bytearray) -> bytearray:
        """CBC-encrypt whole blocks, continuing the chain from the previous call."""
        if len(plaintext) % 16:
            raise ValueError("AES-CBC input must be a multiple of 16 bytes")
        if self._enc is None:
            self._enc, self._dec = self._cipher().encryptor(), None
        out = self._enc.update(plaintext)
        if out:
            self.IV = out[-16:]
        return bytearray(out)

    def decrypt(self, ciphertext: bytes | bytearray) -> bytearray:
        """CBC-decrypt whole blocks, continuing the chain from the previous call."""
        if len(ciphertext) % 16:
            raise ValueError("AES-CBC input must be a multiple of 16 bytes")
        if self._dec is None:
            self._dec, self._enc = self._cipher().decryptor(), None
        last = bytes(ciphertext[-16:])
        out = self._dec.update(ciphertext)
        if out:
            self.IV = last
        return bytearray(out)

    def __copy__(self) -> CryptographyAES:
        # tlslite copies connection states; a shallow copy would share the live
        # cryptography context and interleave two chains.
        return CryptographyAES(self._key, _MODE_CBC, self.IV)


def _make_factory(original: Callable[..., Any]) -> Callable[..., Any]:
    def createAES(
        key: bytes | bytearray,
        IV: bytes | bytearray,
        implList: Sequence[str] | None = None,
    ) -> Any:
        # implList cannot express a choice: HandshakeSettings.validate() strips
        # "openssl"/"pycrypto" unless M2Crypto/PyCrypto import, so the record layer
        # always passes ["python"]. Once installed, AES-CBC is ours.
        del implList
        return CryptographyAES(key, _MODE_CBC, IV)

    createAES.rpyc_ipy_fast_aes = True  # type: ignore[attr-defined]
    createAES.__wrapped__ = original  # type: ignore[attr-defined]
    return createAES


def install() -> bool:
    """Make tlslite-ng use :class:`CryptographyAES`; True if it does. Idempotent.

    Also undoes an earlier :func:`uninstall`.
    """
    with _lock:
        if _state.get("installed"):
            return True
        import tlslite.recordlayer as recordlayer
        import tlslite.utils.cipherfactory as cipherfactory

        if Cipher is None:
            if not _state.get("warned"):
                _state["warned"] = True
                log.warning(
                    "the 'cryptography' package is missing: TLS-SRP falls back to "
                    "tlslite's pure-Python AES (well under 1 MB/s)"
                )
            _state["installed"] = False
            return False
        current = getattr(recordlayer, "createAES", None)
        if current is None or not callable(current):
            if not _state.get("warned"):
                _state["warned"] = True
                log.warning("tlslite.recordlayer has no createAES: fast AES not installed")
            _state["installed"] = False
            return False
        if not getattr(current, "rpyc_ipy_fast_aes", False):
            factory = _make_factory(current)
            cipherfactory.createAES = factory
            recordlayer.createAES = factory
        _state["installed"] = True
        return True


def ensure_installed() -> bool:
    """:func:`install` unless that was already decided (done, impossible, or undone
    by :func:`uninstall`); what every TLS-SRP handshake calls. True if active."""
    if "installed" in _state:
        return _state["installed"]
    return install()


def uninstall() -> None:
    """Put tlslite's own ``createAES`` back and keep it until :func:`install`
    (benchmarks use this to show the difference)."""
    with _lock:
        import tlslite.recordlayer as recordlayer
        import tlslite.utils.cipherfactory as cipherfactory

        current = getattr(recordlayer, "createAES", None)
        original = getattr(current, "__wrapped__", None)
        if original is not None and getattr(current, "rpyc_ipy_fast_aes", False):
            cipherfactory.createAES = original
            recordlayer.createAES = original
        _state["installed"] = False


def installed() -> bool:
    """True while the fast AES is in place."""
    return _state.get("installed", False)
