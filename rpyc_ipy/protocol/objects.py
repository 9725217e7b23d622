"""The export table: objects this side has handed to the peer by reference.

An exported object is named by its *id_pack* ``(name_pack, class_id, instance_id)``
(wire spec §6.4) and reference counted with RPyC's exact rules (wire spec §6.5): the first
export stores a count of 0, each re-export adds 1, and ``release(id_pack, n)``
drops the entry when the stored count is below ``n``, else subtracts ``n``.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

from rpyc_ipy.errors import LimitExceeded

__all__ = ["ExportTable", "IdPack", "id_pack_of"]

IdPack = tuple[str, int, int]


def id_pack_of(obj: object) -> IdPack:
    """The id_pack RPyC 6.0.2 computes for a local object (wire spec §6.4)."""
    if inspect.ismodule(obj):
        name = obj.__name__
        if name not in sys.modules:
            name = f"{type(obj).__module__}.{name}"
        return (name, id(type(obj)), id(obj))
    if inspect.isclass(obj):
        return (f"{obj.__module__}.{obj.__name__}", id(obj), 0)
    cls = type(obj)
    return (f"{cls.__module__}.{cls.__name__}", id(cls), id(obj))


class ExportTable:
    """id_pack -> [object, count]; bounded by ``max_objects``.

    Not thread safe by itself: the connection serialises access with its lock.
    """

    __slots__ = ("_entries", "max_objects")

    def __init__(self, max_objects: int = 1_000_000) -> None:
        self._entries: dict[IdPack, list[Any]] = {}
        self.max_objects = max_objects

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def export(self, obj: object, key: IdPack) -> None:
        """Record one more reference handed to the peer."""
        slot = self._entries.get(key)
        if slot is None:
            if len(self._entries) >= self.max_objects:
                raise LimitExceeded(
                    f"export table full: more than {self.max_objects} objects held by the peer"
                )
            self._entries[key] = [obj, 0]
        else:
            slot[1] += 1

    def lookup(self, key: object) -> Any:
        """The object the peer names with ``key``; ``KeyError`` if unknown."""
        return self._entries[key][0]  # type: ignore[index]

    def release(self, key: IdPack, count: int) -> None:
        """The peer dropped ``count`` references to the object."""
        slot = self._entries.get(key)
        if slot is None:
            raise KeyError(key)
        if slot[1] < count:
            del self._entries[key]
        else:
            slot[1] -= count

    def clear(self) -> None:
        self._entries.clear()

    def keys(self) -> list[IdPack]:
        return list(self._entries)
