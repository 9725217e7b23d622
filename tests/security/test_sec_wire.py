"""Hostile clients speaking raw bytes to our ThreadedServer (in a subprocess, default config).

Each test asserts the refusal, then that the server still serves a fresh client, and
(an autouse check) that the server process is alive and its resident memory stays
within a bound of where it started.
"""

from __future__ import annotations

import struct
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from seckit import (
    CLIENT_CONFIG,
    WAIT,
    Closed,
    RawClient,
    ServerProcess,
    assert_serves,
    exception_name,
    ref,
    request_frame,
    request_payload,
    tup,
    val,
)

import rpyc_ipy
from rpyc_ipy.core.policy import SAFE_ATTRS
from rpyc_ipy.protocol import brine, consts
from rpyc_ipy.protocol.engine import Reply
from rpyc_ipy.protocol.framing import frame_bytes

pytestmark = pytest.mark.timeout(90)
MiB = 1 << 20
RSS_BOUND_MIB = 128  # growth of the server's resident memory allowed over the whole module


@pytest.fixture(scope="module")
def target() -> Iterator[ServerProcess]:
    # hundreds of clients from 127.0.0.1 before they log in: the caps on those are
    # tested in test_sec_pending.py, here they would refuse most of the crowd
    server = ServerProcess(max_pending_connections=512, max_pending_per_address=512)
    try:
        assert_serves(server.port)
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def baseline_kib(target: ServerProcess) -> int:
    """The server's resident memory before the first test of the module."""
    return target.rss_kib()


@pytest.fixture(autouse=True)
def survives(target: ServerProcess, baseline_kib: int) -> Iterator[None]:
    """After every test: the server is alive, serves a fresh client, memory is bounded.

    Garbage that the cyclic collector frees is collected first: this checks for
    growth that stays; test_sec_limits checks what a closed connection retains.
    """
    yield
    assert target.alive(), "the server process died"
    assert_serves(target.port)
    with rpyc_ipy.connect("127.0.0.1", target.port, config=CLIENT_CONFIG) as conn:
        conn.root.collect()
    grown = (target.rss_kib() - baseline_kib) / 1024
    assert grown < RSS_BOUND_MIB, f"server RSS grew by {grown:.0f} MiB"


@pytest.fixture
def client(target: ServerProcess) -> Iterator[RawClient]:
    with RawClient(target.port) as raw:
        yield raw


def _thing(client: RawClient) -> Any:
    root = client.getroot()
    kind, boxed = client.call(consts.HANDLE_CALLATTR,
                              tup(ref(root), val("get_thing"), val(()), val(())))
    assert kind == "reply" and boxed[0] == consts.LABEL_REMOTE_REF
    return root, boxed[1]


def _refused(answer: tuple[str, Any], *names: str) -> bool:
    kind, payload = answer
    names = names or ("builtins.AttributeError",)
    return kind == "exception" and exception_name(payload) in names


# -- attribute escapes through every handler that takes a name -------------------------------

ESCAPE_NAMES: list[Any] = [
    "__class__", "__dict__", "__globals__", "__init__", "__reduce__", "__reduce_ex__",
    "__subclasses__", "__getattribute__", "__setattr__", "__delattr__", "__getattr__",
    "__init_subclass__", "__subclasshook__", "__code__", "__closure__", "__module__",
    "__weakref__", "__call__", "__func__", "__self__", "__builtins__", "__dir__",
    "_private", "_conn", "_rpyc_getattr", "secret", "public", "on_connect", "thing",
    "exposed___class__", "exposed__conn", "exposed___dict__", "exposed___init__",
    "exposed_", "exposed_thing.__class__", "__class__.__subclasses__",
    b"__class__", b"_conn", b"\xff\xfe", b"exposed_\xff",
    7, -1, 2**70, 1.5, None, True, ("__class__",), ("exposed_", "_conn"), frozenset({"x"}),
]


