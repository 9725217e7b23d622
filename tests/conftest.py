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

# shared helper modules: authkit (certificates, users), codec_vectors (spec files, same_value)
for _helpers in ("auth", "protocol"):
    _path = str(Path(__file__).resolve().parent / _helpers)
    if _path not in sys.path:
        sys.path.insert(0, _path)

from authkit import pki, userdb  # noqa: E402

__all__ = ["pki", "userdb"]
