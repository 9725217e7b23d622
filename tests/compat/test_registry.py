"""Our registry with our servers and clients: RPyC's commands over UDP and TCP, the
servers' auto_register, discover / list_services / connect_by_service, the limits,
and ``rpyc-ipy registry``. (tests/interop/test_interop_registry.py crosses with rpyc.)"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from compatkit import WAIT
from waitkit import wait_until

import rpyc_ipy
from rpyc_ipy.errors import DiscoveryError, ForbiddenError, UsageError
from rpyc_ipy.protocol import brine
from rpyc_ipy.utils.registry import (
    RegistryClient,
    RegistryServer,
    TCPRegistryClient,
    UDPRegistryClient,
)

Registry = Callable[..., RegistryServer]


class EchoService(rpyc_ipy.Service):
    ALIASES = ["ECHO", "PARROT"]

    def exposed_echo(self, value: Any) -> Any:
        return value


def client_for(server: RegistryServer, kind: str, timeout: float = WAIT) -> RegistryClient:
    cls = UDPRegistryClient if kind == "udp" else TCPRegistryClient
    return cls("127.0.0.1", port=server.port, timeout=timeout)


@pytest.mark.parametrize("kind", ["udp", "tcp"])
def test_register_discover_list_unregister(registry: Registry, kind: str) -> None:
    server = registry(kind, allow_listing=True)
    client = client_for(server, kind)
    assert client.register(("ECHO", "parrot"), 5555, interface="127.0.0.1") is True
    assert client.discover("echo") == (("127.0.0.1", 5555),)
    assert client.discover("PARROT") == (("127.0.0.1", 5555),)
    assert sorted(client.list() or ()) == ["ECHO", "PARROT"]
    assert client.list("127.0.0.1") == client.list()
    assert client.list("10.1.2.3") == ()
    client.unregister(5555)
    wait_until(lambda: client.discover("ECHO") == (), WAIT, what="the registration dropped")
    assert client.list() == ()


@pytest.mark.parametrize("kind", ["udp", "tcp"])
def test_listing_is_off_unless_allowed(registry: Registry, kind: str) -> None:
    client = client_for(registry(kind), kind)
    assert client.list() is None
    with pytest.raises(ForbiddenError, match="does not allow listing"):
        rpyc_ipy.list_services(client)


def test_nothing_registered_is_a_discovery_error(registry: Registry) -> None:
    client = client_for(registry("udp"), "udp")
    with pytest.raises(DiscoveryError, match="no server of 'NOTHING' is registered"):
        rpyc_ipy.discover("NOTHING", registrar=client)


def test_no_registry_answering_gives_nothing_within_the_timeout() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # takes datagrams, never answers
        client = UDPRegistryClient("127.0.0.1", port=silent.getsockname()[1], timeout=0.2)
        assert client.discover("ECHO") == ()
        assert client.register(("ECHO",), 5555) is False


def test_a_full_registry_refuses_new_entries_but_renews_old_ones(registry: Registry) -> None:
    server = registry("tcp", max_entries=2)
    client = client_for(server, "tcp")
    assert client.register(("A", "B"), 1000) is True
    assert client.register(("C",), 1001) is False  # one over the limit
    assert client.discover("C") == ()
    assert client.register(("A", "B"), 1000) is True  # a renewal adds nothing
    client.unregister(1000)
    wait_until(lambda: client.discover("A") == (), WAIT, what="the unregistration")
    assert client.register(("C",), 1001) is True


def test_stale_registrations_are_pruned(registry: Registry) -> None:
    server = registry("udp", pruning_timeout=0.05)
    removed: queue.Queue[tuple[str, Any]] = queue.Queue()
    server.on_service_removed = lambda name, addrinfo: removed.put((name, addrinfo))  # type: ignore[method-assign]
    client = client_for(server, "udp")
    assert client.register(("ECHO",), 5555) is True
    wait_until(lambda: client.discover("ECHO") == (), WAIT, what="the stale entry pruned")
    assert removed.get(timeout=WAIT) == ("ECHO", ("127.0.0.1", 5555))


def test_malformed_datagrams_are_dropped_and_the_registry_goes_on(registry: Registry) -> None:
    server = registry("udp")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.3)
        for junk in (b"\xff\xfe", brine.dump(("NOPE", "QUERY", ("X",))),
                     brine.dump(("RPYC", "REGISTER", (("X",), 70000))),
                     brine.dump(("RPYC", "SHUTDOWN", ()))):
            sock.sendto(junk, ("127.0.0.1", server.port))
            with pytest.raises(TimeoutError):
                sock.recvfrom(1500)
    client = client_for(server, "udp")
    assert client.register(("ECHO",), 5555) is True


def test_an_idle_tcp_client_does_not_hold_up_others(registry: Registry) -> None:
    server = registry("tcp", client_timeout=WAIT * 3)
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT):
        client = client_for(server, "tcp")
        assert client.register(("ECHO",), 5555) is True  # served while the idle one waits


def test_tcp_clients_beyond_max_clients_are_closed(registry: Registry) -> None:
    server = registry("tcp", max_clients=1, client_timeout=WAIT * 3)
    client = client_for(server, "tcp")
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT):
        # the idle connection holds the only slot: one more is one over the limit
        assert client.register(("ECHO",), 5555) is False
    wait_until(lambda: client.register(("ECHO",), 5555), WAIT, what="a free slot")


@pytest.mark.parametrize("kind", ["udp", "tcp"])
def test_a_server_registers_while_it_serves_and_unregisters_on_close(
        registry: Registry, kind: str) -> None:
    registrar = client_for(registry(kind), kind)
    with rpyc_ipy.ThreadedServer(EchoService, port=0, registrar=registrar,
                                 listener_timeout=0.2) as server:
        assert server.auto_register is True
        server.start_in_background()
        wait_until(lambda: registrar.discover("ECHO") == (("127.0.0.1", server.port),), WAIT,
                   what="the server's registration")
        assert registrar.discover("PARROT") == (("127.0.0.1", server.port),)
        with rpyc_ipy.connect_by_service("parrot", registrar=registrar) as conn:
            assert conn.root.echo("hi") == "hi"
        assert rpyc_ipy.discover("ECHO", host="127.0.0.1", registrar=registrar) == \
            [("127.0.0.1", server.port)]
    wait_until(lambda: registrar.discover("ECHO") == (), WAIT, what="the unregistration")


def test_auto_register_false_keeps_the_server_out_of_the_registry(registry: Registry) -> None:
    registrar = client_for(registry("tcp"), "tcp")
    server = rpyc_ipy.ThreadedServer(EchoService, port=0, registrar=registrar,
                                     auto_register=False)
    assert server.auto_register is False and server.registration is None
    server.close()


def test_a_registered_server_that_is_gone_is_a_discovery_error(registry: Registry) -> None:
    registrar = client_for(registry("udp"), "udp")
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        dead_port = placeholder.getsockname()[1]  # bound, not listening: refuses
        assert registrar.register(("ECHO",), dead_port) is True
        with pytest.raises(DiscoveryError, match="every registered server of 'ECHO' is down"):
            rpyc_ipy.connect_by_service("ECHO", registrar=registrar)


def test_a_unix_socket_server_cannot_register(tmp_path: Any) -> None:
    with pytest.raises(UsageError, match="unix socket cannot register"):
        rpyc_ipy.ThreadedServer(EchoService, socket_path=str(tmp_path / "s"),
                                registrar=UDPRegistryClient("127.0.0.1"))


def test_the_registry_command_serves_until_sigterm() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "rpyc_ipy", "registry", "--mode", "tcp",
                             "--port", "0", "--listing"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        lines: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        threading.Thread(target=lambda: lines.put(proc.stdout.readline() if proc.stdout
                                                  else ""), daemon=True).start()
        line = lines.get(timeout=WAIT)
        assert line.startswith("rpyc-ipy: serving REGISTRY/TCP on 127.0.0.1:"), line
        port = int(line.split()[4].rsplit(":", 1)[1])
        client = TCPRegistryClient("127.0.0.1", port=port, timeout=WAIT)
        assert client.register(("ECHO",), 5555) is True
        assert client.list() == ("ECHO",)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=WAIT)
        assert proc.returncode == 0, stderr
        assert "stopped (SIGTERM); registry closed" in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=WAIT)


def test_the_registry_command_reports_a_busy_port(registry: Registry) -> None:
    busy = registry("tcp")
    done = subprocess.run([sys.executable, "-m", "rpyc_ipy", "registry", "--mode", "tcp",
                           "--port", str(busy.port), "--host", "127.0.0.1"],
                          capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{busy.port}" in done.stderr
