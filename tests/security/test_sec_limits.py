"""Every limit of the core, each with a test one step over it, over real sockets.

Limits are local decisions that never change what a well-behaved peer sees: at the
limit a request is served, one step over it is refused (the connection closed, or
the request answered with an error), and the server goes on serving fresh clients.
"""

from __future__ import annotations

import gc
import struct
import threading
import time
import tracemalloc
import zlib
from typing import Any

import pytest
from seckit import (
    WAIT,
    RawClient,
    ServerProcess,
    TargetService,
    assert_serves,
    collect,
    ref,
    request_frame,
    request_payload,
    server_side,
    tup,
    val,
    wait_until,
)

import rpyc_ipy
from rpyc_ipy.errors import LimitExceeded
from rpyc_ipy.protocol import brine, consts
from rpyc_ipy.protocol.framing import frame_bytes
from rpyc_ipy.protocol.limits import Limits
from rpyc_ipy.protocol.objects import id_pack_of

pytestmark = pytest.mark.timeout(60)
MiB = 1 << 20


def echo_payload(root: Any, value: Any, seq: int = 1) -> bytes:
    return request_payload(seq, consts.HANDLE_CALLATTR,
                           tup(ref(root), val("echo"), val((value,)), val(())))


def header(length: int, compressed: int = 0) -> bytes:
    return struct.pack(">IB", length, compressed)


def answered(client: RawClient, seq: int) -> Any:
    """The boxed reply to ``seq`` (fails on an exception reply)."""

    def reply_to_seq() -> Any:
        event = client.event()
        if getattr(event, "seq", None) == seq and hasattr(event, "value"):
            return event
        assert not hasattr(event, "payload") or event.seq != seq, event
        return None

    return wait_until(reply_to_seq, WAIT, step=0.0, what=f"the reply to {seq}").value


def _drip(client: RawClient, byte: bytes, seconds: float, every: float = 0.2) -> bool:
    """Send ``byte`` every ``every`` s for ``seconds``; True if the server closed meanwhile."""

    def closed() -> bool:
        try:
            client.send_raw(byte)
        except OSError:
            return True
        return client.closed_within(every)

    return wait_until(closed, seconds, step=0.0)


# -- frame size and compression -----------------------------------------------------------


def test_frame_size_at_the_limit_is_served_one_over_is_refused_from_the_header(
        serve: Any) -> None:
    limit = 64 * 1024
    server = serve(protocol_config={"limits": Limits(max_frame_size=limit)})
    with RawClient(server.port) as client:
        root = client.getroot()
        overhead = len(echo_payload(root, b""))
        data = b"a" * (limit - overhead - 4)  # STR_L4 adds 4 bytes of length to the empty form
        payload = echo_payload(root, data)
        assert len(payload) == limit
        client.send_raw(frame_bytes(payload))
        assert answered(client, 1) == (consts.LABEL_VALUE, data)
        # one byte over, declared in a header with no body behind it: refused at once
        client.send_raw(header(limit + 1))
        assert client.closed_within(WAIT)
    assert_serves(server.port)


def test_a_4_gib_frame_that_never_arrives_is_refused_from_its_header(serve: Any) -> None:
    server = serve()
    with RawClient(server.port) as client:
        client.send_raw(header(0xFFFFFFFF))
        assert client.closed_within(WAIT)
    with RawClient(server.port) as client:
        client.getroot()
        client.send_raw(header(0xFFFFFFFF, 1))
        assert client.closed_within(WAIT)
    assert_serves(server.port)


def test_inflation_at_the_limit_is_served_one_byte_more_is_refused(serve: Any) -> None:
    limit = 64 * 1024
    server = serve(protocol_config={"limits": Limits(max_frame_size=limit)})
    with RawClient(server.port) as client:
        root = client.getroot()
        overhead = len(echo_payload(root, b""))
        data = b"z" * (limit - overhead - 4)
        payload = echo_payload(root, data)
        assert len(payload) == limit
        body = zlib.compress(payload, 9)
        client.send_raw(header(len(body), 1) + body + b"\n")
        assert answered(client, 1) == (consts.LABEL_VALUE, data)
        payload = echo_payload(root, data + b"z", seq=2)
        body = zlib.compress(payload, 9)
        client.send_raw(header(len(body), 1) + body + b"\n")
        assert client.closed_within(WAIT)
    assert_serves(server.port)


