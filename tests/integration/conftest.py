"""Fixtures for tests/integration live in integkit.py; ``pki`` and ``userdb`` come
from tests/conftest.py."""

from integkit import serve, serve_rpyc

__all__ = ["serve", "serve_rpyc"]
