"""Fixtures for tests/auth live in authkit.py; this makes pytest see them.

``pki`` and ``userdb`` are shared with every test directory by tests/conftest.py.
"""

from authkit import serve_once

__all__ = ["serve_once"]
