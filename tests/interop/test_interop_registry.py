"""The registry across implementations, over UDP and TCP on loopback: a real rpyc 6.0.2
registry (a subprocess) with our servers and clients, and our registry with real
rpyc servers and clients."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from interopkit import WAIT
from waitkit import wait_until

import rpyc_ipy
from rpyc_ipy.utils import registry as our_registry

rpyc = pytest.importorskip("rpyc")
from rpyc import Service as RpycBaseService  # noqa: E402
from rpyc.utils import factory as rpyc_factory  # noqa: E402
from rpyc.utils import registry as rpyc_registry  # noqa: E402
from rpyc.utils.server import ThreadedServer as RpycThreadedServer  # noqa: E402

RPYC_REGISTRY = """
import sys
from rpyc.utils.registry import TCPRegistryServer, UDPRegistryServer
kind = UDPRegistryServer if sys.argv[1] == "udp" else TCPRegistryServer
server = kind(host="127.0.0.1", port=0, allow_listing=True)
print(server.port, flush=True)
server.start()
"""


class OurEcho(rpyc_ipy.Service):
    ALIASES = ["OURECHO"]

    def exposed_echo(self, value: Any) -> Any:
        return value


class RpycEcho(RpycBaseService):
    ALIASES = ["RPYCECHO"]

    def exposed_echo(self, value: Any) -> Any:
        return value


def our_client(kind: str, port: int) -> Any:
    cls = our_registry.UDPRegistryClient if kind == "udp" else our_registry.TCPRegistryClient
    return cls("127.0.0.1", port=port, timeout=WAIT)


def rpyc_client(kind: str, port: int) -> Any:
    cls = rpyc_registry.UDPRegistryClient if kind == "udp" else rpyc_registry.TCPRegistryClient
    return cls("127.0.0.1", port=port, timeout=WAIT)


@pytest.fixture
def rpyc_registry_process() -> Iterator[Callable[[str], int]]:
    """``start(kind)``: a real rpyc registry in a subprocess on 127.0.0.1; its port."""
    procs: list[subprocess.Popen[str]] = []

    def start(kind: str) -> int:
        proc = subprocess.Popen([sys.executable, "-c", RPYC_REGISTRY, kind],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()
                                                             if proc.stdout else ""))
        reader.start()
        reader.join(WAIT)
        assert line and line[0].strip().isdigit(), f"no port from the rpyc registry: {line}"
        return int(line[0])

    try:
        yield start
    finally:
        for proc in procs:
            proc.kill()
            proc.communicate(timeout=WAIT)


@pytest.mark.parametrize("kind", ["udp", "tcp"])
def test_rpyc_registry_with_our_server_and_both_clients(
        rpyc_registry_process: Callable[[str], int], kind: str) -> None:
    port = rpyc_registry_process(kind)
    theirs = rpyc_client(kind, port)
    with rpyc_ipy.ThreadedServer(OurEcho, port=0, registrar=our_client(kind, port),
                                 listener_timeout=0.2) as server:
        server.start_in_background()
        wait_until(lambda: theirs.discover("OURECHO") == (("127.0.0.1", server.port),), WAIT,
                   what="our server registered in rpyc's registry")
        assert "OURECHO" in theirs.list()
        assert our_client(kind, port).list() == theirs.list()
        conn = rpyc_factory.connect_by_service("OURECHO", registrar=theirs)
        try:
            assert conn.root.echo("from rpyc") == "from rpyc"
        finally:
            conn.close()
        with rpyc_ipy.connect_by_service("ourecho", registrar=our_client(kind, port)) as ours:
            assert ours.root.echo("from us") == "from us"
    wait_until(lambda: theirs.discover("OURECHO") == (), WAIT,
               what="our server unregistered from rpyc's registry")


@pytest.mark.parametrize("kind", ["udp", "tcp"])
def test_our_registry_with_an_rpyc_server_and_both_clients(
        registry: Callable[..., our_registry.RegistryServer], kind: str) -> None:
    registry_server = registry(kind, allow_listing=True)
    server = RpycThreadedServer(RpycEcho, hostname="127.0.0.1", port=0,
                                registrar=rpyc_client(kind, registry_server.port),
                                auto_register=True, listener_timeout=0.2,
                                protocol_config={"sync_request_timeout": WAIT})
    thread = threading.Thread(target=server.start, daemon=True)
    thread.start()
    try:
        ours = our_client(kind, registry_server.port)
        wait_until(lambda: ours.discover("RPYCECHO") == (("127.0.0.1", server.port),), WAIT,
                   what="rpyc's server registered in our registry")
        assert rpyc_factory.list_services(rpyc_client(kind, registry_server.port)) == ("RPYCECHO",)
        conn = rpyc_factory.connect_by_service("RPYCECHO",
                                               registrar=rpyc_client(kind, registry_server.port))
        try:
            assert conn.root.echo("from rpyc") == "from rpyc"
        finally:
            conn.close()
        with rpyc_ipy.connect_by_service("RPYCECHO", registrar=ours) as mine:
            assert mine.root.echo("from us") == "from us"
        wait_until(lambda: not server.clients, WAIT)
    finally:
        server.close()
        thread.join(WAIT)
    wait_until(lambda: registry_server.services == {}, WAIT,
               what="rpyc's server unregistered from our registry")