def _name_requests(obj: Any, name: Any) -> dict[str, tuple[int, Any]]:
    return {
        "GETATTR": (consts.HANDLE_GETATTR, tup(ref(obj), val(name))),
        "SETATTR": (consts.HANDLE_SETATTR, tup(ref(obj), val(name), val(1))),
        "DELATTR": (consts.HANDLE_DELATTR, tup(ref(obj), val(name))),
        "CALLATTR": (consts.HANDLE_CALLATTR, tup(ref(obj), val(name), val(()), val(()))),
        "CMP": (consts.HANDLE_CMP, tup(ref(obj), val(1), val(name))),
        "OLDSLICING": (consts.HANDLE_OLDSLICING,
                       tup(ref(obj), val(name), val(name), val(0), val(1), val(()))),
    }


@pytest.mark.parametrize("handler", ["GETATTR", "SETATTR", "DELATTR", "CALLATTR", "CMP",
                                     "OLDSLICING"])
def test_attribute_escapes_are_refused(client: RawClient, handler: str) -> None:
    root, thing = _thing(client)
    accepted = []
    for obj, label in ((root, "root"), (thing, "thing")):
        for name in ESCAPE_NAMES:
            number, args = _name_requests(obj, name)[handler]
            answer = client.call(number, args)
            if not _refused(answer):
                accepted.append((label, name, answer))
    assert not accepted
    # nothing was changed on the way
    assert client.call(consts.HANDLE_GETATTR, tup(ref(thing), val("value"))) == \
        ("reply", (consts.LABEL_VALUE, 1))
    method = tup(ref(thing), val("method"), val(()), val(()))
    assert client.call(consts.HANDLE_CALLATTR, method) == ("reply", (consts.LABEL_VALUE, "ok"))


def test_setattr_and_delattr_are_off_even_for_exposed_names(client: RawClient) -> None:
    root, thing = _thing(client)
    for obj in (root, thing):
        for name in ("exposed_value", "value", "exposed_method", "exposed_ping", "__doc__"):
            assert _refused(client.call(consts.HANDLE_SETATTR, tup(ref(obj), val(name), val(2))))
            assert _refused(client.call(consts.HANDLE_DELATTR, tup(ref(obj), val(name))))
    assert client.call(consts.HANDLE_GETATTR, tup(ref(thing), val("value")))[1] == \
        (consts.LABEL_VALUE, 1)


CVE_2019_16328_OPS = ["__getattribute__", "__class__", "__dict__", "__init__", "__reduce__",
                      "__reduce_ex__", "__subclasshook__", "__init_subclass__", "__setattr__",
                      "__delattr__", "__getattr__", "__dir__", "__call__", "__globals__",
                      "__sizeof__", "__getstate__", "_rpyc_getattr", "on_connect", "exposed_"]


@pytest.mark.parametrize("op", CVE_2019_16328_OPS)
def test_cmp_cannot_fetch_a_method_off_the_type(client: RawClient, op: str) -> None:
    """CVE-2019-16328: CMP fetched ``op`` from ``type(obj)`` without a policy check."""
    root, thing = _thing(client)
    for obj in (root, thing):
        for other in (val("_conn"), val("secret"), ref(root), ref(thing)):
            assert _refused(client.call(consts.HANDLE_CMP, tup(ref(obj), other, val(op))))


def test_cmp_still_compares(client: RawClient) -> None:
    _, thing = _thing(client)
    assert client.call(consts.HANDLE_CMP, tup(ref(thing), ref(thing), val("__eq__"))) == \
        ("reply", (consts.LABEL_VALUE, True))


