"""Fixtures shared by every test directory.

The throwaway PKI (``pki``: CA, server and client certificates, an untrusted CA
and a rogue server certificate) and the SRP user database (``userdb``: alice with
password "correct horse", bob with "battery staple") are defined in
tests/auth/authkit.py; this puts that module on ``sys.path`` and offers both
fixtures to tests/cli, tests/integration and the rest.
"""

from __future__ import annotations

import sys
from pathlib import Path

# shared helper modules: authkit (certificates, users), codec_vectors (spec files, same_value)
for _helpers in ("auth", "protocol"):
    _path = str(Path(__file__).resolve().parent / _helpers)
    if _path not in sys.path:
        sys.path.insert(0, _path)

import threading  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
from authkit import pki, userdb  # noqa: E402

import rpyc_ipy  # noqa: E402
from rpyc_ipy.utils.registry import (  # noqa: E402
    RegistryServer,
    TCPRegistryServer,
    UDPRegistryServer,
)

__all__ = ["pki", "registry", "start_server", "userdb"]

REGISTRY_KINDS = {"udp": UDPRegistryServer, "tcp": TCPRegistryServer}


@pytest.fixture
def start_server() -> Iterator[Callable[..., rpyc_ipy.ThreadedServer]]:
    """``start_server(service, **kwargs)``: a started rpyc_ipy ThreadedServer on
    127.0.0.1 port 0, closed at the end of the test. Suites wrap it with their
    own default service."""
    servers: list[rpyc_ipy.ThreadedServer] = []

    def start(service: Any, **kwargs: Any) -> rpyc_ipy.ThreadedServer:
        kwargs.setdefault("listener_timeout", 0.2)  # close() returns sooner
        server = rpyc_ipy.ThreadedServer(service, hostname="127.0.0.1", port=0, **kwargs)
        servers.append(server)
        server.start_in_background()
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.close()


@pytest.fixture
def registry() -> Iterator[Callable[..., RegistryServer]]:
    """``registry(kind, **kwargs)``: our UDP or TCP registry on 127.0.0.1 port 0,
    serving from a thread, closed at the end of the test."""
    started: list[tuple[RegistryServer, threading.Thread]] = []

    def start(kind: str = "udp", **kwargs: Any) -> RegistryServer:
        server = REGISTRY_KINDS[kind](host="127.0.0.1", port=0, **kwargs)
        thread = threading.Thread(target=server.start, name="registry", daemon=True)
        thread.start()
        started.append((server, thread))
        return server

    try:
        yield start
    finally:
        for server, thread in started:
            server.close()
            thread.join(20.0)
            assert not thread.is_alive()