def test_a_zlib_bomb_is_cut_at_the_limit_without_inflating_it(serve: Any) -> None:
    limit = 1 * MiB
    server = serve(protocol_config={"limits": Limits(max_frame_size=limit)})
    bomb = zlib.compress(b"\x00" * (256 * MiB), 9)  # ~250 KiB on the wire
    assert len(bomb) < limit
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        with RawClient(server.port) as client:
            client.send_raw(header(len(bomb), 1) + bomb + b"\n")
            assert client.closed_within(WAIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * MiB, f"inflating the bomb took {peak / MiB:.0f} MiB"
    assert_serves(server.port)


def test_a_closed_connection_does_not_keep_what_a_bomb_inflated(serve: Any) -> None:
    limit = 8 * MiB
    server = serve(protocol_config={"limits": Limits(max_frame_size=limit)})
    bomb = zlib.compress(b"\x00" * (64 * MiB), 9)
    collect()
    gc.disable()  # deterministic: what a dead connection keeps until a collection happens
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(3):
            with RawClient(server.port) as client:
                client.send_raw(header(len(bomb), 1) + bomb + b"\n")
                assert client.closed_within(WAIT)
            assert wait_until(lambda: not server.clients)
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        gc.enable()
    assert retained < limit, f"3 closed connections keep {retained / MiB:.0f} MiB"


def test_invalid_and_truncated_zlib_bodies_are_refused(serve: Any) -> None:
    server = serve()
    good = zlib.compress(request_payload(0, consts.HANDLE_PING, val(("x",))))
    for body in (b"not zlib at all", good[:-3], good + b"trailing"):
        with RawClient(server.port) as client:
            client.send_raw(header(len(body), 1) + body + b"\n")
            assert client.closed_within(WAIT), body
    assert_serves(server.port)


def test_memory_follows_the_bytes_received_not_the_declared_frame_size() -> None:
    server = ServerProcess()
    clients: list[RawClient] = []
    try:
        assert_serves(server.port)
        before = server.rss_kib()
        for _ in range(4):
            client = RawClient(server.port)
            client.getroot()  # logged in: a pending peer may not declare more than 1 MiB
            client.send_raw(header(64 * MiB) + b"x" * 1000)  # declared 64 MiB, sent 1 KB
            clients.append(client)
        time.sleep(0.5)  # let the server read the headers (no assertion on time)
        grown = (server.rss_kib() - before) / 1024
        assert grown < 32, f"4 headers of 64 MiB frames cost {grown:.0f} MiB"
    finally:
        for client in clients:
            client.close()
        server.close()


# -- decoder limits over the wire -----------------------------------------------------------


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = (value,)
    return value


def _accepts(limits: Limits, payload: bytes) -> bool:
    try:
        brine.load_from(payload, 1, limits)
    except LimitExceeded:
        return False
    return True


CASES = {
    # name: (Limits, value at the limit, value one step over)
    "bytes": (Limits(max_bytes_len=1000), b"b" * 1000, b"b" * 1001),
    "str": (Limits(max_bytes_len=1000), "s" * 1000, "s" * 1001),
    "container": (Limits(max_container_len=100), tuple(range(100)), tuple(range(101))),
    "int_digits": (Limits(max_int_digits=40), 10**39, 10**40),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_decoder_size_limits_one_step_over(serve: Any, case: str) -> None:
    limits, at_limit, over = CASES[case]
    server = serve(protocol_config={"limits": limits})
    with RawClient(server.port) as client:
        root = client.getroot()
        assert _accepts(limits, echo_payload(root, at_limit))
        assert not _accepts(limits, echo_payload(root, over))
        client.send_raw(frame_bytes(echo_payload(root, at_limit)))
        assert answered(client, 1) == (consts.LABEL_VALUE, at_limit)
        client.send_raw(frame_bytes(echo_payload(root, over, seq=2)))
        assert client.closed_within(WAIT)
    assert_serves(server.port)


def test_decoder_depth_limit_one_step_over(serve: Any) -> None:
    limits = Limits(max_depth=12)
    server = serve(protocol_config={"limits": limits})
    with RawClient(server.port) as client:
        root = client.getroot()
        # the deepest value the envelope leaves room for, by the decoder's own count
        depth = max(d for d in range(1, 13) if _accepts(limits, echo_payload(root, _nested(d))))
        assert not _accepts(limits, echo_payload(root, _nested(depth + 1)))
        client.send_raw(frame_bytes(echo_payload(root, _nested(depth))))
        assert answered(client, 1) == (consts.LABEL_VALUE, _nested(depth))
        client.send_raw(frame_bytes(echo_payload(root, _nested(depth + 1), seq=2)))
        assert client.closed_within(WAIT)
    assert_serves(server.port)


# -- deadlines -------------------------------------------------------------------------------


def _token_authenticator(sock: Any) -> tuple[Any, Any]:
    """A naive authenticator: reads a 16-byte token with plain recv calls."""
    data = b""
    while len(data) < 16:
        chunk = sock.recv(16 - len(data))
        if not chunk:
            raise rpyc_ipy.AuthenticationError("EOF during the token")
        data += chunk
    if data != b"0123456789abcdef":
        raise rpyc_ipy.AuthenticationError("bad token")
    return sock, "token-user"


def test_authenticator_deadline(serve: Any) -> None:
    server = serve(authenticator=_token_authenticator, auth_timeout=1.0)
    with RawClient(server.port) as client:  # says nothing: dropped at the deadline
        assert client.closed_within(WAIT)
    with RawClient(server.port) as client:  # in time: served
        time.sleep(0.3)
        client.send_raw(b"0123456789abcdef")
        client.getroot()
        assert client.call(consts.HANDLE_PING, val(("x",)))[0] == "reply"


def test_authenticator_deadline_holds_against_a_drip(serve: Any) -> None:
    server = serve(authenticator=_token_authenticator, auth_timeout=1.0)
    with RawClient(server.port) as client:
        assert _drip(client, b"0", seconds=4.0, every=0.3)


def test_first_frame_deadline(serve: Any) -> None:
    server = serve(first_frame_timeout=1.0)
    with RawClient(server.port) as silent:
        assert silent.closed_within(WAIT)
    with RawClient(server.port) as prompt:
        prompt.getroot()
        assert not prompt.closed_within(1.5)  # the deadline is for the first frame only
        assert prompt.call(consts.HANDLE_PING, val(("x",)))[0] == "reply"
    assert_serves(server.port)


def test_first_frame_deadline_holds_against_a_drip(serve: Any) -> None:
    server = serve(first_frame_timeout=1.0)
    with RawClient(server.port) as client:
        client.send_raw(header(1000))
        assert _drip(client, b"x", seconds=4.0)


def test_idle_deadline(serve: Any) -> None:
    server = serve(protocol_config={"idle_timeout": 1.0})
    with RawClient(server.port) as idle:
        idle.getroot()
        assert idle.closed_within(WAIT)
    with RawClient(server.port) as busy:
        root = busy.getroot()
        for _ in range(15):  # a frame every 0.1 s keeps the connection past the deadline
            time.sleep(0.1)
            assert busy.call(consts.HANDLE_PING, val(("x",)))[0] == "reply"
        # a request that runs longer than the idle deadline is not idleness
        kind, value = busy.call(consts.HANDLE_CALLATTR,
                                tup(ref(root), val("sleep"), val((1.5,)), val(())))
        assert (kind, value) == ("reply", (consts.LABEL_VALUE, 1.5))
    assert_serves(server.port)


def test_frame_deadline(serve: Any) -> None:
    server = serve(protocol_config={"frame_deadline": 1.0})
    with RawClient(server.port) as client:
        client.getroot()
        client.send_raw(header(1000) + b"x" * 10)  # a frame starts and stalls
        assert client.closed_within(WAIT)
    with RawClient(server.port) as client:  # a big frame (read into its own buffer) too
        client.send_raw(header(200_000) + b"x" * 10)
        assert client.closed_within(WAIT)
    assert_serves(server.port)


def test_frame_deadline_holds_against_a_drip(serve: Any) -> None:
    server = serve(protocol_config={"frame_deadline": 1.0})
    with RawClient(server.port) as client:
        client.getroot()
        client.send_raw(header(1000))
        assert _drip(client, b"x", seconds=4.0)


# -- caps ---------------------------------------------------------------------------------------


def test_connection_cap(serve: Any) -> None:
    server = serve(max_connections=4)
    clients = [RawClient(server.port) for _ in range(4)]
    try:
        for client in clients:
            client.getroot()
        with RawClient(server.port) as extra:
            assert extra.closed_within(WAIT)
        clients.pop().close()
        assert wait_until(lambda: len(server.clients) == 3)
        assert_serves(server.port)
    finally:
        for client in clients:
            client.close()


class Blocking(TargetService):
    """``block()`` waits for the test's gate; counts how many run at once."""

    lock = threading.Lock()
    running = 0
    peak = 0
    gate = threading.Event()

    def exposed_block(self) -> str:
        cls = Blocking
        with cls.lock:
            cls.running += 1
            cls.peak = max(cls.peak, cls.running)
        try:
            cls.gate.wait(WAIT)
        finally:
            with cls.lock:
                cls.running -= 1
        return "released"


@pytest.fixture
def blocking() -> Any:
    Blocking.running = Blocking.peak = 0
    Blocking.gate = threading.Event()
    yield Blocking
    Blocking.gate.set()


def _start_blocked(client: RawClient, root: Any, count: int) -> list[int]:
    """Send ``count`` block() requests, one at a time, each once the previous one runs
    (or could not start within 1 s)."""
    seqs = []
    for _ in range(count):
        seqs.append(client.send(consts.HANDLE_CALLATTR,
                                tup(ref(root), val("block"), val(()), val(()))))
        wait_until(lambda: Blocking.running >= len(seqs), timeout=1.0)
    return seqs


def _all_answered(client: RawClient, seqs: list[int]) -> None:
    got = set()
    for _ in seqs:  # one reply each
        event = client.event()
        assert hasattr(event, "value"), event
        got.add(event.seq)
    assert got == set(seqs)


def test_dispatch_threads_are_bounded(serve: Any, blocking: Any) -> None:
    cap = 3
    server = serve(Blocking, protocol_config={"max_dispatch_threads": cap})
    threads_before = threading.active_count()
    with RawClient(server.port) as client:
        root = client.getroot()
        seqs = _start_blocked(client, root, cap + 4)
        assert Blocking.running <= cap
        assert threading.active_count() - threads_before <= cap + 3
        blocking.gate.set()
        _all_answered(client, seqs)
    assert Blocking.peak <= cap
    assert_serves(server.port)


def test_dispatch_threads_cap_is_exact(serve: Any, blocking: Any) -> None:
    cap = 3
    server = serve(Blocking, protocol_config={"max_dispatch_threads": cap})
    with RawClient(server.port) as client:
        root = client.getroot()
        seqs = _start_blocked(client, root, cap + 2)
        assert Blocking.running == cap
        blocking.gate.set()
        _all_answered(client, seqs)


def test_pipelined_long_requests_do_not_stop_the_connection_reading(serve: Any,
                                                                    blocking: Any) -> None:
    server = serve(Blocking)
    with RawClient(server.port) as client:
        root = client.getroot()
        block = tup(ref(root), val("block"), val(()), val(()))
        client.send_raw(b"".join(request_frame(1 + i, consts.HANDLE_CALLATTR, block)
                                 for i in range(6))
                        + request_frame(100, consts.HANDLE_PING, val(("alive",))))
        try:
            event = client.event(5.0)  # liveness: answered while all six still wait
        except TimeoutError:
            event = None
        running = Blocking.running
        blocking.gate.set()
        assert event is not None and event.seq == 100, (event, running)
        assert running == 6
        _all_answered(client, list(range(1, 7)))


def test_exported_objects_cap(serve: Any) -> None:
    server = serve(protocol_config={"max_exported_objects": 10})
    with rpyc_ipy.connect("127.0.0.1", server.port, config={"sync_request_timeout": WAIT}) as conn:
        root = conn.root
        start = root.exports()
        held = [root.make() for _ in range(10 - start)]
        assert root.exports() == 10
        with pytest.raises(ValueError, match="export table full"):
            root.make()
        assert root.ping() == "pong"  # the connection goes on
        del held[:3]
        collect()
        assert wait_until(lambda: root.exports() == 7)
        held.append(root.make())
        assert root.exports() == 8
    assert_serves(server.port)


def test_buffiter_chunk_is_capped(serve: Any) -> None:
    server = serve(protocol_config={"max_buffiter_chunk": 5})
    with RawClient(server.port) as client:
        client.getroot()
        iterator = iter(range(100))
        server_side(server)._box(iterator)  # export an iterator the raw client can name
        kind, boxed = client.call(consts.HANDLE_BUFFITER,
                                  tup(ref(id_pack_of(iterator)), val(10**9)))
        assert kind == "reply" and boxed == (consts.LABEL_VALUE, (0, 1, 2, 3, 4))
        for count in (-1, "many", 2**200):
            kind, _ = client.call(consts.HANDLE_BUFFITER,
                                        tup(ref(id_pack_of(iterator)), val(count)))
            if count == 2**200:
                assert kind == "reply"
            else:
                assert kind == "exception"
    assert_serves(server.port)


def test_closed_raw_client_is_noticed(serve: Any) -> None:
    """A client that disappears without CLOSE is dropped from the server's table."""
    server = serve()
    client = RawClient(server.port)
    client.getroot()
    assert wait_until(lambda: len(server.clients) == 1)
    client.close()
    assert wait_until(lambda: not server.clients)
    assert_serves(server.port)
