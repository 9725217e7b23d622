"""ThreadedServer's event loop: plain clients share one epoll leader, a slow request
hands leadership on, buffered frames are not forgotten, TLS clients are read by the
loop too (frames held inside the TLS object included),
closing the server stops the loop's threads, and idle clients cost no wake-ups.
Real sockets on 127.0.0.1."""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from waitkit import WakeCounter, wait_until

import rpyc_ipy
from rpyc_ipy.auth import SSLAuthenticator
from rpyc_ipy.core.background import Watchdog
from rpyc_ipy.core.connection import Connection
from rpyc_ipy.protocol import consts
from rpyc_ipy.protocol.engine import Engine, Reply
from rpyc_ipy.servers.base import Server
from rpyc_ipy.servers.loop import ServerLoop, loop_available
from rpyc_ipy.transports.sockets import SocketTransport
from rpyc_ipy.transports.spin import SpinCoordinator

pytestmark = pytest.mark.skipif(not loop_available(), reason="no epoll on this system")


class Work(rpyc_ipy.Service):
    gate = threading.Event()

    def exposed_add(self, a: int, b: int) -> int:
        return a + b

    def exposed_wait_for_gate(self) -> str:
        return "opened" if Work.gate.wait(30) else "timed out"

    def exposed_sleep(self, seconds: float) -> str:
        time.sleep(seconds)
        return "slept"

    def exposed_call_back(self, func: Callable[[int], int], value: int) -> int:
        return func(value) + 1


@pytest.fixture
def server() -> Iterator[rpyc_ipy.ThreadedServer]:
    with rpyc_ipy.ThreadedServer(Work, port=0, listener_timeout=0.2) as started:
        started.start_in_background()
        yield started


def _loop(server: Server) -> ServerLoop:
    loop = server._loop
    assert loop is not None
    return loop


def test_many_plain_clients_are_served_by_the_loop(server: rpyc_ipy.ThreadedServer) -> None:
    conns = [rpyc_ipy.connect("127.0.0.1", server.port) for _ in range(12)]
    try:
        assert [c.root.add(i, 1) for i, c in enumerate(conns)] == list(range(1, 13))
        loop = _loop(server)
        assert wait_until(lambda: len(loop._clients) == 12, 5.0)
        # quick requests need no thread per client: the leader runs them itself
        assert loop.thread_count <= 2
    finally:
        for conn in conns:
            conn.close()
    assert wait_until(lambda: not server.clients and not _loop(server)._clients, 5.0)


def test_a_slow_request_does_not_hold_up_other_clients(server: rpyc_ipy.ThreadedServer) -> None:
    Work.gate.clear()
    slow_conn = rpyc_ipy.connect("127.0.0.1", server.port)
    quick_conn = rpyc_ipy.connect("127.0.0.1", server.port)
    try:
        slow = rpyc_ipy.async_(slow_conn.root.wait_for_gate)()
        time.sleep(0.1)  # the slow request is running on the loop's leader
        # answered while the slow one still blocks the thread that read it
        assert [quick_conn.root.add(i, i) for i in range(20)] == [2 * i for i in range(20)]
        assert not slow.ready
        assert _loop(server).thread_count >= 2  # leadership was handed on
        Work.gate.set()
        slow.wait()
        assert slow.value == "opened"
    finally:
        Work.gate.set()
        slow_conn.close()
        quick_conn.close()


def test_a_burst_of_pipelined_requests_is_answered_in_full(
        server: rpyc_ipy.ThreadedServer) -> None:
    # many requests in flight at once end up in one read: the frames left in the
    # buffer are served without waiting for more bytes from the socket
    with rpyc_ipy.connect("127.0.0.1", server.port) as conn:
        add = rpyc_ipy.async_(conn.root.add)
        results = [add(i, 1000) for i in range(300)]
        for result in results:
            result.wait()
        assert [r.value for r in results] == [i + 1000 for i in range(300)]


def test_callbacks_into_the_client_work_from_the_loop(server: rpyc_ipy.ThreadedServer) -> None:
    with rpyc_ipy.connect("127.0.0.1", server.port) as conn:
        # the client serves its side while it waits: the callback runs here
        assert conn.root.call_back(lambda x: x * 10, 4) == 41
        assert conn.root.add(1, 2) == 3  # and the connection goes back to the loop


def test_idle_clients_are_dropped_by_the_loops_sweep() -> None:
    with rpyc_ipy.ThreadedServer(Work, port=0, listener_timeout=0.2,
                                 protocol_config={"idle_timeout": 0.3}) as server:
        server.start_in_background()
        conn = rpyc_ipy.connect("127.0.0.1", server.port)
        assert conn.root.add(1, 1) == 2
        assert wait_until(lambda: not server.clients, 10.0)
        conn.close()


