"""Fixtures for tests/interop live in interopkit.py."""

from interopkit import our_server, rpyc_server

__all__ = ["our_server", "rpyc_server"]
