"""Service mode against the real rpyc 6.0.2, in both directions.

Every scenario runs twice: ``rpyc->ours`` is ``rpyc.connect`` against a
``rpyc_ipy.ThreadedServer`` serving a ``rpyc_ipy.Service``; ``ours->rpyc`` is
``rpyc_ipy.connect`` against ``rpyc.utils.server.ThreadedServer`` serving an
``rpyc.Service``. Both services have the same body (interopkit._Body).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from interopkit import (
    WAIT,
    Box,
    MiB,
    OurService,
    RpycService,
    Side,
    collect,
    payload,
    run_threads,
    wait_until,
)

import rpyc_ipy

rpyc = pytest.importorskip("rpyc")
pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

CLIENT_CONFIG = {"sync_request_timeout": WAIT}


@pytest.fixture(params=["rpyc->ours", "ours->rpyc"])
def side(request: pytest.FixtureRequest, our_server: Any, rpyc_server: Any) -> Iterator[Side]:
    if request.param == "rpyc->ours":
        server = our_server(OurService)
        conn = rpyc.connect("127.0.0.1", server.port, config=dict(CLIENT_CONFIG))
        made = Side(request.param, conn, rpyc.async_, server)
    else:
        server = rpyc_server(RpycService)
        conn = rpyc_ipy.connect("127.0.0.1", server.port, config=CLIENT_CONFIG, timeout=WAIT)
        made = Side(request.param, conn, rpyc_ipy.async_, server)
    try:
        yield made
    finally:
        conn.close()


def test_calls_and_attributes(side: Side) -> None:
    root = side.root
    assert root.add(19, 23) == 42
    assert root.add("con", "cat") == "concat"
    assert root.add((1, 2), (3,)) == (1, 2, 3)
    assert root.echo(None) is None
    assert root.echo(2**100) == 2**100
    assert root.echo(frozenset({1, 2})) == frozenset({1, 2})
    assert root.answer == 42  # exposed_answer, through the unprefixed name
    assert root.exposed_answer == 42
    assert root.get_service_name() in ("OUR", "RPYC")
    box = root.get_box()
    assert box.label == "box" and box.n == 7 and box.double() == 14
    # the server's policy holds whichever library asks (at the latest when the value is used)
    for name in ("_setup", "_exports", "box", "__dict__", "kept"):
        with pytest.raises(AttributeError):
            repr(getattr(root, name))
    with pytest.raises(AttributeError):
        root._setup()


def test_hasattr_is_false_for_a_method_the_rpyc_server_refuses(rpyc_server: Any) -> None:
    server = rpyc_server(RpycService)
    with rpyc_ipy.connect("127.0.0.1", server.port, config=CLIENT_CONFIG, timeout=WAIT) as conn:
        assert not hasattr(conn.root, "_setup")


def test_builtin_exception_with_the_remote_traceback(side: Side) -> None:
    with pytest.raises(KeyError) as info:
        side.root.fail_builtin("missing key")
    text = str(info.value)
    assert "missing key" in text
    assert "========= Remote Traceback (1) =========" in text
    assert "Traceback (most recent call last):" in text
    assert "exposed_fail_builtin" in text  # the remote frame is in the text
    assert "raise KeyError(message)" in text


def test_custom_exception_with_the_remote_traceback(side: Side) -> None:
    with pytest.raises(Exception) as info:
        side.root.fail_custom("only the server knows this class")
    exc = info.value
    text = str(exc)
    assert "only the server knows this class" in text
    assert "========= Remote Traceback (1) =========" in text
    assert "exposed_fail_custom" in text
    assert "CustomError" in text
    if side.name == "ours->rpyc":
        # never rebuilt as the class itself by default: a generic remote error naming it
        assert isinstance(exc, rpyc_ipy.RemoteError)
        assert exc.remote_type == "interopkit.CustomError"
        assert "exposed_fail_custom" in exc.remote_traceback
    else:
        from rpyc.core.vinegar import GenericException

        assert isinstance(exc, GenericException)
        assert "CustomError" in type(exc).__name__


def test_iteration_over_a_remote_list_and_generator(side: Side) -> None:
    numbers = side.root.numbers(6)
    assert len(numbers) == 6
    assert list(numbers) == [0, 1, 2, 3, 4, 5]
    assert numbers[2] == 2 and 5 in numbers and 9 not in numbers
    assert [x * 10 for x in numbers] == [0, 10, 20, 30, 40, 50]
    assert list(side.root.squares(5)) == [0, 1, 4, 9, 16]
    assert list(side.root.squares(0)) == []
    gen = side.root.squares(3)
    assert next(gen) == 0 and next(gen) == 1 and next(gen) == 4
    with pytest.raises(StopIteration):
        next(gen)


def test_callbacks_both_ways(side: Side) -> None:
    seen: list[Any] = []

    def local(x: Any) -> Any:
        seen.append(x)
        return x * 2

    assert side.root.call_plus_one(local, 5) == 11
    assert seen == [5]

    # a callback that calls back into the server, three levels deep
    def deeper(x: int) -> int:
        if x == 0:
            return 0
        return side.root.call(deeper, x - 1) + 1

    assert side.root.call(deeper, 3) == 3

    # an exception raised by the local callback reaches the server, which sends it back
    def broken(_: Any) -> Any:
        raise ValueError("raised by the client's callback")

    with pytest.raises(ValueError, match="raised by the client's callback"):
        side.root.call_plus_one(broken, 1)


def test_a_callback_sent_on_every_call_is_released_with_its_count(side: Side) -> None:
    """Our side keeps the netref of a callback it is sent on every call, and its one
    DEL carries every reference at once; rpyc's table, which counts each send, must
    come back to its start (a DEL of 1 per call, or a lost one, would not do that)."""
    conn = side.conn
    ours = isinstance(conn, rpyc_ipy.Connection)

    def table() -> int:
        conn.ping()  # the client reads the peer's DELs only while it calls
        return len(conn._exports) if ours else len(conn._local_objects._dict)

    def cb(x: int) -> int:
        return x + 1

    start = table()
    for i in range(30):
        assert side.root.call(cb, i) == i + 1
    assert wait_until(lambda: table() == start, timeout=10), (table(), start)


def test_async_requests(side: Side) -> None:
    slow = side.async_(side.root.slow_add)
    results = [slow(i, 1, 0.05) for i in range(4)]
    quick = side.async_(side.root.add)(2, 3)
    assert quick.value == 5
    assert [result.value for result in results] == [1, 2, 3, 4]
    failing = side.async_(side.root.fail_builtin)("async failure")
    failing.wait()
    assert failing.ready and failing.error
    with pytest.raises(KeyError, match="async failure"):
        failing.value  # noqa: B018


def test_a_netref_sent_back_arrives_as_the_original(side: Side) -> None:
    box = side.root.get_box()
    assert side.root.is_my_box(box) is True  # the server got its own object back
    assert side.root.echo(box) is box  # and the client gets its same netref back
    assert side.root.is_my_box(side.root.make_box(1)) is False

    local = Box(3)  # the client's object, lent to the server and returned
    side.root.keep(local)
    assert side.root.echo(local) is local
    assert side.root.kept_is(local) is True


def test_release_returns_the_export_table_to_its_start(side: Side) -> None:
    root = side.root
    root.exports()  # warm up: proxy classes, method netrefs

    def settled() -> int:
        if isinstance(side.conn, rpyc_ipy.Connection):
            side.conn.release_kept()  # the netrefs our client keeps alive for a moment
        collect()
        return int(root.exports())

    start = settled()
    boxes = [root.make_box(i) for i in range(20)]
    assert [box.n for box in boxes] == list(range(20))
    assert root.exports() >= start + 20
    del boxes
    assert wait_until(lambda: settled() == start, timeout=5), (settled(), start)


def test_32_mib_payload_echo(side: Side) -> None:
    data = payload(32 * MiB)
    echoed = side.root.echo(data)
    assert type(echoed) is bytes and len(echoed) == len(data) and echoed == data
    text = "é" * (4 * MiB)
    assert side.root.echo(text) == text


def test_eight_threads_share_one_connection(side: Side) -> None:
    root = side.root
    root.add(0, 0)

    def work(i: int) -> None:
        for j in range(50):
            assert root.add(i * 1000, j) == i * 1000 + j
            if j % 10 == 0:
                assert root.echo((i, j, "x" * j)) == (i, j, "x" * j)

    run_threads(work, 8, timeout=50)


def test_close_and_reconnect(side: Side) -> None:
    side.root.add(1, 1)
    side.conn.close()
    assert side.conn.closed
    if side.name == "rpyc->ours":
        # the server notices and drops its side of the connection
        assert wait_until(lambda: not side.server.clients, timeout=5)
        again = rpyc.connect("127.0.0.1", side.server.port, config=dict(CLIENT_CONFIG))
    else:
        again = rpyc_ipy.connect("127.0.0.1", side.server.port, config=CLIENT_CONFIG)
    try:
        assert again.root.add(2, 2) == 4
    finally:
        again.close()


def test_long_call_does_not_block_other_threads(side: Side) -> None:
    root = side.root
    done = threading.Event()

    def slow() -> None:
        assert root.slow_add(1, 1, 1.0) == 2
        done.set()

    thread = threading.Thread(target=slow, daemon=True)
    thread.start()
    time.sleep(0.1)
    assert root.add(3, 4) == 7  # answered while the slow call is in flight
    thread.join(WAIT)
    assert done.is_set()