def test_fixed_name_handlers(client: RawClient) -> None:
    root, thing = _thing(client)
    # DIR and INSPECT list only what the policy would let the peer use
    kind, boxed = client.call(consts.HANDLE_DIR, tup(ref(thing)))
    assert kind == "reply"
    names = set(boxed[1])
    assert names, "DIR lists the exposed names"
    assert {"method", "exposed_method", "value"} <= names
    leaked = {n for n in names if not (n.startswith("exposed_") or n in SAFE_ATTRS
                                      or "exposed_" + n in names)}
    assert not leaked
    kind, boxed = client.call(consts.HANDLE_INSPECT, val((thing,)))
    assert kind == "reply"
    listed = {name for name, _doc in boxed[1]}
    assert "__iter__" in listed and "__enter__" in listed
    assert not listed & {"__reduce__", "__reduce_ex__", "__getattribute__", "__init__",
                         "__setattr__", "__init_subclass__", "__subclasshook__", "__dir__",
                         "__sizeof__", "__getstate__", "__new__" if "__new__" not in SAFE_ATTRS
                         else "__class__"}
    # PICKLE with pickling off (the default): refused
    for proto in (0, 2, 5, -1):
        assert _refused(client.call(consts.HANDLE_PICKLE, tup(ref(thing), val(proto))),
                        "builtins.AttributeError", "builtins.ValueError")
    # HASH, BUFFITER and CTXEXIT use fixed safe names: answered, nothing more
    assert client.call(consts.HANDLE_HASH, tup(ref(thing)))[0] == "reply"
    assert client.call(consts.HANDLE_BUFFITER, tup(ref(thing), val(2))) == \
        ("reply", (consts.LABEL_VALUE, (1, 2)))
    assert client.call(consts.HANDLE_CTXEXIT, tup(ref(thing), val(None))) == \
        ("reply", (consts.LABEL_VALUE, False))
    # an "exception" that is one of the server's objects: raising it fails harmlessly
    assert client.call(consts.HANDLE_CTXEXIT, tup(ref(thing), ref(root))) == \
        ("reply", (consts.LABEL_VALUE, False))
    assert _refused(client.call(consts.HANDLE_CTXEXIT, tup(ref(root), val(None))))
    # INSTANCECHECK resolves names locally and never imports or calls anything
    for name_pack in ("os.system", "subprocess.Popen", "builtins.eval", "nonexistent.mod.X",
                      "seckit.Thing", "__main__"):
        answer = client.call(consts.HANDLE_INSTANCECHECK, tup(ref(root), val((name_pack, 1, 2))))
        assert answer[0] == "reply" and type(answer[1][1]) is bool, (name_pack, answer)
    assert client.call(consts.HANDLE_INSTANCECHECK, tup(ref(root), val("x")))[0] == "exception"


def test_buffiter_needs_a_sane_count(client: RawClient) -> None:
    _, thing = _thing(client)
    for count in (-1, "10", None, 1.5):
        assert client.call(consts.HANDLE_BUFFITER, tup(ref(thing), val(count)))[0] == "exception"


# -- forged and stale object ids -------------------------------------------------------------


def test_forged_and_stale_ids(client: RawClient) -> None:
    root, thing = _thing(client)
    never_exported = ("seckit.Thing", thing[1], thing[2] + 16)
    for forged in (never_exported, (thing[0], thing[1] + 1, thing[2]), ("builtins.dict", 1, 2),
                   ("", 0, 0), "root", 5, (root[0], root[1]), (1, 2, 3)):
        answer = client.call(consts.HANDLE_GETATTR, tup(ref(forged), val("exposed_value")))
        assert answer[0] == "exception", (forged, answer)
        assert exception_name(answer[1]) in ("builtins.KeyError", "builtins.ValueError",
                                             "builtins.TypeError")
    # INSPECT of an id that was never exported
    assert _refused(client.call(consts.HANDLE_INSPECT, val((never_exported,))), "builtins.KeyError")
    # DEL of unknown ids, with bad counts
    assert _refused(client.call(consts.HANDLE_DEL, tup(ref(never_exported), val(1))),
                    "builtins.KeyError")
    for count in (0, -1, -(2**64), "1", None, 1.0):
        assert _refused(client.call(consts.HANDLE_DEL, tup(ref(thing), val(count))),
                        "builtins.ValueError", "builtins.TypeError"), count
    assert client.call(consts.HANDLE_GETATTR, tup(ref(thing), val("value")))[0] == "reply"
    # a huge count drops the peer's own reference, nothing else: the id is stale after it
    assert client.call(consts.HANDLE_DEL, tup(ref(thing), val(10**30))) == \
        ("reply", (consts.LABEL_VALUE, None))
    assert _refused(client.call(consts.HANDLE_GETATTR, tup(ref(thing), val("value"))),
                    "builtins.KeyError")
    assert _refused(client.call(consts.HANDLE_DEL, tup(ref(thing), val(1))), "builtins.KeyError")
    # even the root: GETROOT hands it out again
    assert client.call(consts.HANDLE_DEL, tup(ref(root), val(10**30)))[0] == "reply"
    assert _refused(client.call(consts.HANDLE_GETATTR, tup(ref(root), val("ping"))),
                    "builtins.KeyError")
    root = client.getroot()
    assert client.call(consts.HANDLE_CALLATTR, tup(ref(root), val("ping"), val(()), val(()))) == \
        ("reply", (consts.LABEL_VALUE, "pong"))