def _client_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("rpyc_ipy-client-")]


def test_tls_clients_are_read_by_the_loop_with_no_thread_each(pki: Any) -> None:
    auth = SSLAuthenticator(pki.server_key, pki.server_cert)
    with rpyc_ipy.ThreadedServer(Work, port=0, listener_timeout=0.2,
                                 authenticator=auth) as server:
        server.start_in_background()
        conns = [rpyc_ipy.ssl_connect("127.0.0.1", server.port, ca_certs=str(pki.ca))
                 for _ in range(4)]
        try:
            assert [c.root.add(i, 1) for i, c in enumerate(conns)] == [1, 2, 3, 4]
            loop = _loop(server)
            assert wait_until(lambda: len(loop._clients) == 4, 5.0)
            # the handshake threads are gone: idle TLS clients hold no thread
            assert wait_until(lambda: not _client_threads(), 5.0)
            assert conns[0].root.call_back(lambda v: v * 2, 20) == 41  # callbacks still work
            pipelined = rpyc_ipy.async_(conns[1].root.add)
            results = [pipelined(i, 1000) for i in range(200)]
            for result in results:
                result.wait()
            assert [r.value for r in results] == [i + 1000 for i in range(200)]
        finally:
            for conn in conns:
                conn.close()
        assert wait_until(lambda: not server.clients and not loop._clients, 5.0)


def test_frames_inside_one_tls_record_are_all_served(pki: Any) -> None:
    # one record of ~12 KiB plaintext holding 40 requests: the server reads it into
    # a receive buffer smaller than the record, so decrypted bytes stay inside the
    # TLS object, where epoll cannot see them; every request must still be answered
    auth = SSLAuthenticator(pki.server_key, pki.server_cert)
    context = ssl.create_default_context(cafile=str(pki.ca))
    padding = "x" * 300
    with rpyc_ipy.ThreadedServer(Work, port=0, listener_timeout=0.2,
                                 authenticator=auth) as server:
        server.start_in_background()
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            client = Engine()
            frames, seqs = [], []
            for index in range(40):
                seq, parts = client.request(consts.HANDLE_PING,
                                            (consts.LABEL_VALUE, (f"{index}{padding}",)))
                seqs.append(seq)
                frames.append(b"".join(parts))
            tls.sendall(b"".join(frames))  # one write: one TLS record (under 16 KiB)
            echoes: dict[int, Any] = {}
            for _ in range(200):  # bounded: each read brings at least one byte
                if len(echoes) == len(seqs):
                    break
                data = tls.recv(65536)
                assert data, "the server closed the connection"
                client.receive_data(data)
                while (event := client.next_event()) is not None:
                    assert isinstance(event, Reply)
                    echoes[event.seq] = event.value
            assert [echoes[seq] for seq in seqs] == [
                (consts.LABEL_VALUE, f"{index}{padding}") for index in range(40)]


def test_closing_the_server_stops_the_loop_threads() -> None:
    server = rpyc_ipy.ThreadedServer(Work, port=0, listener_timeout=0.2)
    server.start_in_background()
    conns = [rpyc_ipy.connect("127.0.0.1", server.port) for _ in range(3)]
    slow = rpyc_ipy.async_(conns[0].root.sleep)(0.3)  # makes the loop start a second thread
    assert conns[1].root.add(1, 1) == 2
    slow.wait()
    loop = _loop(server)
    assert loop.thread_count >= 1
    server.close()
    assert wait_until(lambda: loop.thread_count == 0, 5.0)
    for conn in conns:  # the server closed them: their next call fails at once
        with pytest.raises(rpyc_ipy.errors.ConnectionClosed):
            conn.root.add(1, 1)
        conn.close()


def test_threads_other_than_the_loop_can_take_a_loop_clients_role(
        server: rpyc_ipy.ThreadedServer) -> None:
    # 8 client threads on one connection: the server's answers interleave freely
    with rpyc_ipy.connect("127.0.0.1", server.port) as conn:
        errors: list[BaseException] = []

        def hammer(base: int) -> None:
            try:
                for i in range(50):
                    assert conn.root.add(base, i) == base + i
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        run_in_threads(hammer, 8, 30)
        assert not errors


