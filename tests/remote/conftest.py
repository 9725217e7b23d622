"""Fixtures for the engine and execution-service tests.

``engine`` is in-process; ``service_conn`` talks to an ExecutionService served by a
thread of this process, whose sessions run in real worker processes, ended when
the test ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import rpyc_ipy
from rpyc_ipy.remote import Engine, ExecutionService, RuntimeSettings, SessionRegistry


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = Engine(capture_fd=False)
    yield eng
    eng.shutdown()


@pytest.fixture
def registry() -> Iterator[SessionRegistry]:
    """Sessions for one test; every worker ends with it."""
    sessions = SessionRegistry(RuntimeSettings(capture_fd=False))
    yield sessions
    sessions.close()


@pytest.fixture
def service(registry: SessionRegistry) -> type[ExecutionService]:
    return ExecutionService.configured(allow_loopback_plaintext=True, registry=registry)


@pytest.fixture
def service_conn(service: type[ExecutionService]) -> Iterator[Any]:
    """A client connection to an ExecutionService served by a thread of this process."""
    conn = rpyc_ipy.connect_thread(remote_service=service)
    yield conn
    conn.close()
