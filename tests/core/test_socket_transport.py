"""The socket transport's waiting: poll before sleeping (adaptively), block, time out, close.

Real socket pairs; every wait is bounded by the transport's poll interval or a
thread join with a timeout.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from waitkit import wait_until

import rpyc_ipy
from rpyc_ipy.errors import ConfigError
from rpyc_ipy.transports import spin
from rpyc_ipy.transports.sockets import SocketTransport
from rpyc_ipy.transports.spin import SpinPolicy


@pytest.fixture
def pair() -> Iterator[tuple[SocketTransport, SocketTransport]]:
    a, b = socket.socketpair()
    left, right = SocketTransport(a, poll_interval=0.05), SocketTransport(b, poll_interval=0.05)
    yield left, right
    left.close()
    right.close()


def _send_later(transport: SocketTransport, data: bytes, delay: float) -> threading.Thread:
    def send() -> None:
        time.sleep(delay)
        transport.send_parts([data])

    thread = threading.Thread(target=send)
    thread.start()
    return thread


def _recv_exactly(transport: SocketTransport, size: int, timeout: float = 10.0) -> bytes:
    buffer = bytearray(size)
    view = memoryview(buffer)
    filled = 0

    def all_received() -> bool:  # each call blocks at most one poll interval
        nonlocal filled
        try:
            received = transport.recv_into(view[filled:])
        except TimeoutError:
            return False
        assert received, "the peer closed early"
        filled += received
        return filled == size

    assert wait_until(all_received, timeout, step=0.0), f"only {filled} of {size} bytes arrived"
    return bytes(buffer)


def test_window_grows_after_short_waits_and_shrinks_after_long_ones() -> None:
    policy = SpinPolicy(maximum=200e-6)
    assert policy.window == 0.0
    for _ in range(10):
        policy.record_block(50e-6)  # data came soon after we went to sleep
    assert policy.window == pytest.approx(200e-6)  # capped at the maximum
    for _ in range(10):
        policy.record_block(0.01)  # long waits: polling would only burn CPU
    assert policy.window == 0.0
    policy.record_block(30e-6)
    assert 0 < policy.window <= 200e-6


def test_a_zero_maximum_never_polls() -> None:
    policy = SpinPolicy(maximum=0.0)
    for _ in range(5):
        policy.record_block(1e-6)
    assert policy.window == 0.0
    assert policy.begin(time.perf_counter()) == 0.0


@pytest.fixture
def idle_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever else runs now, the run queue reads as idle."""
    monkeypatch.setattr(spin, "_crowded", lambda now: False)


def test_nobody_polls_while_the_cpus_are_all_taken(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Any) -> None:
    loadavg = tmp_path / "loadavg"
    monkeypatch.setattr(spin, "_LOADAVG", str(loadavg))
    monkeypatch.setattr(spin, "_crowd", [-1.0, False])
    policy = SpinPolicy()
    policy.record_block(10e-6)
    now = time.perf_counter()
    policy.received(now - 1.0)
    loadavg.write_text(f"9.0 9.0 9.0 {spin._CPUS + 5}/300 1234\n")
    assert policy.begin(now) == 0.0
    loadavg.write_text("0.1 0.1 0.1 1/300 1234\n")
    later = now + 1.0  # past the cached reading
    assert policy.begin(later) > 0
    policy.release()


def test_wait_polls_through_the_window_then_sleeps_once(idle_machine: None) -> None:
    policy = SpinPolicy(maximum=0.05)
    policy.window = 0.05
    policy.received(time.perf_counter() - 1.0)  # alone for a second: it may poll
    calls: list[float] = []

    def poll(sleep: float) -> list[int]:
        calls.append(sleep)
        return [1] if len(calls) == 3 else []

    assert policy.wait(poll, 0.5, 0.5) == [1]
    assert calls == [0, 0, 0]  # caught while polling, no sleep
    calls.clear()
    assert policy.wait(lambda sleep: calls.append(sleep) or [], 100, 0.1,
                       may_spin=False) == []
    assert calls == [100]  # told not to poll: one sleep, which timed out
    assert policy.window < 0.05  # and a wait past the maximum shrinks the window


def test_only_a_reader_alone_polls_and_one_thread_at_a_time(idle_machine: None) -> None:
    first, second = SpinPolicy(), SpinPolicy()
    for policy in (first, second):
        policy.record_block(10e-6)
    now = time.perf_counter()
    first.received(now - 1.0)  # first has been the only reader receiving for a second
    assert first.begin(now) > 0
    try:
        assert first.begin(now) == 0.0  # a second thread at once: the token is taken
    finally:
        first.release()
    # another reader of the process receives: two conversations, nobody polls for a while
    second.received(now)
    assert first.begin(now + 0.01) == 0.0
    assert second.begin(now + 0.01) == 0.0
    assert second.begin(now + 1.0) > 0  # alone again for long enough
    second.release()


def test_data_arriving_while_polling_or_sleeping_is_received(
        pair: tuple[SocketTransport, SocketTransport]) -> None:
    left, right = pair
    # soon (caught while polling, once the window has grown) and late (after sleeping)
    for delay in (0.0, 0.00005, 0.0001, 0.0001, 0.02):
        sender = _send_later(right, b"ping", delay)
        assert _recv_exactly(left, 4) == b"ping"
        sender.join(5)
        assert not sender.is_alive()


def test_no_data_times_out_after_the_poll_interval(
        pair: tuple[SocketTransport, SocketTransport]) -> None:
    left, _ = pair
    with pytest.raises(TimeoutError):  # the reader then checks its deadlines and calls again
        left.recv_into(memoryview(bytearray(16)))


def test_a_large_write_waits_for_a_slow_reader(
        pair: tuple[SocketTransport, SocketTransport]) -> None:
    left, right = pair
    payload = bytes(range(256)) * (16 * 1024)  # 4 MiB, far more than the socket buffers
    sender = threading.Thread(target=right.send_parts, args=([payload[:1000], payload[1000:]],))
    sender.start()
    time.sleep(0.05)  # let the writer fill the buffers and wait for room
    assert _recv_exactly(left, len(payload)) == payload
    sender.join(10)
    assert not sender.is_alive()


def test_close_wakes_a_sleeping_reader() -> None:
    a, b = socket.socketpair()
    # a sleep that only the close can cut short within the join
    left = SocketTransport(a, poll_interval=600.0)
    results: list[int] = []
    reader = threading.Thread(target=lambda: results.append(
        left.recv_into(memoryview(bytearray(16)))))
    reader.start()
    time.sleep(0.05)
    left.close()
    reader.join(30)
    b.close()
    assert not reader.is_alive() and results == [0]


def test_busy_poll_window_config() -> None:
    a, b = socket.socketpair()
    try:
        conn = rpyc_ipy.connect_socket(a, config={"busy_poll_window": 0})
        transport = conn._transport
        assert isinstance(transport, SocketTransport)
        assert transport._spin.maximum == 0.0
        conn.close()
    finally:
        b.close()
    for bad in (-1, 1.0, "fast", True):
        with pytest.raises(ConfigError):
            rpyc_ipy.connect_stream(None, config={"busy_poll_window": bad})


def test_default_window_is_small() -> None:
    # the window bounds how long another thread of the process can wait for the GIL
    assert 0 < spin.DEFAULT_MAX_SPIN <= 1e-3
