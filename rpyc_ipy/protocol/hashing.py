"""The hash-flooding guard: refuse a collection whose members crowd onto one hash value.

Building a set (or a dict) compares a new member with every member already there
that has the same hash value, so members that hash alike but differ make the
build quadratic: 60,000 multiples of ``2**61 - 1`` (all of which hash to 0) take
Python about 15 s to put in a frozenset. A peer chooses such values freely: ints
hash to themselves modulo ``2**61 - 1``, ``-1`` and ``-2`` share a hash, and
floats, complex numbers, tuples and frozensets hash through the hashes of ints.

:func:`check_spread` looks at the hash values of the would-be members first, in
linear time, and refuses the collection when

* more than ``limit`` members share one hash value (repeats included: an
  encoder never repeats a member of a set), or
* two members that hold a frozenset (themselves, or inside tuples or slices)
  share a hash value: comparing two frozensets compares their members, which may
  collide again one level down, and so on, quadratic in the frame however
  small ``limit`` is.

With both rules, building the set compares each member with at most ``limit``
others, and never compares two frozensets: linear in the size of the members.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from rpyc_ipy.errors import LimitExceeded

__all__ = ["check_spread"]


def check_spread(items: Sequence[Any], limit: int, what: str) -> None:
    """Raise :class:`LimitExceeded` if ``items`` would flood a set (see the module);
    ``what`` names the collection in the message. ``TypeError`` for an unhashable item."""
    hashes = list(map(hash, items))
    # distinct hash values are distinct keys here: an int hash value hashes to
    # itself, and a str's value to itself modulo 2**61 - 1 (a few values at most)
    if len(set(hashes)) == len(hashes):
        return
    counts = Counter(hashes)
    crowd = max(counts.values())
    if crowd > limit:
        raise LimitExceeded(
            f"{what} has {crowd} members with one hash value (more than "
            f"max_hash_collisions={limit}): refused as hash flooding")
    shared = {value for value, count in counts.items() if count > 1}
    nested = Counter(value for value, item in zip(hashes, items, strict=True)
                     if value in shared and _holds_frozenset(item))
    if nested and max(nested.values()) > 1:
        raise LimitExceeded(
            f"{what} has two members holding frozensets with one hash value: "
            "refused as hash flooding")


def _holds_frozenset(value: Any) -> bool:
    t = type(value)
    if t is frozenset:
        return True
    if t is tuple:
        return any(map(_holds_frozenset, value))
    if t is slice:
        return any(map(_holds_frozenset, (value.start, value.stop, value.step)))
    return False
