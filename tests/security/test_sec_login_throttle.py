"""Password guessing against TLS-SRP (issue 13, item 6).

Before: 400 wrong passwords at 54/s from one client, no slowdown, and the right one
worked at once afterwards. Now :class:`~rpyc_ipy.auth.throttle.LoginThrottle` locks
an address and a user name after a few failures, for exponentially longer, and the
server refuses a login from a locked address or for a locked name before it checks
any password, the same way for a user that exists and one that does not.

The throttle reads its time from an injected clock, so nothing here sleeps: time
moves when a test says so. Real TLS-SRP handshakes cost tens of milliseconds each,
so the logic is tested as a unit and only a few real logins run.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

import pytest
from seckit import CLIENT_CONFIG, WAIT
from waitkit import wait_until

import rpyc_ipy
from rpyc_ipy.auth.srp_client import srp_client_socket
from rpyc_ipy.auth.srp_server import SRPAuthenticator
from rpyc_ipy.auth.srp_socket import BAD_CREDENTIALS, THROTTLED, run_handshake, srp_settings
from rpyc_ipy.auth.throttle import LoginThrottle, Refusal, address_key, printable_name
from rpyc_ipy.auth.userdb import UserDB
from rpyc_ipy.errors import AuthenticationError, ConfigError

ALICE_PW = "correct horse"  # the userdb fixture's alice; bob's is "battery staple"


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- the throttle alone -------------------------------------------------------------


def test_free_failures_then_doubling_locks_up_to_the_cap() -> None:
    clock = Clock()
    # nothing is forgotten during this test, so only the doubling shows
    throttle = LoginThrottle(free_failures=5, base_delay=1.0, max_delay=300.0,
                             forget_after=1e9, clock=clock)
    for n in range(1, 5):
        assert throttle.attempt("10.0.0.1", b"alice") is None
        assert throttle.state(address="10.0.0.1") == (n, 0.0)
    # the fifth failure is the last free one: it locks the address and the name for 1 s
    assert throttle.attempt("10.0.0.1", b"alice") is None
    assert throttle.state(address="10.0.0.1") == (5, 1.0)
    assert throttle.state(user=b"alice") == (5, 1.0)
    assert throttle.attempt("10.0.0.1", b"alice") == Refusal("address", 1.0)
    clock.advance(0.5)
    assert throttle.attempt("10.0.0.1", b"alice") == Refusal("address", 0.5)
    # each later failure doubles the lock, up to max_delay
    locks = []
    for _ in range(12):
        clock.advance(throttle.state(address="10.0.0.1").locked_for)
        assert throttle.attempt("10.0.0.1", b"alice") is None
        locks.append(throttle.state(address="10.0.0.1").locked_for)
    assert locks == [2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0, 300.0, 300.0, 300.0]
    # refused attempts count nothing: hammering a locked address does not lengthen its lock
    failures = throttle.state(address="10.0.0.1").failures
    for _ in range(100):
        assert throttle.attempt("10.0.0.1", b"alice") is not None
    assert throttle.state(address="10.0.0.1") == (failures, 300.0)


def test_unknown_and_existing_names_are_throttled_alike() -> None:
    # The throttle never asks the user database: a name is a name. (The real
    # handshakes below show the server treats both alike on the wire.)
    throttle = LoginThrottle(free_failures=3, clock=Clock())
    seen: dict[bytes, list[Any]] = {b"alice": [], b"no-such-user": []}
    for name, trail in seen.items():
        for _ in range(5):
            trail.append(throttle.attempt(f"10.0.0.{len(name)}", name))
            trail.append(throttle.state(user=name))
    assert seen[b"alice"] == seen[b"no-such-user"]


def test_one_locked_address_or_name_leaves_the_others_alone() -> None:
    throttle = LoginThrottle(free_failures=2, clock=Clock())
    for _ in range(2):
        throttle.attempt("10.0.0.1", b"mallory")
    assert throttle.attempt("10.0.0.1", b"bob") == Refusal("address", 1.0)
    assert throttle.attempt("10.0.0.2", b"mallory") == Refusal("user", 1.0)
    assert throttle.attempt("10.0.0.2", b"bob") is None  # another address, another name


def test_failures_are_forgotten_one_per_period() -> None:
    clock = Clock()
    throttle = LoginThrottle(free_failures=5, forget_after=60.0, clock=clock)
    for _ in range(6):  # the first at t=0, the sixth after the 1 s lock, at t=1
        clock.advance(throttle.state(address="10.0.0.1").locked_for)
        assert throttle.attempt("10.0.0.1", b"alice") is None
    assert throttle.state(address="10.0.0.1") == (6, 2.0)
    # one failure is forgotten per 60 s, counted from the first one
    clock.advance(58.5)
    assert throttle.state(address="10.0.0.1").failures == 6
    clock.advance(0.5)
    assert throttle.state(address="10.0.0.1") == (5, 0.0)
    clock.advance(2 * 60.0)
    assert throttle.state(address="10.0.0.1") == (3, 0.0)
    # an attempt now locks at the count that is left (the fourth failure: no lock)
    assert throttle.attempt("10.0.0.1", b"bob") is None
    assert throttle.state(address="10.0.0.1") == (4, 0.0)
    clock.advance(4 * 60.0)
    assert throttle.state(address="10.0.0.1") == (0, 0.0)
    assert throttle.state(user=b"alice") == (0, 0.0)
    assert throttle.state(user=b"bob") == (0, 0.0)
    assert throttle.tracked() == (0, 0), "nothing is kept for a forgotten address"


def test_success_forgets_the_name_and_refunds_the_address() -> None:
    clock = Clock()
    throttle = LoginThrottle(free_failures=5, clock=clock)
    for _ in range(4):
        throttle.attempt("10.0.0.1", b"alice")
    # the fifth attempt is the right password: it counted (and locked) while running
    assert throttle.attempt("10.0.0.1", b"alice") is None
    assert throttle.state(address="10.0.0.1") == (5, 1.0)
    throttle.succeeded("10.0.0.1", b"alice")
    assert throttle.state(user=b"alice") == (0, 0.0)
    assert throttle.state(address="10.0.0.1") == (4, 0.0)
    assert throttle.attempt("10.0.0.1", b"alice") is None  # no lock left behind


def test_concurrent_guesses_count_before_they_finish() -> None:
    # 40 guesses started at once: only free_failures of them get through, because
    # each one counts as a failure from the moment it names its user
    throttle = LoginThrottle(free_failures=5, clock=Clock())
    start = threading.Barrier(40)
    results: list[Refusal | None] = []
    lock = threading.Lock()

    def guess() -> None:
        start.wait(WAIT)
        outcome = throttle.attempt("10.0.0.1", b"alice")
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=guess) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert len(results) == 40
    assert results.count(None) == 5


def test_tables_are_bounded_and_drop_the_oldest() -> None:
    throttle = LoginThrottle(max_tracked=100, clock=Clock())
    for i in range(10_000):
        throttle.attempt(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}", f"user{i}".encode())
    assert throttle.tracked() == (100, 100)
    assert throttle.state(user=b"user9999").failures == 1  # the newest is kept
    assert throttle.state(user=b"user0").failures == 0  # the oldest went first
    # one step over the bound: max_tracked + 1 keys keep max_tracked
    small = LoginThrottle(max_tracked=3, clock=Clock())
    for i in range(4):
        small.attempt(f"10.0.0.{i}", b"x")
    assert small.tracked() == (3, 1)


def test_throttle_settings_are_checked() -> None:
    for bad in ({"free_failures": 0}, {"free_failures": 2.5}, {"free_failures": True},
                {"max_delay": 0}, {"base_delay": -1.0}, {"forget_after": float("inf")},
                {"max_tracked": 0}, {"base_delay": 10.0, "max_delay": 5.0}):
        with pytest.raises(ConfigError, match="LoginThrottle"):
            LoginThrottle(**bad)


def test_address_keys() -> None:
    assert address_key(("192.0.2.7", 5000)) == "192.0.2.7"
    assert address_key(("::ffff:192.0.2.7", 5000, 0, 0)) == "192.0.2.7"
    # one IPv6 host usually owns a whole /64: it is one address to the throttle
    assert address_key(("2001:db8:1:2::1", 1, 0, 0)) == address_key(("2001:db8:1:2:ffff::9", 1))
    assert address_key(("2001:db8:1:2::1", 1, 0, 0)) == "2001:db8:1:2::/64"
    assert address_key(("2001:db8:1:3::1", 1, 0, 0)) != "2001:db8:1:2::/64"
    assert address_key("") == address_key("/tmp/socket") == "local"  # Unix sockets


def test_printable_name() -> None:
    assert printable_name(b"alice") == "'alice'"
    shown = printable_name(b"eve\x1b]52;c;aGk=\x07\n\xe2\x80\xae\xff")
    assert shown == "'eve\\x1b]52;c;aGk=\\x07\\n\\u202e\\\\xff'"
    assert shown.isprintable()
    long = printable_name("x" * 255)
    assert long == f"{'x' * 64!r}... (255 characters)"


# -- real TLS-SRP logins on 127.0.0.1 ------------------------------------------------


def srp_login(port: int, user: str, password: str, source: str = "127.0.0.1"
              ) -> rpyc_ipy.Connection:
    """A TLS-SRP connection to 127.0.0.1:``port`` from the local address ``source``."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT,
                                    source_address=(source, 0))
    tls = srp_client_socket(sock, user, password, WAIT)
    return rpyc_ipy.connect_socket(tls, config=CLIENT_CONFIG)


