"""The execution service: explicit grants, refusal of unauthenticated peers, the exposed
surface, the namespace view, and the classic bootstrap."""

from __future__ import annotations

from typing import Any

import pytest

import rpyc_ipy
from rpyc_ipy.errors import RemoteError, UsageError
from rpyc_ipy.remote import ExecutionService
from rpyc_ipy.remote.bootstrap import install_engine
from rpyc_ipy.remote.service import _is_local_peer


def test_unauthenticated_peers_are_refused_by_default() -> None:
    conn = rpyc_ipy.connect_thread(remote_service=ExecutionService)
    try:
        with pytest.raises((AttributeError, RemoteError), match="requires an authenticated"):
            conn.root.execute("1", None, ())
        assert dir(conn.root) == []
    finally:
        conn.close()


def test_loopback_plaintext_is_an_explicit_option() -> None:
    with pytest.raises(UsageError, match="unknown"):
        ExecutionService.configured(allow_everything=True)
    with pytest.raises(UsageError, match="True or False"):
        ExecutionService.configured(allow_loopback_plaintext="yes")
    assert _is_local_peer(None) and _is_local_peer((("127.0.0.1", 1), ("127.0.0.1", 2)))
    assert _is_local_peer(("a", "/tmp/socket")) and _is_local_peer((None, ("::1", 5, 0, 0)))
    assert not _is_local_peer((("10.0.0.1", 1), ("10.0.0.2", 2)))


def test_exposed_surface_and_grants(service_conn: Any) -> None:
    root = service_conn.root
    info = dict(root.hello(()))
    assert "execute" in info["features"] and dict(info["grants"])["allow_public_attrs"]
    assert set(dir(root)) >= {"exposed_execute", "exposed_cancel", "exposed_describe"}
    with pytest.raises(AttributeError):
        root.on_connect(None)  # public, but not exposed: the service decides
    with pytest.raises(AttributeError):
        root.configured()
    outcome = root.execute("print('x')\n1 + 1", None, (("want_value", True),))
    assert outcome[0] == "ok" and outcome[6] == ("value", 2)


def test_namespace_view(service_conn: Any) -> None:
    root = service_conn.root
    root.execute("import os\nvalue = 41", None, ())
    ns = root.namespace()
    assert ns.value == 41 and "os" in dir(ns) and "__builtins__" not in dir(ns)
    ns.value = 42
    ns.fresh = "new"
    assert root.execute("value, fresh", None, ())[2][0][0][1] == "(42, 'new')"
    assert ns.os.path.join("a", "b") == "a/b"
    del ns.fresh
    with pytest.raises(AttributeError):
        _ = ns.fresh
    assert len(ns) == len(ns.keys()) and "value" in ns


def test_each_connection_has_its_own_namespace(service_conn: Any,
                                               service: type[ExecutionService]) -> None:
    other = rpyc_ipy.connect_thread(remote_service=service)
    try:
        service_conn.root.execute("mine = 1", None, ())
        assert other.root.execute("'mine' in dir()", None, ())[2][0][0][1] == "False"
    finally:
        other.close()


def test_the_engine_ships_to_a_classic_server() -> None:
    conn = rpyc_ipy.classic.connect_thread()
    try:
        engine = install_engine(conn, capture_fd=False)
        assert dict(engine.hello())["engine"] == "1"
        conn.execute("seen_by_classic = 3")
        assert engine.execute("seen_by_classic * 2", None, ())[2][0][0][1] == "6"
        again = install_engine(conn, capture_fd=False)  # loaded once per process
        assert dict(again.hello())["engine"] == "1"
    finally:
        conn.close()


def test_an_unauthenticated_data_channel_from_beyond_loopback_is_refused() -> None:
    from rpyc_ipy.core.transport import TransportInfo
    from rpyc_ipy.errors import AuthenticationError
    from rpyc_ipy.remote import SessionRegistry

    closed: list[bool] = []

    class FromElsewhere:  # what a plaintext transport from another host says of itself
        info = TransportInfo("tcp", ("127.0.0.1", 18821), ("192.0.2.7", 50000))

        def close(self) -> None:
            closed.append(True)

    registry = SessionRegistry()
    handler = ExecutionService.configured(allow_loopback_plaintext=True,
                                          registry=registry).channel_handler()
    transport: Any = FromElsewhere()
    with pytest.raises(AuthenticationError, match="loopback"):
        handler(transport, None)
    assert closed and len(registry) == 0
