"""Slots for connections that have not logged in yet, per source address and in total.

A connection takes a slot when it is accepted and gives it back once it is
established (authenticated, or it sent a valid message) or closed. A host that
opens many connections and stays silent fills only its own share, so it cannot
crowd out other hosts' logins, and established sessions never count here.
"""

from __future__ import annotations

import threading
from typing import Any

from rpyc_ipy.errors import UsageError

__all__ = ["PendingSlots", "Slot", "address_key"]


def address_key(address: Any) -> str:
    """What connections are counted by: the host of an IP peer, else the whole address
    (a Unix socket's peers all count as one)."""
    return str(address[0]) if isinstance(address, tuple) and address else str(address)


class Slot:
    """One pending connection's place; :meth:`release` gives it back (once)."""

    def __init__(self, slots: PendingSlots, key: str) -> None:
        self._slots = slots
        self._key: str | None = key

    def release(self) -> None:
        self._slots._give_back(self)

    def take_key(self) -> str | None:
        """The key this slot holds, and forget it (so a second release does nothing)."""
        key, self._key = self._key, None
        return key


class PendingSlots:
    """At most ``max_total`` pending connections, ``max_per_address`` from one host."""

    def __init__(self, max_total: int, max_per_address: int) -> None:
        for name, value in (("max_pending_connections", max_total),
                            ("max_pending_per_address", max_per_address)):
            if type(value) is not int or value < 1:
                raise UsageError(f"{name} must be a whole number >= 1, not {value!r}")
        self.max_total = max_total
        self.max_per_address = max_per_address
        self._by_key: dict[str, int] = {}
        self._total = 0
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        return self._total

    def count(self, key: str) -> int:
        return self._by_key.get(key, 0)

    def take(self, address: Any) -> Slot | str:
        """A slot for a connection from ``address``, or why there is none."""
        key = address_key(address)
        with self._lock:
            held = self._by_key.get(key, 0)
            if held >= self.max_per_address:
                return (f"{held} connections from {key} have not logged in yet "
                        f"(max_pending_per_address={self.max_per_address})")
            if self._total >= self.max_total:
                return (f"{self._total} connections have not logged in yet "
                        f"(max_pending_connections={self.max_total})")
            self._by_key[key] = held + 1
            self._total += 1
        return Slot(self, key)

    def _give_back(self, slot: Slot) -> None:
        with self._lock:
            key = slot.take_key()
            if key is None:
                return
            self._total -= 1
            held = self._by_key[key] - 1
            if held:
                self._by_key[key] = held
            else:
                del self._by_key[key]
