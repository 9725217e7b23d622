"""Fixtures for the core: connection pairs over the in-memory transport."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

import rpyc_ipy
from rpyc_ipy.core.connection import Connection
from rpyc_ipy.transports.memory import memory_pair


class Pair:
    """A served server connection and a client connection over memory."""

    def __init__(self, server_service: Any, client_service: Any = rpyc_ipy.VoidService,
                 server_config: dict[str, Any] | None = None,
                 client_config: dict[str, Any] | None = None) -> None:
        near, far = memory_pair()
        self.server = Connection(server_service, far, server_config)
        self._thread = threading.Thread(target=self.server.serve_all, daemon=True)
        self._thread.start()
        self.client = Connection(client_service, near, client_config)

    def close(self) -> None:
        self.client.close()
        self.server.close()
        self._thread.join(timeout=3)


@pytest.fixture
def make_pair() -> Iterator[Any]:
    pairs: list[Pair] = []

    def make(*args: Any, **kwargs: Any) -> Pair:
        pair = Pair(*args, **kwargs)
        pairs.append(pair)
        return pair

    yield make
    for pair in pairs:
        pair.close()