def test_malformed_boxing_is_answered_with_an_error(client: RawClient) -> None:
    root = client.getroot()
    for boxed in ((9, 1), (1,), (1, 2, 3), "x", (2, "not a tuple"), (2, ((7, 1),)),
                  (4, ("x", 1)), (4, "x"), (3, (None, 1, 2)),
                  (2, ((3, root), (1, "ping"), (2, ((8, 0),)), (1, ())))):
        answer = client.call(consts.HANDLE_CALLATTR, boxed)
        assert answer[0] == "exception", boxed
    assert client.call(consts.HANDLE_PING, val(("alive",))) == ("reply", (consts.LABEL_VALUE,
                                                                         "alive"))


@pytest.mark.parametrize("handler", [0, 21, 99, 255, 10**20, -5])
def test_unknown_handler_ids(client: RawClient, handler: int) -> None:
    root = client.getroot()
    assert _refused(client.call(handler, tup(ref(root))), "builtins.KeyError")
    assert client.call(consts.HANDLE_PING, val(("x",)))[0] == "reply"


def test_handler_ids_that_are_not_ints_close_the_connection(target: ServerProcess) -> None:
    for handler in ("ping", None, (1,), 1.0, True):
        with RawClient(target.port) as client:
            client.getroot()
            payload = bytes((consts.MSG_REQUEST,)) + brine.dump((5, (handler, (1, ()))))
            client.send_raw(frame_bytes(payload))
            assert client.closed_within(WAIT), handler


def test_replies_for_unknown_requests_are_dropped(client: RawClient) -> None:
    client.getroot()
    for kind, body in ((consts.MSG_REPLY, (1, None)), (consts.MSG_EXCEPTION, 1),
                       (consts.MSG_EXCEPTION, (("m", "E"), (), (), "tb")),
                       (consts.MSG_REPLY, (3, ("x", 1, 2)))):
        client.send_raw(frame_bytes(bytes((kind,)) + brine.dump((12345, body))))
    client.send_raw(frame_bytes(b""))  # an empty payload is ignored, as rpyc does
    assert client.call(consts.HANDLE_PING, val(("x",))) == ("reply", (consts.LABEL_VALUE, "x"))


# -- malformed frames --------------------------------------------------------------------------

