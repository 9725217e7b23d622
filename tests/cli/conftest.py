"""Fixtures for tests/cli live in clikit.py; this makes pytest see them."""

from clikit import serve_cli

__all__ = ["serve_cli"]
