"""Fixtures shared by every test directory.

The throwaway PKI (``pki``: CA, server and client certificates, an untrusted CA
and a rogue server certificate) and the SRP user database (``userdb``: alice with
password "correct horse", bob with "battery staple") are defined in
tests/auth/authkit.py; this puts that module on ``sys.path`` and offers both
fixtures to tests/cli, tests/integration and the rest.
"""

from __future__ import annotations

import sys
from pathlib import Path

_AUTHKIT_DIR = str(Path(__file__).resolve().parent / "auth")
if _AUTHKIT_DIR not in sys.path:
    sys.path.insert(0, _AUTHKIT_DIR)

from authkit import pki, userdb  # noqa: E402

__all__ = ["pki", "userdb"]
