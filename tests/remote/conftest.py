"""Fixtures for the engine and execution-service tests: in-process, no sockets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import rpyc_ipy
from rpyc_ipy.remote import Engine, ExecutionService


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = Engine(capture_fd=False)
    yield eng
    eng.shutdown()


@pytest.fixture
def service_conn() -> Iterator[Any]:
    """A client connection to an ExecutionService served by a thread of this process."""
    conn = rpyc_ipy.connect_thread(
        remote_service=ExecutionService.configured(allow_loopback_plaintext=True,
                                                   capture_fd=False))
    yield conn
    conn.close()
