"""Fixtures for tests/compat: the certificates (tests/auth/authkit.py); the registry
fixture is shared from tests/conftest.py."""

from authkit import pki

__all__ = ["pki"]
