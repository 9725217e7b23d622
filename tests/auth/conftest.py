"""Fixtures for tests/auth live in authkit.py; this makes pytest see them."""

from authkit import pki, serve_once, userdb

__all__ = ["pki", "serve_once", "userdb"]