def refused(port: int, user: str, password: str, source: str = "127.0.0.1") -> str:
    """The client's error text of a login that must fail."""
    with pytest.raises(AuthenticationError) as info:
        srp_login(port, user, password, source)
    return str(info.value)


def server_lines(caplog: pytest.LogCaptureFixture, count: int) -> list[str]:
    """The server's failed-login log lines, once there are ``count`` of them."""

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.name == "rpyc_ipy.server" and "authentication failed" in r.getMessage()]

    wait_until(lambda: len(lines()) >= count, WAIT, what=f"{count} failed-login log lines")
    return lines()


def test_guessing_is_refused_until_the_lock_ends(userdb: UserDB, serve: Any,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="rpyc_ipy.server")
    clock = Clock()
    throttle = LoginThrottle(free_failures=2, base_delay=30.0, max_delay=600.0, clock=clock)
    server = serve(authenticator=SRPAuthenticator(userdb, throttle=throttle))
    assert refused(server.port, "alice", "guess one") == BAD_CREDENTIALS
    assert refused(server.port, "alice", "guess two") == BAD_CREDENTIALS
    # locked: even the right password is refused, before the server checks it
    assert refused(server.port, "alice", ALICE_PW) == THROTTLED
    assert throttle.state(address="127.0.0.1") == (2, 30.0)
    assert throttle.state(user=b"alice") == (2, 30.0)
    # another address and another user are served meanwhile, by the same server
    with srp_login(server.port, "bob", "battery staple", source="127.0.0.2") as bob:
        assert bob.root.ping() == "pong"
        # the name is locked wherever it is tried from
        assert refused(server.port, "alice", ALICE_PW, source="127.0.0.3") == THROTTLED
    # the server threads log in whatever order they finish
    tails = sorted(line.split(": ", 1)[1] for line in server_lines(caplog, 4))
    assert tails == sorted(
        [f"{BAD_CREDENTIALS} (user 'alice')"] * 2 + [
            "TLS-SRP login refused: too many failed logins; this address is locked for "
            "30.0 s more (user 'alice')",
            "TLS-SRP login refused: too many failed logins; this user name is locked for "
            "30.0 s more (user 'alice')"])
    # once the lock has run out (the injected clock moves), the right password works
    clock.advance(30.0)
    with srp_login(server.port, "alice", ALICE_PW) as alice:
        assert alice.root.ping() == "pong"
    assert throttle.state(user=b"alice") == (0, 0.0)


