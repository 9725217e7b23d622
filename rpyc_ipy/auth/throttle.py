"""Login throttling: few password guesses per source address and per user name.

:class:`LoginThrottle` keeps a failure count for each source address and for each
user name that was tried, whether or not such a user exists (so throttling tells
nobody which names are real). A login counts as a failure from the moment it names
a user until it succeeds: concurrent guesses cannot slip in before the first one
fails. The first ``free_failures`` failures may come back to back; the last of them
locks its address and its user name for ``base_delay`` seconds, and each further
failure for twice as long as the one before (``base_delay * 2**(failures -
free_failures)``), at most ``max_delay``. A login attempted while either is locked
is refused at once, before any password is checked. One failure is
forgotten every ``forget_after`` seconds. A success forgets the user name's
failures, takes back its own count from the address and lifts the lock it set.

Refusing instead of sleeping holds no thread and no connection, so the throttle
cannot be turned into a way to tie up the server. Both tables keep at most
``max_tracked`` entries, the least recently touched ones going first.

IPv6 peers are counted per /64 network (one host usually owns a whole one), IPv4
peers per address.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, NamedTuple

from rpyc_ipy.errors import ConfigError

__all__ = [
    "DEFAULT_BASE_DELAY",
    "DEFAULT_FORGET_AFTER",
    "DEFAULT_FREE_FAILURES",
    "DEFAULT_MAX_DELAY",
    "DEFAULT_MAX_TRACKED",
    "LoginThrottle",
    "Refusal",
    "ThrottleState",
    "address_key",
    "printable_name",
]

DEFAULT_FREE_FAILURES = 5
DEFAULT_BASE_DELAY = 1.0
#: one guess per 5 minutes per address and per user name once the cap is reached
DEFAULT_MAX_DELAY = 300.0
DEFAULT_FORGET_AFTER = 300.0
DEFAULT_MAX_TRACKED = 10_000
#: characters of a peer-chosen name that reach a log line
NAME_LOG_CHARS = 64


class Refusal(NamedTuple):
    """Why an attempt was refused: ``kind`` is ``"address"`` or ``"user"``; ``wait``
    is how many seconds the lock has left."""

    kind: str
    wait: float


class ThrottleState(NamedTuple):
    """What the throttle holds for one key: failures not yet forgotten, seconds of
    lock left (0 when not locked)."""

    failures: int
    locked_for: float


@dataclass(slots=True)
class _Entry:
    failures: int = 0
    since: float = 0.0  # the time the oldest unforgotten failure started to decay
    locked_until: float = -math.inf


class _Table:
    """Entries by key, bounded: the least recently touched one goes first."""

    def __init__(self, max_entries: int, forget_after: float) -> None:
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._max = max_entries
        self._forget_after = forget_after

    def __len__(self) -> int:
        return len(self._entries)

    def current(self, key: Hashable, now: float) -> _Entry | None:
        """The entry of ``key`` with forgotten failures dropped (None if nothing is left)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.failures:
            forgotten = int((now - entry.since) // self._forget_after)
            if forgotten > 0:
                entry.failures = max(0, entry.failures - forgotten)
                entry.since += forgotten * self._forget_after
        if entry.failures == 0 and entry.locked_until <= now:
            del self._entries[key]
            return None
        return entry

    def touch(self, key: Hashable, now: float) -> _Entry:
        """The entry of ``key``, created if missing, now the most recently used."""
        entry = self.current(key, now)
        if entry is None:
            if len(self._entries) >= self._max:
                self._entries.popitem(last=False)
            entry = self._entries[key] = _Entry(since=now)
        else:
            self._entries.move_to_end(key)
        return entry

    def forget(self, key: Hashable) -> None:
        self._entries.pop(key, None)


def _positive(value: object, name: str, *, integer: bool = False) -> Any:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0 \
            or not math.isfinite(value):
        what = "a whole number" if integer else "a number"
        raise ConfigError(f"LoginThrottle({name}={value!r}): give {what} above 0")
    return value


class LoginThrottle:
    """Failure counts per source address and per user name; see the module docstring.

    Thread-safe. ``clock`` (default ``time.monotonic``) is what the throttle reads the
    time from, so tests and simulations can move time forward.
    """

    def __init__(
        self,
        *,
        free_failures: int = DEFAULT_FREE_FAILURES,
        base_delay: float = DEFAULT_BASE_DELAY,
        max_delay: float = DEFAULT_MAX_DELAY,
        forget_after: float = DEFAULT_FORGET_AFTER,
        max_tracked: int = DEFAULT_MAX_TRACKED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free_failures: int = _positive(free_failures, "free_failures", integer=True)
        self.base_delay = float(_positive(base_delay, "base_delay"))
        self.max_delay = float(_positive(max_delay, "max_delay"))
        self.forget_after = float(_positive(forget_after, "forget_after"))
        self.max_tracked: int = _positive(max_tracked, "max_tracked", integer=True)
        if self.base_delay > self.max_delay:
            raise ConfigError(f"LoginThrottle: base_delay {base_delay!r} is more than "
                              f"max_delay {max_delay!r}")
        self._clock = clock
        self._lock = threading.Lock()
        self._addresses = _Table(self.max_tracked, self.forget_after)
        self._users = _Table(self.max_tracked, self.forget_after)

    def delay(self, failures: int) -> float:
        """Seconds a key is locked after its ``failures``-th failure (0: not locked)."""
        if failures < self.free_failures:
            return 0.0
        # the exponent is bounded so a long siege cannot overflow the float
        step = min(failures - self.free_failures, 64)
        return min(self.max_delay, self.base_delay * 2.0**step)

    def attempt(self, address: Hashable, user: Hashable) -> Refusal | None:
        """Start a login of ``user`` from ``address``: a :class:`Refusal` if either is
        locked (nothing is counted then), else None and the attempt counts as a
        failure until :meth:`succeeded` says otherwise."""
        with self._lock:
            now = self._clock()
            counted = ((self._addresses, address, "address"), (self._users, user, "user"))
            for table, key, kind in counted:
                entry = table.current(key, now)
                if entry is not None and entry.locked_until > now:
                    return Refusal(kind, entry.locked_until - now)
            for table, key, _kind in counted:
                entry = table.touch(key, now)
                if entry.failures == 0:
                    entry.since = now
                entry.failures += 1
                wait = self.delay(entry.failures)
                if wait:
                    entry.locked_until = max(entry.locked_until, now + wait)
            return None

    def succeeded(self, address: Hashable, user: Hashable) -> None:
        """The attempt :meth:`attempt` let through logged in: forget ``user``'s
        failures and take back the one counted for ``address``."""
        with self._lock:
            now = self._clock()
            self._users.forget(user)
            entry = self._addresses.current(address, now)
            if entry is None:
                return
            entry.failures = max(0, entry.failures - 1)
            # The lock this attempt set was for a failure that did not happen (an
            # older one had ended, or the attempt would have been refused); the next
            # failure locks again at the count that is left.
            entry.locked_until = -math.inf
            self._addresses.current(address, now)  # drops the entry if nothing is left

    def state(self, *, address: Hashable = None, user: Hashable = None) -> ThrottleState:
        """What is held for ``address`` or for ``user`` (give exactly one)."""
        if (address is None) == (user is None):
            raise TypeError("state() takes exactly one of address= or user=")
        with self._lock:
            now = self._clock()
            table, key = (self._addresses, address) if user is None else (self._users, user)
            entry = table.current(key, now)
            if entry is None:
                return ThrottleState(0, 0.0)
            return ThrottleState(entry.failures, max(0.0, entry.locked_until - now))

    def tracked(self) -> tuple[int, int]:
        """How many addresses and user names are held (each at most ``max_tracked``)."""
        with self._lock:
            return len(self._addresses), len(self._users)

    def __repr__(self) -> str:
        addresses, users = self.tracked()
        return (f"<LoginThrottle free={self.free_failures} max_delay={self.max_delay:g}s "
                f"tracking {addresses} addresses, {users} user names>")


def address_key(peer: Any) -> str:
    """The throttling key of a peer address as ``getpeername()`` gives it.

    IPv4 addresses stand for themselves (IPv4-mapped IPv6 ones too); IPv6 addresses
    for their /64; anything else (a Unix socket) is ``"local"``.
    """
    host = peer[0] if isinstance(peer, tuple) and peer else peer
    if not isinstance(host, str):
        return "local"
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return "local"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def printable_name(raw: bytes | bytearray | str, limit: int = NAME_LOG_CHARS) -> str:
    """A name a peer chose, made safe for a log line: quoted, at most ``limit``
    characters, control and other invisible characters escaped (``\\x1b``)."""
    text = raw if isinstance(raw, str) else bytes(raw).decode("utf-8", "backslashreplace")
    if len(text) > limit:
        # repr() escapes every non-printable character, so nothing reaches a terminal raw
        return f"{text[:limit]!r}... ({len(text)} characters)"
    return repr(text)
