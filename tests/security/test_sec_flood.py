"""Hash flooding: values that all hash alike must not make decoding quadratic.

60,000 multiples of ``2**61 - 1`` all hash to 0: put in a frozenset, they took
Python about 15 s (5,000 take 0.12 s, 40,000 take 6.3 s), holding the GIL all the
while, from one 1.5 MB frame. The decoder now looks at the hash values first and
refuses a set in which more than ``Limits.max_hash_collisions`` members share one,
or two members holding frozensets do (:mod:`rpyc_ipy.protocol.hashing`), on both
sides of a connection; keyword-argument names get the same check, and the proxy
cache keys the peer's ids with a secret, so colliding id_packs flood nothing.

Linearity is shown by structure: the check compares no members at all, a set at the
limit is built with at most ``limit`` comparisons per member (a counter), and a fresh
client is served while the attack frame is being handled (a quadratic decode would
hold the server's GIL for longer than the probe's whole timeout).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from seckit import (
    WAIT,
    RawClient,
    RawServer,
    ServerProcess,
    assert_serves,
    exception_name,
    ref,
    reply_frame,
    tup,
    val,
    wait_until,
)

import rpyc_ipy
from rpyc_ipy.errors import ConnectionClosed, LimitExceeded
from rpyc_ipy.protocol import brine, consts
from rpyc_ipy.protocol.engine import Reply, Request
from rpyc_ipy.protocol.hashing import check_spread
from rpyc_ipy.protocol.limits import DEFAULT_LIMITS, Limits

pytestmark = pytest.mark.timeout(120)

P = 2**61 - 1  #: ints hash to themselves modulo this
FLOOD = 60_000  #: the issue's frame: 60,000 colliding ints, about 1.5 MB


def colliding_ints(n: int) -> tuple[int, ...]:
    return tuple(k * P for k in range(1, n + 1))


def flood_frozenset_bytes(n: int = FLOOD) -> bytes:
    """The brine of a frozenset of ``n`` ints that all hash to 0 (built by hand: a
    real frozenset of them would take minutes to make here)."""
    return b"\x1a" + brine.dump(colliding_ints(n))


def ping_frame_with(encoded_value: bytes, seq: int = 0) -> bytes:
    """A PING request whose data is the given brine bytes."""
    from rpyc_ipy.protocol.framing import frame_bytes

    body = brine.dump((seq, (consts.HANDLE_PING, brine.Encoded(encoded_value))))
    return frame_bytes(bytes((consts.MSG_REQUEST,)) + body)


# -- the check itself: linear, and no comparisons ------------------------------------------


class Counted:
    """A value whose hash is chosen and whose comparisons are counted."""

    compares = 0

    def __init__(self, value: int, hashed: int) -> None:
        self.value = value
        self.hashed = hashed

    def __hash__(self) -> int:
        return self.hashed

    def __eq__(self, other: object) -> bool:
        Counted.compares += 1
        return isinstance(other, Counted) and other.value == self.value


def test_the_check_refuses_a_flood_without_comparing_anything() -> None:
    Counted.compares = 0
    items = [Counted(i, 7) for i in range(FLOOD)]
    with pytest.raises(LimitExceeded, match="hash flooding"):
        check_spread(items, 16, "a test set")
    assert Counted.compares == 0


def test_a_set_at_the_limit_costs_at_most_limit_comparisons_per_member() -> None:
    limit = DEFAULT_LIMITS.max_hash_collisions
    items = [Counted(i, i // limit) for i in range(FLOOD)]  # groups of exactly `limit`
    Counted.compares = 0
    check_spread(items, limit, "a test set")
    assert Counted.compares == 0
    built = frozenset(items)
    assert len(built) == FLOOD
    assert Counted.compares <= FLOOD * limit


# -- brine: every flavour of collision, and one step over the limit ---------------------------


def tuple_hash_twins(n: int) -> list[tuple[int, int]]:
    """``n`` distinct pairs of ints with one hash (every pair of a multiple of P)."""
    return [(k * P, 0) for k in range(1, n + 1)]


def nested_twins(depth: int) -> tuple[frozenset[Any], frozenset[Any]]:
    """Two different frozensets with one hash, nested ``depth`` deep: {-1} and {-2}
    at the bottom (-1 and -2 hash alike), so comparing them recurses all the way."""
    a: Any = -1
    b: Any = -2
    for _ in range(depth):
        a, b = frozenset({a}), frozenset({b})
    return a, b


def as_frozenset_bytes(items: Any) -> bytes:
    return b"\x1a" + brine.dump(tuple(items))


FLOODS = {
    "ints": colliding_ints(1000),
    "negative ints": tuple(-k * P for k in range(1, 1001)),
    "floats": (1.0, *(float(2**(61 * k)) for k in range(1, 17))),  # all hash to 1
    "complex": tuple(complex(k * 1000003, -k) for k in range(2, 1002)),  # k*c - k*c
    "tuples of colliding ints": tuple(tuple_hash_twins(1000)),
    "frozensets of colliding ints": tuple(frozenset({k * P}) for k in range(1, 1001)),
}


def str_among_ints_of_its_hash() -> tuple[Any, ...]:
    """A str, and 16 ints with its hash (which this process's hash seed decides)."""
    text = next(t for t in (f"flood{i}" for i in range(1000)) if abs(hash(t)) < P)
    h = hash(text)
    sign = 1 if h >= 0 else -1
    return (text, *(h + sign * k * P for k in range(1, 17)))


FLOODS["strs among ints of their hash"] = str_among_ints_of_its_hash()


@pytest.mark.parametrize("name", sorted(FLOODS))
def test_brine_refuses_each_kind_of_flood(name: str) -> None:
    items = FLOODS[name]
    assert len({hash(item) for item in items}) == 1, "the test data must collide"
    with pytest.raises(LimitExceeded, match="hash flooding"):
        brine.load(as_frozenset_bytes(items))


def test_nested_frozensets_that_collide_are_refused_at_any_size() -> None:
    a, b = nested_twins(12)
    assert hash(a) == hash(b) and a != b
    with pytest.raises(LimitExceeded, match="holding frozensets"):
        brine.load(as_frozenset_bytes((a, b)))
    tuples = ((0, a), (0, b))  # inside tuples too
    with pytest.raises(LimitExceeded, match="holding frozensets"):
        brine.load(as_frozenset_bytes(tuples))


def test_genuine_sets_with_a_few_collisions_decode() -> None:
    genuine = [
        frozenset({-1, -2}),  # hash(-1) == hash(-2)
        frozenset({(3, -1), (3, -2), (-1, 0), (-2, 0)}),  # grid points
        frozenset({"abc", b"abc"}),  # a latin-1 str and its bytes hash alike
        frozenset({0, P, 2 * P}),
        frozenset({nested_twins(1)[0], 5}),
        frozenset(range(100_000)),
    ]
    for value in genuine:
        assert brine.load(brine.dump(value)) == value


@pytest.mark.parametrize("limit", [1, 16, 40])
def test_max_hash_collisions_one_step_over(limit: int) -> None:
    limits = Limits(max_hash_collisions=limit)
    at_limit = as_frozenset_bytes(colliding_ints(limit))
    assert len(brine.load(at_limit, limits)) == limit
    with pytest.raises(LimitExceeded, match=f"max_hash_collisions={limit}"):
        brine.load(as_frozenset_bytes(colliding_ints(limit + 1)), limits)


def test_max_hash_collisions_must_be_positive() -> None:
    with pytest.raises(rpyc_ipy.errors.ConfigError, match="max_hash_collisions"):
        Limits(max_hash_collisions=0)


def test_the_flood_frame_is_the_issues_size() -> None:
    data = flood_frozenset_bytes()
    assert 1_400_000 < len(data) < 1_600_000
    with pytest.raises(LimitExceeded, match=f"{FLOOD} members with one hash value"):
        brine.load(data)


# -- a real server, attacked with a PING ---------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    process = ServerProcess()
    try:
        yield process
    finally:
        process.close()


def test_a_flooded_ping_is_refused_and_others_are_served_meanwhile(server: ServerProcess
                                                                      ) -> None:
    frame = ping_frame_with(flood_frozenset_bytes())
    with RawClient(server.port) as attacker:
        attacker.send_raw(frame)
        # a quadratic decode holds the server's GIL for ~15 s: longer than WAIT
        assert_serves(server.port, within=WAIT)
        assert attacker.closed_within(WAIT), "the server kept the flooding connection"
    assert_serves(server.port)
    assert server.alive()


def test_flooded_keyword_names_are_refused(server: ServerProcess) -> None:
    names = colliding_ints(FLOOD)
    kwargs = tuple((name, 0) for name in names)
    with RawClient(server.port) as attacker:
        root = attacker.getroot()
        kind, payload = attacker.call(
            consts.HANDLE_CALLATTR, tup(ref(root), val("ping"), val(()), val(kwargs)))
        assert kind == "exception" and exception_name(payload) == "builtins.ValueError"
        assert "hash flooding" in str(payload[1])
        assert attacker.call(consts.HANDLE_CALLATTR,
                             tup(ref(root), val("ping"), val(()), val(())))[0] == "reply"
    assert_serves(server.port)


# -- a hostile server, flooding a real client ------------------------------------------------------


def flooding_server(reply_bytes: bytes) -> RawServer:
    """A server that answers every request with ``reply_bytes`` (brine) as the value."""

    def respond(event: Any) -> bytes | None:
        if isinstance(event, Request):
            return reply_frame(event.seq, (consts.LABEL_VALUE, brine.Encoded(reply_bytes)))
        return None

    return RawServer(respond)


def test_a_client_refuses_a_flooded_reply_and_stays_usable(serve: Any) -> None:
    hostile = flooding_server(flood_frozenset_bytes())
    try:
        with pytest.raises(ConnectionClosed, match="hash flooding"):
            # connect() fetches the root first: its reply is the flood
            rpyc_ipy.connect("127.0.0.1", hostile.port, config={"sync_request_timeout": WAIT})
    finally:
        hostile.close()
    good = serve()
    with rpyc_ipy.connect("127.0.0.1", good.port, config={"sync_request_timeout": WAIT}) as conn:
        assert conn.root.add(20, 22) == 42


def test_a_client_refuses_nested_colliding_frozensets(serve: Any) -> None:
    a, b = nested_twins(20)
    hostile = flooding_server(as_frozenset_bytes((a, b)))
    try:
        with pytest.raises(ConnectionClosed, match="hash flooding"):
            # connect() fetches the root first: its reply is the flood
            rpyc_ipy.connect("127.0.0.1", hostile.port, config={"sync_request_timeout": WAIT})
    finally:
        hostile.close()


# -- colliding id_packs do not flood the proxy cache ---------------------------------------------

_M = (1 << 64) - 1
_X1, _X2, _X5 = 11400714785074694791, 14029467366897019727, 2870177450012600261


def _lane(acc: int, lane: int) -> int:
    acc = (acc + lane * _X2) & _M
    acc = ((acc << 31) | (acc >> 33)) & _M
    return (acc * _X1) & _M


def colliding_id_packs(name: str, n: int) -> list[tuple[str, int, int]]:
    """``n`` distinct id_packs ``(name, a, b)`` (ints below 2**61 - 1) with one tuple
    hash: CPython's tuple hash (xxHash lanes) is solved for ``b`` given ``a``."""
    start = _lane(_X5, hash(name) & _M)
    target = _lane(_lane(start, 12345), 678)  # the hash of (name, 12345, 678) before the end
    inverse = pow(_X2, -1, 1 << 64)
    # acc + b*X2 must be the pre-image of `target` under rotate-and-multiply
    before = (target * pow(_X1, -1, 1 << 64)) & _M
    before = ((before >> 31) | (before << 33)) & _M
    packs: list[tuple[str, int, int]] = []
    for a in range(1, 64 * n):  # about one a in eight gives a b below P
        b = ((before - _lane(start, a)) * inverse) & _M
        if b < P:
            packs.append((name, a, b))
            if len(packs) == n:
                break
    return packs


def test_colliding_id_packs_do_not_flood_the_proxy_cache(server: ServerProcess) -> None:
    packs = colliding_id_packs("builtins.list", FLOOD)
    assert len({hash(pack) for pack in packs}) == 1, "the test data must collide"
    refs = tup(*((consts.LABEL_REMOTE_REF, pack) for pack in packs))
    with RawClient(server.port) as attacker:
        root = attacker.getroot()
        # echo(refs): the server makes one proxy per id_pack (a plain dict of them
        # takes ~36 s to fill: longer than the probe's whole timeout)
        seq = attacker.send(consts.HANDLE_CALLATTR, tup(ref(root), val("echo"), tup(refs),
                                                         val(())))
        assert_serves(server.port, within=WAIT)

        def echoed() -> Any:
            event = attacker.event()
            return event if isinstance(event, Reply) and event.seq == seq else None

        reply = wait_until(echoed, WAIT, step=0.0)
        assert reply is not None and reply.value[0] == consts.LABEL_TUPLE
        assert len(reply.value[1]) == FLOOD
    assert server.alive()


# -- packed values (%rpyc_pull, %%remote -o, pushes): sets and dicts built from peer data ---------


@pytest.mark.parametrize("tag", ["set", "frozenset"])
def test_a_flooded_packed_set_is_refused(tag: str) -> None:
    from rpyc_ipy.remote import values

    with pytest.raises(ValueError, match="hash flooding"):
        values.unpack((tag, colliding_ints(FLOOD)))
    a, b = nested_twins(12)
    with pytest.raises(ValueError, match="holding sets"):
        values.unpack((tag, (values.pack(a), values.pack(b))))


def test_a_flooded_packed_dict_is_refused() -> None:
    from rpyc_ipy.remote import values

    with pytest.raises(ValueError, match="hash flooding"):
        values.unpack(("dict", tuple((k, None) for k in colliding_ints(FLOOD))))
    limit = values.MAX_HASH_COLLISIONS
    at_limit = tuple((k, k) for k in colliding_ints(limit))
    assert len(values.unpack(("dict", at_limit))) == limit
    with pytest.raises(ValueError, match="hash flooding"):
        values.unpack(("dict", (*at_limit, ((limit + 1) * P, 0))))


def test_genuine_packed_sets_and_dicts_round_trip() -> None:
    from rpyc_ipy.remote import values

    for value in ({-1, -2, (3, -1), (3, -2)}, frozenset(range(10_000)),
                  {k: str(k) for k in range(10_000)}, {"a": {1, 2}, (0, -1): [frozenset()]}):
        assert values.unpack(values.pack(value)) == value