def test_unknown_user_and_wrong_password_look_the_same(userdb: UserDB, serve: Any,
                                                       caplog: pytest.LogCaptureFixture
                                                       ) -> None:
    caplog.set_level(logging.INFO, logger="rpyc_ipy.server")
    throttle = LoginThrottle(free_failures=1, clock=Clock())
    server = serve(authenticator=SRPAuthenticator(userdb, throttle=throttle))
    known = [refused(server.port, "alice", "wrong password", "127.0.0.1"),
             refused(server.port, "alice", "wrong password", "127.0.0.1")]
    unknown = [refused(server.port, "mallory", "any password", "127.0.0.2"),
               refused(server.port, "mallory", "any password", "127.0.0.2")]
    # same client text for the failure and for the refusal that follows it
    assert known == unknown == [BAD_CREDENTIALS, THROTTLED]
    assert throttle.state(user=b"alice") == throttle.state(user=b"mallory") == (1, 1.0)
    # and the same path on the server: both named a user (so the throttle counted
    # them) and failed the same way; only the name differs in the log
    tails = [line.split(": ", 1)[1] for line in server_lines(caplog, 4)]
    alice = sorted(t for t in tails if "'alice'" in t)
    mallory = sorted(t.replace("'mallory'", "'alice'") for t in tails if "'mallory'" in t)
    assert alice == mallory and len(alice) == 2


def test_failed_login_log_names_the_user_escaped(userdb: UserDB, serve: Any,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    # our client refuses control characters in a name; a hostile one sends them anyway
    caplog.set_level(logging.INFO, logger="rpyc_ipy.server")
    server = serve(authenticator=SRPAuthenticator(userdb))
    name = b"eve\x1b[2J\x1b]0;pwned\x07\n" + b"A" * 200
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)

    def start(conn: Any) -> Any:
        return conn.handshakeClientSRP(bytearray(name), bytearray(b"some password"),
                                       settings=srp_settings(), async_=True)

    with pytest.raises(AuthenticationError, match="wrong username or password"):
        run_handshake(sock, start, WAIT, "eve")
    line = server_lines(caplog, 1)[0]
    shown = "eve\\x1b[2J\\x1b]0;pwned\\x07\\n" + "A" * 46  # 64 characters of the name
    assert f"(user '{shown}'... ({len(name)} characters))" in line
    assert line.isprintable(), "no control character of the name reaches the log"
