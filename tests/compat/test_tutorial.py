"""RPyC's documentation tutorial, run with only the imports renamed (``rpyc`` ->
``rpyc_ipy``): classic mode, netrefs, services, callbacks, async operation, the
registry and secure connections. Port 18861 becomes port 0 (the real port is
``server.port``), servers run in a thread of the test, and the registry is reached on
127.0.0.1 instead of by broadcast.

Servers are started the rpyc-test way, ``Thread(target=server.start)``: ``start()``
serves in the calling thread, as rpyc's does.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from threading import Thread
from typing import Any

import pytest
from compatkit import WAIT
from waitkit import wait_until

import rpyc_ipy as rpyc
from rpyc_ipy.errors import AuthenticationError
from rpyc_ipy.utils.registry import UDPRegistryClient, UDPRegistryServer
from rpyc_ipy.utils.server import ThreadedServer

# -- the tutorial's services, as written there --------------------------------------


class MyService(rpyc.Service):
    def on_connect(self, conn):  # type: ignore[no-untyped-def]
        # code that runs when a connection is created
        # (to init the service, if needed)
        pass

    def on_disconnect(self, conn):  # type: ignore[no-untyped-def]
        # code that runs after the connection has already closed
        # (to finalize the service, if needed)
        pass

    def exposed_get_answer(self):  # type: ignore[no-untyped-def]  # this is an exposed method
        return 42

    exposed_the_real_answer_though = 43     # an exposed attribute

    def get_question(self):  # type: ignore[no-untyped-def]  # while this method is not exposed
        return "what is the airspeed velocity of an unladen swallow?"


@rpyc.service
class DecoratedService(rpyc.Service):
    @rpyc.exposed
    class MyClass:
        @rpyc.exposed
        def foo(self):  # type: ignore[no-untyped-def]
            return "foo"

    @rpyc.exposed
    def get_answer(self):  # type: ignore[no-untyped-def]
        return 42


class FileMonitorService(rpyc.Service):
    class exposed_FileMonitor:  # exposing names is not limited to methods :)
        def __init__(self, filename, callback, interval=1):  # type: ignore[no-untyped-def]
            self.filename = filename
            self.interval = interval
            self.last_stat = None
            self.callback = rpyc.async_(callback)   # create an async callback
            self.active = True
            self.thread = Thread(target=self.work)
            self.thread.start()

        def exposed_stop(self):  # type: ignore[no-untyped-def]  # this method has to be exposed too
            self.active = False
            self.thread.join()

        def work(self):  # type: ignore[no-untyped-def]
            while self.active:
                stat = os.stat(self.filename)
                if self.last_stat is not None and self.last_stat != stat:
                    self.callback(self.last_stat, stat)   # notify the client of the change
                self.last_stat = stat
                time.sleep(self.interval)


# -- running them -----------------------------------------------------------------------


@pytest.fixture
def serve() -> Iterator[Callable[..., ThreadedServer]]:
    """``serve(service, **kwargs)``: ``ThreadedServer(service, port=0, ...)`` started
    in a thread, closed at the end of the test."""
    started: list[tuple[ThreadedServer, Thread]] = []

    def start(service: Any, **kwargs: Any) -> ThreadedServer:
        t = ThreadedServer(service, port=0, listener_timeout=0.2, **kwargs)
        thread = Thread(target=t.start, daemon=True)
        thread.start()
        started.append((t, thread))
        return t

    try:
        yield start
    finally:
        for t, thread in started:
            t.close()
            thread.join(WAIT)


def test_part1_classic(serve: Callable[..., ThreadedServer], tmp_path: Path) -> None:
    t = serve(rpyc.SlaveService)  # what rpyc_classic.py serves
    conn = rpyc.classic.connect("localhost", t.port)
    rsys = conn.modules.sys
    assert rsys.version == __import__("sys").version  # the server is this process here
    minidom = conn.modules["xml.dom.minidom"]
    assert minidom.parseString("<a/>").documentElement.tagName == "a"
    conn.execute("x = 5")
    assert conn.namespace["x"] == 5
    assert conn.eval("x + 1") == 6
    f = conn.builtin.open(str(tmp_path / "hello.txt"), "w")
    f.write("hello")
    f.close()
    assert (tmp_path / "hello.txt").read_text() == "hello"

    def square(x):  # type: ignore[no-untyped-def]
        return x ** 2

    fn = rpyc.classic.teleport_function(conn, square)
    assert fn(2) == 4
    conn.close()


def test_part2_netrefs(serve: Callable[..., ThreadedServer]) -> None:
    t = serve(rpyc.SlaveService)
    conn = rpyc.classic.connect("localhost", t.port)
    assert isinstance(conn.modules.sys, rpyc.BaseNetref)
    assert isinstance(conn.modules.sys.path, list)  # netrefs answer isinstance for the real type
    remote_list = conn.builtin.range(7)
    assert list(remote_list) == [0, 1, 2, 3, 4, 5, 6]
    with pytest.raises(ZeroDivisionError) as raised:
        conn.eval("1/0")
    assert "ZeroDivisionError" in raised.value._remote_tb  # type: ignore[attr-defined]
    conn.close()


def test_part3_services(serve: Callable[..., ThreadedServer]) -> None:
    t = serve(MyService)
    c = rpyc.connect("localhost", t.port)
    assert c.root.get_answer() == 42
    assert c.root.the_real_answer_though == 43
    with pytest.raises(AttributeError):
        c.root.get_question()
    assert c.root.get_service_name() == "MY"
    c.close()


def test_part3_decorated_services(serve: Callable[..., ThreadedServer]) -> None:
    t = serve(DecoratedService)
    c = rpyc.connect("localhost", t.port)
    assert c.root.get_answer() == 42
    assert c.root.MyClass().foo() == "foo"
    c.close()


def test_part4_callbacks_and_symmetry(serve: Callable[..., ThreadedServer],
                                      tmp_path: Path) -> None:
    t = serve(FileMonitorService)
    changes: list[str] = []
    changed = threading.Event()

    def on_file_changed(oldstat, newstat):  # type: ignore[no-untyped-def]
        changes.append(f"file changed\n    old stat: {oldstat}\n    new stat: {newstat}")
        changed.set()

    path = str(tmp_path / "floop.bloop")
    f = open(path, "w")
    conn = rpyc.connect("localhost", t.port)
    bgsrv = rpyc.BgServingThread(conn)   # creates a bg thread to process incoming events
    mon = conn.root.FileMonitor(path, on_file_changed, interval=0.05)  # create a filemon
    try:
        def change_size() -> bool:  # until the monitor has seen a size before and after
            f.write("shmoop")   # change size
            f.flush()
            return changed.wait(0.2)

        wait_until(change_size, WAIT, what="the change callback")
        old, new = changes[0].split("\n")[1:]
        assert "st_size=" in old and "st_size=" in new and old != new
    finally:
        mon.stop()
        bgsrv.stop()
        conn.close()
        f.close()


def test_part5_async(serve: Callable[..., ThreadedServer]) -> None:
    t = serve(rpyc.SlaveService)
    c = rpyc.classic.connect("localhost", t.port)
    release = c.modules.threading.Event()
    await_release = rpyc.async_(release.wait)
    res = await_release(WAIT)  # returns at once, unlike the synchronous call
    assert not res.ready
    release.set()
    assert res.value is True and res.ready

    aint = rpyc.async_(c.builtin.int)   # async wrapper for the remote type int
    x = aint("8")
    assert x.value == 8
    x = aint("this is not a valid number")
    x.wait()
    assert x.error
    with pytest.raises(ValueError):
        x.value  # noqa: B018 - raises the remote exception, as in the tutorial

    blocked = c.modules.threading.Event()
    timed_wait = rpyc.timed(blocked.wait, 0.05)
    res = timed_wait(WAIT)
    wait_until(lambda: res.expired, WAIT, what="the timed call to expire")
    with pytest.raises(rpyc.AsyncResultTimeout):
        res.value  # noqa: B018
    blocked.set()

    called = threading.Event()
    res = await_release(WAIT)
    res.add_callback(lambda r: called.set())
    res.wait()  # the reply is read (and the callback run) by whoever serves the connection
    assert called.is_set()
    c.close()


def test_registry_discovery_and_connect_by_service() -> None:
    registry = UDPRegistryServer(host="127.0.0.1", port=0)
    Thread(target=registry.start, daemon=True).start()
    registrar = UDPRegistryClient(ip="127.0.0.1", port=registry.port, timeout=WAIT)
    t = ThreadedServer(MyService, port=0, auto_register=True, registrar=registrar,
                       listener_timeout=0.2)
    Thread(target=t.start, daemon=True).start()
    try:
        wait_until(lambda: registrar.discover("MY"), WAIT, what="MyService registered")
        assert rpyc.discover("MY", registrar=registrar) == [("127.0.0.1", t.port)]
        c = rpyc.connect_by_service("MY", registrar=registrar)
        assert c.root.get_answer() == 42
        c.close()
        with pytest.raises(rpyc.utils.factory.DiscoveryError):
            rpyc.discover("NOBODY", registrar=registrar)
    finally:
        t.close()
        registry.close()


def test_secure_connections_with_certificates(serve: Callable[..., ThreadedServer],
                                              pki: Any) -> None:
    # rpyc's "Secure connections" page: the server's authenticator, and a client that
    # presents its certificate; the documented ca_certs makes both sides verify the other
    from rpyc_ipy.utils.authenticators import SSLAuthenticator

    authenticator = SSLAuthenticator(str(pki.server_key), str(pki.server_cert),
                                     ca_certs=str(pki.ca))
    t = serve(rpyc.SlaveService, authenticator=authenticator)
    conn = rpyc.classic.ssl_connect("localhost", port=t.port, keyfile=str(pki.client_key),
                                    certfile=str(pki.client_cert), ca_certs=str(pki.ca))
    assert conn.modules.os.getpid() == os.getpid()
    conn.close()
    # the same page's client without ca_certs: rpyc would not check the server at all; we
    # do (README, "Differences from RPyC"), so a certificate from a private CA is refused
    with pytest.raises(AuthenticationError, match="certificate verification failed"):
        rpyc.classic.ssl_connect("localhost", port=t.port, keyfile=str(pki.client_key),
                                 certfile=str(pki.client_cert))
