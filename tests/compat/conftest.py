"""Fixtures for tests/compat live in compatkit.py."""

from authkit import pki
from compatkit import registry

__all__ = ["pki", "registry"]
