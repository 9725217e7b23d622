"""Classic mode against the real rpyc 6.0.2, in both directions.

* ``rpyc->ours``: ``rpyc.classic.connect`` against ``rpyc_ipy.SlaveService`` on our
  ThreadedServer;
* ``ours->rpyc-slave``: ``rpyc_ipy.classic.connect`` against ``rpyc.core.SlaveService``
  (what ``rpyc_classic`` serves);
* ``ours->rpyc-classic``: ``rpyc_ipy.classic.connect(expose_local=True)`` against
  ``rpyc.utils.classic.SlaveService`` (= ``ClassicService``), which bootstraps a classic
  session towards the client as soon as it connects.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from interopkit import WAIT, MiB, collect, payload, run_threads, wait_until

import rpyc_ipy

rpyc = pytest.importorskip("rpyc")
from rpyc.core import SlaveService as RpycSlaveService  # noqa: E402
from rpyc.utils.classic import SlaveService as RpycClassicService  # noqa: E402

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]


@dataclass
class ClassicSide:
    name: str
    conn: Any
    async_: Callable[[Any], Any]
    exports: Callable[[], int]  # size of the server's table of objects the client holds


@pytest.fixture(params=["rpyc->ours", "ours->rpyc-slave", "ours->rpyc-classic"])
def classic(request: pytest.FixtureRequest, our_server: Any, rpyc_server: Any
            ) -> Iterator[ClassicSide]:
    if request.param == "rpyc->ours":
        server = our_server(rpyc_ipy.SlaveService)
        conn = rpyc.classic.connect("127.0.0.1", server.port)
        conn._config["sync_request_timeout"] = WAIT
        conn.modules.os  # noqa: B018  (the server-side connection exists now)
        assert wait_until(lambda: len(server.clients) == 1)
        server_conn = next(iter(server.clients))
        side = ClassicSide(request.param, conn, rpyc.async_,
                           lambda: len(server_conn._exports))
    else:
        service = RpycSlaveService if request.param == "ours->rpyc-slave" \
            else RpycClassicService
        server = rpyc_server(service)
        conn = rpyc_ipy.classic.connect("127.0.0.1", server.port,
                                        expose_local=request.param == "ours->rpyc-classic",
                                        config={"sync_request_timeout": WAIT})
        # rpyc's own connection object on the server: its table of the client's references
        count = conn.eval("lambda c: len(c._local_objects._dict)")
        server_conn = conn.root.getconn()
        if request.param == "ours->rpyc-classic":
            # the server's bootstrap towards us is served while we wait for replies:
            # let it finish, so no test closes the connection in the middle of it
            done = conn.eval("lambda c: hasattr(c, 'builtins')")
            assert wait_until(lambda: bool(done(server_conn)))
        side = ClassicSide(request.param, conn, rpyc_ipy.async_,
                           lambda: int(count(server_conn)))
    try:
        yield side
    finally:
        conn.close()


def test_modules_eval_execute(classic: ClassicSide) -> None:
    conn = classic.conn
    assert conn.modules.os.getpid() == os.getpid()  # the server runs in this process
    assert conn.modules["os.path"].join("a", "b") == os.path.join("a", "b")
    conn.execute("answer = 6 * 7")
    assert conn.eval("answer") == 42
    assert conn.namespace["answer"] == 42
    assert conn.builtins.len([1, 2, 3]) == 3  # the server calls len() on the client's list
    assert conn.eval("'abc'.upper()") == "ABC"


def test_builtin_and_custom_exceptions_with_the_remote_traceback(classic: ClassicSide) -> None:
    conn = classic.conn
    with pytest.raises(ZeroDivisionError) as info:
        conn.eval("1 / 0")
    text = str(info.value)
    assert "========= Remote Traceback (1) =========" in text and "ZeroDivisionError" in text

    conn.execute("class AppError(Exception):\n    pass\n"
                 "def fail(message):\n    raise AppError(message)\n")
    with pytest.raises(Exception) as custom:
        conn.eval("fail('custom classic failure')")
    text = str(custom.value)
    assert "custom classic failure" in text
    assert "AppError" in text
    assert "========= Remote Traceback (1) =========" in text
    assert 'in fail' in text  # the remote frame


def test_iteration_over_a_remote_list_and_generator(classic: ClassicSide) -> None:
    conn = classic.conn
    remote = conn.eval("[3, 1, 2]")
    assert len(remote) == 3 and list(remote) == [3, 1, 2] and remote[0] == 3 and 2 in remote
    assert list(conn.eval("(i * i for i in range(5))")) == [0, 1, 4, 9, 16]
    assert sorted(conn.eval("{'b': 1, 'a': 2}")) == ["a", "b"]


def test_callbacks_both_ways(classic: ClassicSide) -> None:
    conn = classic.conn
    calls: list[Any] = []

    def local(x: Any) -> Any:
        calls.append(x)
        return x * 2

    plus_one = conn.eval("lambda f, x: f(x) + 1")
    assert plus_one(local, 5) == 11
    assert calls == [5]

    def deeper(x: int) -> int:  # calls back into the server from inside the callback
        return 0 if x == 0 else conn.eval("lambda f, x: f(x)")(deeper, x - 1) + 1

    assert deeper(3) == 3


def test_async_requests(classic: ClassicSide) -> None:
    conn = classic.conn
    add = conn.eval("lambda a, b: a + b")
    sleeper = classic.async_(conn.modules.time.sleep)
    pending = [sleeper(0.05) for _ in range(3)]
    result = classic.async_(add)(20, 22)
    assert result.value == 42
    for item in pending:
        item.wait()
        assert item.ready and not item.error and item.value is None
    failing = classic.async_(conn.eval)("1 / 0")
    failing.wait()
    assert failing.error
    with pytest.raises(ZeroDivisionError):
        failing.value  # noqa: B018


def test_a_netref_sent_back_arrives_as_the_original(classic: ClassicSide) -> None:
    conn = classic.conn
    remote = conn.eval("[1, 2]")
    conn.namespace["held"] = remote
    assert conn.eval("lambda o: o is held")(remote) is True
    assert conn.eval("lambda o: o")(remote) is remote
    local = [1, 2]
    assert conn.eval("lambda o: o")(local) is local


def test_release_returns_the_export_table_to_its_start(classic: ClassicSide) -> None:
    conn = classic.conn
    make = conn.eval("lambda i: [i]")
    classic.exports()  # warm up

    def settled() -> int:
        if isinstance(conn, rpyc_ipy.Connection):
            conn.release_kept()  # the netrefs our client keeps alive for a moment
        collect()
        return classic.exports()

    start = settled()
    held = [make(i) for i in range(20)]
    assert [item[0] for item in held] == list(range(20))
    assert classic.exports() >= start + 20
    del held
    assert wait_until(lambda: settled() == start, timeout=5), (settled(), start)


def test_32_mib_payload_echo(classic: ClassicSide) -> None:
    data = payload(32 * MiB)
    echoed = classic.conn.eval("lambda b: b")(data)
    assert type(echoed) is bytes and echoed == data


def test_eight_threads_share_one_connection(classic: ClassicSide) -> None:
    add = classic.conn.eval("lambda a, b: a + b")
    add(0, 0)

    def work(i: int) -> None:
        for j in range(50):
            assert add(i * 1000, j) == i * 1000 + j

    run_threads(work, 8, timeout=50)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_our_default_classic_client_refuses_the_classic_service_bootstrap(
        rpyc_server: Any) -> None:
    """rpyc's ClassicService bootstraps towards the client; our classic client exposes
    nothing by default, so the server gives up on us: a clear EOFError, no hang."""
    server = rpyc_server(RpycClassicService)
    conn = rpyc_ipy.classic.connect("127.0.0.1", server.port,
                                    config={"sync_request_timeout": WAIT})
    try:
        with pytest.raises(EOFError):
            conn.modules.os.getpid()
    finally:
        conn.close()
    # rpyc's serving thread dies of its failed bootstrap (TypeError: our getmodule is
    # None): wait for it here, so its report does not land in another test
    assert wait_until(lambda: not server.clients, timeout=5)
    for thread in threading.enumerate():
        if thread.name.startswith("RpycSpawnThread"):
            thread.join(5)