PING = request_payload(0, consts.HANDLE_PING, val(("x",)))
MALFORMED: dict[str, bytes] = {
    "unused tag 07": frame_bytes(b"\x01\x07"),
    "unused tag f0": frame_bytes(b"\x01\x11\x50\xf0"),
    "unused tag 09": frame_bytes(b"\x01\x11\x50\x09"),
    "message type 9": frame_bytes(b"\x09" + PING[1:]),
    "message type 0": frame_bytes(b"\x00" + PING[1:]),
    "truncated brine": frame_bytes(PING[:-3]),
    "trailing bytes": frame_bytes(PING + b"\x00\x00"),
    "deep nesting": frame_bytes(b"\x01\x11\x50" + b"\x10" * 200_000 + b"\x50"),
    "huge bytes length": frame_bytes(b"\x01\x11\x50\x0f\xff\xff\xff\xff"),
    "huge tuple length": frame_bytes(b"\x01\x11\x50\x15\x7f\xff\xff\xff"),
    "huge int length": frame_bytes(b"\x01\x11\x50\x17\xff\xff\xff\xff"),
    "int of bad digits": frame_bytes(b"\x01\x11\x16\x03abc\x02"),
    "bad utf-8 str": frame_bytes(b"\x01\x11\x50\x08\x0b\xff\xfe"),
    "not a 2-tuple": frame_bytes(b"\x01" + brine.dump((1, 2, 3))),
    "body not a request": frame_bytes(b"\x01" + brine.dump((0, 5))),
    "negative seq": frame_bytes(b"\x01" + brine.dump((-1, (1, (1, ("x",)))))),
    "seq not an int": frame_bytes(b"\x01" + brine.dump(("0", (1, (1, ("x",)))))),
    "compression flag 2": struct.pack(">IB", len(PING), 2) + PING + b"\n",
    "compression flag 255": struct.pack(">IB", len(PING), 255) + PING + b"\n",
    "invalid zlib": struct.pack(">IB", 10, 1) + b"0123456789\n",
    "4 GiB declared frame": struct.pack(">IB", 0xFFFFFFFF, 0),
    "zlib bomb": (lambda bomb: struct.pack(">IB", len(bomb), 1) + bomb + b"\n")(
        zlib.compress(b"\x00" * (200 * MiB), 9)),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_frames_close_the_connection(target: ServerProcess, case: str) -> None:
    with RawClient(target.port) as client:
        client.getroot()
        client.send_raw(MALFORMED[case])
        assert client.closed_within(WAIT), case


def test_a_malformed_frame_after_pipelined_requests(target: ServerProcess) -> None:
    """The requests before the bad frame are answered (or the connection closed), never
    half-processed into a hang."""
    with RawClient(target.port) as client:
        client.getroot()
        good = b"".join(request_frame(i, consts.HANDLE_PING, val((i,))) for i in range(1, 20))
        client.send_raw(good + MALFORMED["unused tag 07"])
        answers = 0
        try:
            for _ in range(20):  # at most the 19 good requests are answered, then the close
                event = client.event()
                assert getattr(event, "value", None) == (consts.LABEL_VALUE, event.seq)
                answers += 1
        except Closed:
            pass
        assert answers <= 19


# -- floods -----------------------------------------------------------------------------------


def test_200_concurrent_connections(target: ServerProcess) -> None:
    clients = [RawClient(target.port) for _ in range(200)]
    try:
        for client in clients:
            client.send(consts.HANDLE_GETROOT, val(()))
        for client in clients:
            event = client.event()
            assert isinstance(event, Reply) and event.value[0] == consts.LABEL_REMOTE_REF
        for i, client in enumerate(clients):
            client.send(consts.HANDLE_PING, val((i,)))
        for i, client in enumerate(clients):
            event = client.event()
            assert isinstance(event, Reply) and event.value == (consts.LABEL_VALUE, i)
        assert_serves(target.port)
    finally:
        for client in clients:
            client.close()


def test_100_slow_connections_do_not_starve_a_fresh_client(target: ServerProcess) -> None:
    clients = [RawClient(target.port) for _ in range(100)]
    try:
        for client in clients:
            client.send_raw(struct.pack(">IB", 1000, 0))  # a frame that trickles in
        for _ in range(3):  # one byte a second on every connection, for 3 s
            started = time.monotonic()
            for client in clients:
                client.send_raw(b"x")
            assert_serves(target.port, within=5)  # served promptly meanwhile
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    finally:
        for client in clients:
            client.close()


def test_a_pipelined_flood_of_5000_requests(target: ServerProcess) -> None:
    count = 5000
    with RawClient(target.port) as client:
        root = client.getroot()
        frames = [request_frame(1 + i, consts.HANDLE_PING, val((i,))) if i % 2 else
                  request_frame(1 + i, consts.HANDLE_CALLATTR,
                                tup(ref(root), val("echo"), val((i,)), val(())))
                  for i in range(count)]
        failure: list[BaseException] = []

        def send() -> None:  # write while the main thread reads: no deadlock of full buffers
            try:
                for start in range(0, count, 500):
                    client.send_raw(b"".join(frames[start:start + 500]))
            except OSError as exc:
                failure.append(exc)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        answered = set()
        closed = False
        try:
            for _ in range(count):  # one reply each
                event = client.event(WAIT)
                assert getattr(event, "value", None) == (consts.LABEL_VALUE, event.seq - 1)
                answered.add(event.seq)
        except Closed:
            closed = True
        sender.join(WAIT)
        assert not sender.is_alive()
        assert len(answered) == count or closed  # all answered, or cleanly closed
        assert len(answered) == count, "the server should keep up with a pipelined client"
