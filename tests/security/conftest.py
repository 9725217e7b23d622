"""Fixtures for tests/security live in seckit.py."""

from seckit import serve

__all__ = ["serve"]