def run_in_threads(work: Callable[[int], None], count: int, timeout: float) -> None:
    """Run ``work(k * 1000)`` on ``count`` threads at once; all must end within ``timeout``
    each (their own failures are for ``work`` to record)."""
    threads = [threading.Thread(target=work, args=(k * 1000,)) for k in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(t.is_alive() for t in threads)


class Probe:
    """Something for the watchdog to look at that only notes that it was looked at."""

    def __init__(self) -> None:
        self.asked = threading.Event()

    def hand_on_if_stalled(self, now: float, grace: float) -> float | None:
        self.asked.set()
        return None


class ObservedLoop:
    """A ServerLoop of the test's own, with its own watchdog, each reporting its sleeps
    and wake-ups to a counter; clients connect over TCP on 127.0.0.1."""

    def __init__(self) -> None:
        self.loop_wakes, self.watchdog_wakes = WakeCounter(), WakeCounter()
        self.closed: list[Connection] = []
        self.watchdog = Watchdog(observer=self.watchdog_wakes)
        self.loop = ServerLoop(self.closed.append, watchdog=self.watchdog,
                               spin=SpinCoordinator(), observer=self.loop_wakes)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.clients: list[rpyc_ipy.Connection] = []
        self.served: list[Connection] = []
        self.transports: list[SocketTransport] = []

    def connect(self, config: dict[str, Any] | None = None, *, edge: bool = False,
                transport_type: type[SocketTransport] = SocketTransport) -> rpyc_ipy.Connection:
        """A client, served one-shot, or edge-triggered (as ThreadedServer serves plain
        sockets) with ``edge``."""
        client = rpyc_ipy.connect_socket(socket.create_connection(self.listener.getsockname()))
        sock, _ = self.listener.accept()
        transport = transport_type(sock)
        served = Connection(Work, transport, config)
        if edge:
            self.loop.add(served, sock.fileno(), drained=transport.drained)
        else:
            self.loop.add(served, sock.fileno())
        self.clients.append(client)
        self.served.append(served)
        self.transports.append(transport)
        return client

    def watchdog_caught_up(self) -> bool:
        """True once the watchdog has dealt with everything registered so far: it
        looks at a probe registered now only after all that is due before it."""
        probe = Probe()
        self.watchdog.watch(probe, time.monotonic())
        return probe.asked.wait(10.0)

    def close(self) -> None:
        for conn in self.clients + self.served:
            conn.close()
        self.loop.close()
        self.listener.close()


@pytest.fixture
def observed() -> Iterator[ObservedLoop]:
    loop = ObservedLoop()
    yield loop
    loop.close()


def test_idle_clients_wake_neither_the_loop_nor_the_watchdog(observed: ObservedLoop) -> None:
    # every client has sent its first frame and had its request run: nothing is pending
    clients = [observed.connect({"first_frame_timeout": 30.0}) for _ in range(8)]
    assert [c.root.add(i, 1) for i, c in enumerate(clients)] == list(range(1, 9))
    assert observed.loop_wakes.wait_parked()  # asleep in epoll with no deadline
    assert observed.watchdog_caught_up()
    assert observed.watchdog_wakes.wait_parked()  # asleep until something registers work
    loop_wakes, watchdog_wakes = observed.loop_wakes.wakeups, observed.watchdog_wakes.wakeups
    # more than one of the old half-second sweeps, and a hundred of the old watchdog ticks
    assert not observed.loop_wakes.wait_woken(loop_wakes, 1.2)
    assert observed.watchdog_wakes.wakeups == watchdog_wakes
    assert observed.loop_wakes.asleep and observed.watchdog_wakes.asleep
    # and they still serve at once
    assert clients[3].root.add(20, 22) == 42
    assert observed.loop_wakes.wakeups > loop_wakes


def test_the_loop_wakes_for_an_idle_deadline_and_only_for_it(observed: ObservedLoop) -> None:
    quiet = [observed.connect() for _ in range(4)]
    for conn in quiet:
        assert conn.root.add(1, 1) == 2
    assert observed.loop_wakes.wait_parked()
    wakes = observed.loop_wakes.wakeups
    idle = observed.connect({"idle_timeout": 0.5})
    assert idle.root.add(2, 2) == 4
    # the loop sleeps until the idle client's deadline, wakes there and closes it
    assert observed.loop_wakes.wait_sleeping_until_a_deadline()
    assert wait_until(lambda: len(observed.closed) == 1, 10.0)
    assert observed.closed == [observed.served[-1]]
    assert observed.loop_wakes.wakeups > wakes
    # with that deadline gone, back to sleeping without one; the others are still served
    assert observed.loop_wakes.wait_parked()
    assert [conn.root.add(3, 3) for conn in quiet] == [6] * 4


def test_a_stalled_frame_wakes_the_loop_at_its_deadline(observed: ObservedLoop) -> None:
    conn = observed.connect({"frame_deadline": 0.5})
    assert conn.root.add(1, 2) == 3
    assert observed.loop_wakes.wait_parked()
    raw = socket.socket(fileno=conn.fileno())
    try:
        raw.sendall(struct.pack(">IB", 1000, 0) + b"xx")  # a 1000-byte frame starts, and stalls
    finally:
        raw.detach()
    assert observed.loop_wakes.wait_sleeping_until_a_deadline()
    assert wait_until(lambda: observed.closed == [observed.served[0]], 10.0)


def test_a_slow_request_on_an_observed_loop_hands_leadership_on(
        observed: ObservedLoop) -> None:
    Work.gate.clear()
    slow_conn, quick_conn = observed.connect(), observed.connect()
    try:
        slow = rpyc_ipy.async_(slow_conn.root.wait_for_gate)()
        # the loop's own watchdog looks at it after its grace and hands leadership on
        assert wait_until(lambda: observed.loop.thread_count >= 2, 10.0)
        assert [quick_conn.root.add(i, i) for i in range(5)] == [0, 2, 4, 6, 8]
        assert not slow.ready
        Work.gate.set()
        slow.wait()
        assert slow.value == "opened"
    finally:
        Work.gate.set()


class CountingTransport(SocketTransport):
    """A real socket transport that counts the loop's reads that found nothing."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.empty_reads = 0

    def recv_nowait(self, buffer: memoryview) -> int:
        try:
            return super().recv_nowait(buffer)
        except TimeoutError:
            self.empty_reads += 1
            raise


def test_the_loop_does_not_read_again_after_each_request(observed: ObservedLoop) -> None:
    # the reader role goes back to the loop (re-armed) before a request runs: reading
    # once more after it would find nothing and re-arm again, two syscalls per call
    client = rpyc_ipy.connect_socket(socket.create_connection(observed.listener.getsockname()))
    sock, _ = observed.listener.accept()
    transport = CountingTransport(sock)
    served = Connection(Work, transport)
    observed.loop.add(served, sock.fileno())
    observed.clients.append(client)
    observed.served.append(served)
    calls = 100
    assert [client.root.add(i, 1) for i in range(calls)] == [i + 1 for i in range(calls)]
    # before, each call cost one empty read; now only a wake-up that finds part of a
    # frame (a small frame is one segment, so rarely) does
    assert transport.empty_reads < calls // 4


def test_an_edge_triggered_client_is_not_read_again_after_each_request(
        observed: ObservedLoop) -> None:
    # watched edge-triggered, a client needs no re-arming after a request, and is
    # queued again only when its last read filled the buffer: no empty read per call
    client = observed.connect(edge=True, transport_type=CountingTransport)
    transport = observed.transports[-1]
    assert isinstance(transport, CountingTransport)
    calls = 100
    assert [client.root.add(i, 1) for i in range(calls)] == [i + 1 for i in range(calls)]
    assert transport.empty_reads < calls // 4


def test_a_burst_larger_than_the_receive_buffer_is_answered_in_full(
        server: rpyc_ipy.ThreadedServer) -> None:
    # ThreadedServer watches plain clients edge-triggered: reads that fill the buffer
    # (64 KiB at most) leave bytes no new edge announces, and they must still be read
    with rpyc_ipy.connect("127.0.0.1", server.port) as conn:
        add = rpyc_ipy.async_(conn.root.add)
        results = [add(i, 10**12) for i in range(3000)]  # about 150 KiB of requests
        for result in results:
            result.wait()  # reads the replies; bounded by sync_request_timeout
        assert [r.value for r in results] == [i + 10**12 for i in range(3000)]


def test_callers_and_callbacks_from_many_threads_on_an_edge_triggered_client(
        observed: ObservedLoop) -> None:
    # the served side's own threads take the role to read callback replies while the
    # loop is told of the next requests: none of them may be left unread
    conn = observed.connect(edge=True)
    errors: list[BaseException] = []

    def hammer(base: int) -> None:
        try:
            for i in range(30):
                if i % 3:
                    assert conn.root.add(base, i) == base + i
                else:
                    assert conn.root.call_back(lambda x: x * 2, base + i) == 2 * (base + i) + 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    run_in_threads(hammer, 6, 60)
    assert not errors


def test_a_client_is_watched_one_way_only(observed: ObservedLoop) -> None:
    a, b = socket.socketpair()
    transport = SocketTransport(a)
    conn = Connection(Work, transport)
    try:
        with pytest.raises(rpyc_ipy.errors.UsageError, match="one-shot"):
            observed.loop.add(conn, a.fileno(), held=transport.held_bytes,
                              drained=transport.drained)
    finally:
        conn.close()
        b.close()
