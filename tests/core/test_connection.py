"""Connection behaviour: requests, concurrency, callbacks, helpers, teardown."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import pytest
from waitkit import wait_until

import rpyc_ipy
from rpyc_ipy.errors import ConfigError, ConnectionClosed, ConnectionLost, RemoteExceptionMixin


class Service(rpyc_ipy.Service):
    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def exposed_hold(self) -> bool:
        """Blocks until the test releases it (or 30 s pass)."""
        self.entered.set()
        return self.release.wait(30)

    def exposed_add1(self, x: int) -> int:
        return x + 1

    def exposed_sleep(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    def exposed_bounce(self, callback: Any, depth: int) -> Any:
        return callback(depth)

    def exposed_fail(self) -> None:
        raise KeyError("missing")

    def exposed_count(self, n: int) -> Any:
        return iter(range(n))

    def exposed_call_client_root(self) -> Any:
        assert self._conn is not None
        return self._conn.root.echo("from server")


class ClientService(rpyc_ipy.Service):
    def exposed_echo(self, text: str) -> str:
        return text.upper()


@pytest.fixture
def pair(make_pair: Any) -> Any:
    return make_pair(Service, ClientService)


def test_remote_exception_keeps_class_and_traceback(pair: Any) -> None:
    with pytest.raises(KeyError) as info:
        pair.client.root.fail()
    text = str(info.value)
    assert "Remote Traceback (1)" in text and "exposed_fail" in text
    assert isinstance(info.value, RemoteExceptionMixin)
    assert info.value.remote_type == "builtins.KeyError"


def test_nested_callbacks_ten_deep_in_both_directions(pair: Any) -> None:
    client = pair.client

    def down(depth: int) -> str:
        if depth == 0:
            return "bottom"
        return client.root.bounce(down, depth - 1)

    assert client.root.bounce(down, 10) == "bottom"
    assert client.root.call_client_root() == "FROM SERVER"


def test_eight_threads_share_one_connection(pair: Any) -> None:
    results: dict[int, list[int]] = {}

    def work(n: int) -> None:
        results[n] = [pair.client.root.add1(n * 1000 + i) for i in range(50)]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == {n: [n * 1000 + i + 1 for i in range(50)] for n in range(8)}


def test_a_long_request_does_not_block_another(make_pair: Any) -> None:
    service = Service()
    client = make_pair(service, ClientService).client
    slow = rpyc_ipy.async_(client.root.hold)()
    assert service.entered.wait(10)
    assert client.root.add1(1) == 2
    assert not slow.ready  # liveness: answered while the long request still runs
    service.release.set()
    slow.wait(10)
    assert slow.value is True


def test_async_timed_and_buffiter(pair: Any) -> None:
    result = rpyc_ipy.async_(pair.client.root.add1)(41)
    result.wait(5)
    assert result.ready and not result.error and result.value == 42
    expiring = rpyc_ipy.timed(pair.client.root.sleep, 0.2)(0.6)
    with pytest.raises(TimeoutError):
        expiring.wait()
    assert list(rpyc_ipy.buffiter(pair.client.root.count(25), chunk=4)) == list(range(25))


def test_sync_request_timeout(make_pair: Any) -> None:
    client = make_pair(Service, client_config={"sync_request_timeout": 0.3}).client
    with pytest.raises(rpyc_ipy.AsyncResultTimeout):
        client.root.sleep(0.8)
    assert client.root.add1(1) == 2  # the connection is still usable


def test_ping_and_close_and_context_manager(make_pair: Any) -> None:
    pair = make_pair(Service)
    pair.client.ping()
    with pair.client as conn:
        assert conn.root.add1(0) == 1
    assert pair.client.closed
    with pytest.raises(ConnectionClosed):
        pair.client.root.add1(0)
    wait_until(lambda: pair.server.closed, timeout=5, what="the server side to close")


def test_pending_calls_fail_at_once_when_the_peer_dies(make_pair: Any) -> None:
    service = Service()
    pair = make_pair(service)
    slow = rpyc_ipy.async_(pair.client.root.hold)()
    assert service.entered.wait(10)
    pair.server.abort(ConnectionClosed("killed by the test"))
    slow.wait(10)  # failed at once: the request itself holds for 30 s
    with pytest.raises(ConnectionLost):
        _ = slow.value
    service.release.set()


def test_bg_serving_thread_serves_callbacks_while_idle(make_pair: Any) -> None:
    pair = make_pair(Service, ClientService)
    bg = rpyc_ipy.BgServingThread(pair.client)
    try:
        # the server calls the client while no client thread waits for anything
        result = rpyc_ipy.async_(pair.server.root.echo)("idle")
        result.wait(5)
        assert result.value == "IDLE"
    finally:
        bg.stop()


def test_unknown_config_keys_are_refused() -> None:
    with pytest.raises(ConfigError):
        rpyc_ipy.connect_thread(config={"allow_evrything": True})


def test_instantiate_oldstyle_exceptions_is_refused_rather_than_ignored() -> None:
    with pytest.raises(ConfigError, match="Python 2"):
        rpyc_ipy.connect_thread(config={"instantiate_oldstyle_exceptions": True})


@pytest.mark.parametrize("log_exceptions", [True, False])
def test_log_exceptions_logs_a_failing_request_at_debug_level(
        make_pair: Any, caplog: pytest.LogCaptureFixture, log_exceptions: bool) -> None:
    logger = logging.getLogger("test.log_exceptions")
    pair = make_pair(Service, ClientService,
                     server_config={"log_exceptions": log_exceptions, "logger": logger})
    with caplog.at_level(logging.DEBUG, logger="test.log_exceptions"), \
            pytest.raises(KeyError):
        pair.client.root.fail()
    records = [r for r in caplog.records if r.name == "test.log_exceptions"]
    if log_exceptions:
        assert len(records) == 1 and records[0].levelno == logging.DEBUG
        assert records[0].exc_info is not None and records[0].exc_info[0] is KeyError
    else:
        assert records == []


def test_classic_thread_connection() -> None:
    conn = rpyc_ipy.classic.connect_thread()
    try:
        assert conn.modules.os.getpid() > 0
        conn.execute("x = 6 * 7")
        assert conn.eval("x") == 42
        assert conn.namespace["x"] == 42
    finally:
        conn.close()


class BytesEcho(rpyc_ipy.Service):
    def exposed_echo(self, data: bytes) -> bytes:
        assert type(data) is bytes  # user code gets bytes, never a view of a kept buffer
        return data


@pytest.mark.parametrize("keep", [0, 1 << 20])
def test_large_values_in_a_row_arrive_intact_with_or_without_a_kept_buffer(
        make_pair: Any, keep: int) -> None:
    config = {"keep_frame_buffer": keep}
    pair = make_pair(BytesEcho, server_config=config, client_config=config)
    # larger, smaller, larger than the kept buffer: every frame must show its own bytes
    for size in (300_000, 200_000, 500_000, 100_000):
        data = os.urandom(size)
        echoed = pair.client.root.echo(data)
        assert type(echoed) is bytes and echoed == data


@pytest.mark.parametrize("bad", [-1, 1.5, "64M", None])
def test_keep_frame_buffer_must_be_bytes(bad: Any) -> None:
    with pytest.raises(ConfigError, match="keep_frame_buffer"):
        rpyc_ipy.connect_stream(None, config={"keep_frame_buffer": bad})  # type: ignore[arg-type]


def test_a_callback_passed_on_every_call_is_released_once_dropped(pair: Any) -> None:
    """However the server's releases of it interleave with the calls (sent, or taken
    back by the next call that passes it again), the client's export goes once the
    server drops its last reference, and every call in between works."""
    client = pair.client

    def echo(depth: int) -> int:
        return depth

    for i in range(200):
        assert client.root.bounce(echo, i) == i
    # the client reads (and so takes the server's release) only while it calls
    assert wait_until(lambda: client.root.add1(0) == 1 and len(client._exports) == 0)
