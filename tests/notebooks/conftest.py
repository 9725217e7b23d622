"""Fixtures for the notebook tests: the server and helpers of tests/kernel/kernelkit.py."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_KERNEL_TESTS = str(Path(__file__).resolve().parents[1] / "kernel")
if _KERNEL_TESTS not in sys.path:
    sys.path.insert(0, _KERNEL_TESTS)

from kernelkit import NotebookServer  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotebookServer]:
    srv = NotebookServer(tmp_path_factory.mktemp("server")).start()
    yield srv
    srv.stop()
