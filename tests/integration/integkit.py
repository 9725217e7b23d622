"""Helpers for the integration tests: in-process servers on real sockets
(127.0.0.1, port 0) with real authenticators, and a service that reports what
its authenticator established. (A uniquely named module, not conftest, so tests
can import from it.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import rpyc_ipy

WAIT = 10.0  # upper bound for any single wait
#: client config for every connection here: no call waits longer than WAIT
CONFIG = {"sync_request_timeout": WAIT}


class CredentialsService(rpyc_ipy.Service):
    """Tells the client who the server thinks it is."""

    def exposed_credentials(self) -> Any:
        creds = self.credentials
        if isinstance(creds, dict):  # a TLS peer certificate: brine cannot carry a dict
            return tuple(sorted((key, repr(value)) for key, value in creds.items()))
        return creds

    def exposed_peer_common_name(self) -> Any:
        creds = self.credentials
        if not isinstance(creds, dict):
            return None
        return dict(pair[0] for pair in creds.get("subject", ())).get("commonName")

    def exposed_add(self, a: Any, b: Any) -> Any:
        return a + b

    def exposed_fail(self, message: str) -> None:
        raise ValueError(message)


@pytest.fixture
def serve(start_server: Any) -> Callable[..., rpyc_ipy.ThreadedServer]:
    """``serve(service, authenticator, **kwargs)``: a started ThreadedServer on
    127.0.0.1 port 0, closed at the end of the test."""

    def start(service: Any = CredentialsService, authenticator: Any = None,
              **kwargs: Any) -> rpyc_ipy.ThreadedServer:
        return start_server(service,
                            authenticator=authenticator, **kwargs)

    return start


@pytest.fixture
def serve_rpyc() -> Iterator[Callable[..., Any]]:
    """``serve_rpyc(service, authenticator)``: a real rpyc 6.0.2 ThreadedServer on
    127.0.0.1 port 0, listening when this returns, closed at the end of the test."""
    rpyc = pytest.importorskip("rpyc")
    from rpyc.utils.server import ThreadedServer as RpycThreadedServer

    started: list[tuple[Any, threading.Thread]] = []

    def start(service: Any, authenticator: Any = None, **kwargs: Any) -> Any:
        server = RpycThreadedServer(service, hostname="127.0.0.1", port=0,
                                    authenticator=authenticator, auto_register=False,
                                    **kwargs)
        server._listen()  # listening before the first client dials (rpyc binds lazily)
        thread = threading.Thread(target=server.start, name="rpyc-server", daemon=True)
        thread.start()
        started.append((server, thread))
        return server

    assert rpyc.__version__ == "6.0.2"
    try:
        yield start
    finally:
        for server, thread in started:
            server.close()
            thread.join(WAIT)
