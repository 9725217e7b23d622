"""Fixtures for the kernel tests: a TLS-SRP notebook server and remote kernels
(helpers in kernelkit.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kernelkit import KernelRig, NotebookServer, start_kernel


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotebookServer]:
    """One server for a module's tests (restarting tests make their own)."""
    srv = NotebookServer(tmp_path_factory.mktemp("server")).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def kernel(server: NotebookServer, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[KernelRig]:
    """One remote kernel (signal interrupts) on ``server`` for a module's tests."""
    rig = start_kernel(tmp_path_factory.mktemp("prefix"), server)
    yield rig
    rig.shutdown()


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    return tmp_path / "prefix"
