"""Fixtures for tests/compat live in compatkit.py."""

from compatkit import registry

__all__ = ["registry"]
