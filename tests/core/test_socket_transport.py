"""The socket transport's waiting: poll before sleeping (adaptively), block, time out, close.

Real socket pairs; every wait is bounded by the transport's poll interval or a
thread join with a timeout.
"""

from __future__ import annotations

import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from authkit import tls_socket_pair
from waitkit import wait_until

import rpyc_ipy
from rpyc_ipy.errors import ConfigError
from rpyc_ipy.transports import spin
from rpyc_ipy.transports.sockets import SocketTransport
from rpyc_ipy.transports.spin import SpinCoordinator, runnable_threads


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


class ManualClock:
    """A clock that moves only when the test says so."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class RunQueue:
    """A fake run-queue reading: how many threads are runnable, and how often it was read."""

    def __init__(self, runnable: int = 0) -> None:
        self.runnable = runnable
        self.readings = 0

    def __call__(self) -> int:
        self.readings += 1
        return self.runnable


def make_coordinator(runnable: int = 0, cpus: int = 2
                     ) -> tuple[SpinCoordinator, ManualClock, RunQueue]:
    clock, queue = ManualClock(), RunQueue(runnable)
    return SpinCoordinator(runnable=queue, cpus=cpus, clock=clock), clock, queue


def test_window_grows_after_short_waits_and_shrinks_after_long_ones() -> None:
    policy = make_coordinator()[0].policy(maximum=200e-6)
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
    coordinator, clock, _ = make_coordinator()
    policy = coordinator.policy(maximum=0.0)
    for _ in range(5):
        policy.record_block(1e-6)
    policy.received()
    clock.now += 1.0
    assert policy.window == 0.0
    assert policy.begin(clock()) == 0.0


def test_nobody_polls_while_the_cpus_are_all_taken() -> None:
    coordinator, clock, queue = make_coordinator(runnable=7, cpus=2)
    policy = coordinator.policy()
    policy.record_block(10e-6)
    policy.received()
    clock.now += 1.0  # the only reader for a second
    assert policy.begin(clock()) > 0  # 7 runnable threads on 2 CPUs, seen once: a blip
    policy.release()
    clock.now += 1.0
    assert policy.begin(clock()) == 0.0  # seen twice in a row: a crowd
    queue.runnable = 1
    clock.now += 0.01
    assert policy.begin(clock()) == 0.0  # the reading is kept for a while...
    assert queue.readings == 2
    clock.now += 1.0
    assert policy.begin(clock()) > 0  # ...then read again
    assert queue.readings == 3
    policy.release()


def test_one_crowded_reading_alone_does_not_stop_polling() -> None:
    """A helper thread of our own that is runnable for a moment is not a crowd."""
    coordinator, clock, queue = make_coordinator(runnable=3, cpus=2)
    policy = coordinator.policy()
    policy.record_block(10e-6)
    policy.received()
    clock.now += 1.0
    assert policy.begin(clock()) > 0  # one reading over the CPUs: still polls
    policy.release()
    queue.runnable = 1
    clock.now += 1.0
    assert policy.begin(clock()) > 0
    assert queue.readings == 2
    policy.release()


def test_runnable_threads_reads_the_loadavg_format(tmp_path: Any) -> None:
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("9.0 9.0 9.0 12/300 1234\n")
    assert runnable_threads(str(loadavg)) == 12
    loadavg.write_text("garbage\n")
    assert runnable_threads(str(loadavg)) == 0
    assert runnable_threads(str(tmp_path / "missing")) == 0


def test_wait_polls_through_the_window_then_sleeps_once() -> None:
    coordinator, clock, _ = make_coordinator()
    step = 1 / 64  # each poll takes this long on the fake clock (exact in binary)
    policy = coordinator.policy(maximum=4 * step)
    policy.window = 4 * step
    policy.received()
    clock.now += 1.0  # alone for a second: it may poll
    calls: list[float] = []

    def poll(sleep: float) -> list[int]:
        calls.append(sleep)
        clock.now += step
        return [1] if len(calls) == 3 else []

    assert policy.wait(poll, 0.5, 0.5) == [1]
    assert calls == [0, 0, 0]  # caught while polling, no sleep
    calls.clear()

    def never(sleep: float) -> list[int]:
        calls.append(sleep)
        clock.now += step
        return []

    assert policy.wait(never, 100, 0.1) == []
    assert calls == [0, 0, 0, 0, 100]  # through the window, then one sleep that timed out
    calls.clear()
    assert policy.wait(never, 100, 0.1, may_spin=False) == []
    assert calls == [100]  # told not to poll: one sleep
    assert policy.window < 4 * step  # and waits past the maximum shrink the window


def test_only_a_reader_alone_polls_and_one_thread_at_a_time() -> None:
    coordinator, clock, _ = make_coordinator()
    first, second = coordinator.policy(), coordinator.policy()
    for policy in (first, second):
        policy.record_block(10e-6)
    first.received()
    clock.now += 1.0  # first has been the only reader receiving for a second
    assert first.begin(clock()) > 0
    try:
        assert first.begin(clock()) == 0.0  # a second thread at once: the token is taken
    finally:
        first.release()
    # another reader of the process receives: two conversations, nobody polls for a while
    second.received()
    clock.now += 0.01
    assert first.begin(clock()) == 0.0
    assert second.begin(clock()) == 0.0
    clock.now += 1.0
    assert second.begin(clock()) > 0  # alone again for long enough
    second.release()


def test_readers_of_one_conversation_keep_polling() -> None:
    # a server loop's reader and the thread that reads the same client's socket for a
    # callback's reply take turns receiving: one conversation, so polling goes on
    coordinator, clock, _ = make_coordinator()
    loop, nested = coordinator.policy(), coordinator.policy(conversation=7)
    other = coordinator.policy(conversation=8)
    for policy in (loop, nested, other):
        policy.record_block(10e-6)
    loop.conversation = 7  # what the loop does when epoll reports the client's fd 7
    loop.received()
    clock.now += 1.0
    for _ in range(3):
        nested.received()
        clock.now += 0.001
        loop.received()
        clock.now += 0.001
    for policy in (loop, nested):
        assert policy.begin(clock()) > 0
        policy.release()
    other.received()  # another client's socket: two conversations, nobody polls
    clock.now += 0.001
    assert loop.begin(clock()) == 0.0
    assert nested.begin(clock()) == 0.0


def test_coordinators_share_nothing() -> None:
    # what one coordinator's readers do never stops another's (each test makes its own)
    ours, ours_clock, _ = make_coordinator()
    theirs, theirs_clock, _ = make_coordinator()
    mine, other = ours.policy(), theirs.policy()
    for policy, clock in ((mine, ours_clock), (other, theirs_clock)):
        policy.record_block(10e-6)
        policy.received()
        clock.now += 1.0
    assert mine.begin(ours_clock()) > 0
    try:
        assert other.begin(theirs_clock()) > 0  # its own token, its own last reader
        other.release()
    finally:
        mine.release()


def test_the_transport_asks_the_coordinator_it_was_given() -> None:
    coordinator, clock, queue = make_coordinator(runnable=99)
    a, b = socket.socketpair()
    left = SocketTransport(a, poll_interval=5.0, spin=coordinator)
    right = SocketTransport(b, poll_interval=5.0)
    try:
        for _ in range(2):
            # the fake clock stands still: every wait looks short, so the window opens
            sender = _send_later(right, b"ping", 0.01)
            assert _recv_exactly(left, 4) == b"ping"
            sender.join(5)
            clock.now += 1.0  # and the reader has been alone long enough to poll
        # the second wait asked the run queue, which said the CPUs are all taken
        assert queue.readings == 1
    finally:
        left.close()
        right.close()


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
    transport = SocketTransport(a)
    try:
        assert transport.busy_poll_window == spin.DEFAULT_MAX_SPIN
        conn = rpyc_ipy.connect_stream(transport, config={"busy_poll_window": 0})
        assert transport.busy_poll_window == 0.0
        conn.close()
    finally:
        b.close()
    for bad in (-1, 1.0, "fast", True):
        with pytest.raises(ConfigError):  # refused before the transport is touched
            rpyc_ipy.connect_stream(None, config={"busy_poll_window": bad})  # type: ignore[arg-type]


def test_default_window_is_small() -> None:
    # the window bounds how long another thread of the process can wait for the GIL
    assert 0 < spin.DEFAULT_MAX_SPIN <= 1e-3


def test_tls_carries_both_directions_at_once_from_separate_threads(pki: Any) -> None:
    """A relay reads a TLS connection in one thread while it writes it in another: 4 MiB
    each way, both ends reading and writing at once, arrive whole."""
    server_side, client = tls_socket_pair(pki)
    ours, theirs = SocketTransport(server_side), SocketTransport(client)
    chunk, count = bytes(range(256)) * 256, 64  # 64 KiB writes, 4 MiB each way
    errors: list[BaseException] = []

    def write(transport: SocketTransport) -> None:
        try:
            for _ in range(count):
                transport.send_parts([chunk])
        except BaseException as exc:
            errors.append(exc)

    def read(transport: SocketTransport, got: list[int]) -> None:
        buffer = memoryview(bytearray(1 << 16))
        try:
            while got[0] < count * len(chunk):
                try:
                    got[0] += transport.recv_into(buffer)
                except TimeoutError:
                    continue
        except BaseException as exc:
            errors.append(exc)

    got_ours, got_theirs = [0], [0]
    threads = [threading.Thread(target=write, args=(ours,), daemon=True),
               threading.Thread(target=write, args=(theirs,), daemon=True),
               threading.Thread(target=read, args=(ours, got_ours), daemon=True),
               threading.Thread(target=read, args=(theirs, got_theirs), daemon=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    ours.close()
    theirs.close()
    assert errors == []
    assert got_ours[0] == got_theirs[0] == count * len(chunk)


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="kernel read timeouts and epoll are Linux's")


@linux_only
def test_a_plain_socket_sleeps_in_recv_with_the_kernels_timeout() -> None:
    # one syscall per reply: the read itself waits (no poll first), and the kernel ends
    # it after the poll interval so the reader can check its deadlines
    a, b = socket.socketpair()
    left, right = SocketTransport(a, poll_interval=0.25), SocketTransport(b, poll_interval=0.25)
    try:
        assert a.gettimeout() is None  # blocking, as far as Python is concerned
        seconds, micros = struct.unpack("ll", a.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                                                           struct.calcsize("ll")))
        assert seconds + micros / 1e6 == pytest.approx(0.25, abs=0.01)  # kernel ticks round it
        with pytest.raises(TimeoutError):  # nothing came: the kernel's timeout ends the read
            left.recv_into(memoryview(bytearray(16)))
        with pytest.raises(TimeoutError):  # and a read that must not wait does not
            left.recv_nowait(memoryview(bytearray(16)))
        right.send_parts([b"pong"])
        assert _recv_exactly(left, 4) == b"pong"
    finally:
        left.close()
        right.close()


@linux_only  # where the server loop watches sockets edge-triggered (epoll)
def test_drained_tells_whether_a_read_left_bytes_in_the_kernel(
        pair: tuple[SocketTransport, SocketTransport]) -> None:
    left, right = pair
    right.send_parts([bytes(100)])
    assert wait_until(lambda: select.select([left.fileno()], [], [], 0)[0], 10.0)
    assert left.recv_nowait(memoryview(bytearray(10))) == 10
    assert not left.drained()  # it filled its buffer: more may wait, unannounced
    assert left.recv_nowait(memoryview(bytearray(1000))) == 90
    assert left.drained()  # it took less than it asked for: the kernel had no more
    with pytest.raises(TimeoutError):
        left.recv_nowait(memoryview(bytearray(10)))
    assert left.drained()
