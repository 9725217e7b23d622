"""The session namespace as an object, for the client's ``sess.ns``.

Pure standard library: also shipped by source to classic peers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["NamespaceView"]

# dunders a NamespaceView answers for itself (the rest of its names are the namespace's)
_VIEW_DUNDERS = frozenset({"__len__", "__iter__", "__contains__", "__getitem__", "__setitem__",
                           "__delitem__", "__repr__", "__str__", "__dir__"})


class NamespaceView:
    """The session namespace as an object: ``sess.ns.x`` is the remote ``x``.

    Attribute access reads and writes namespace entries; ``dir()`` lists them;
    ``keys()``, ``len()``, ``in`` and ``[...]`` work as on a dict. Names the shell put
    there itself (``hidden``: IPython's ``In``, ``Out``, ``exit``...) are not listed
    while they still hold what the shell put there.
    """

    __slots__ = ("_hidden", "_namespace")

    def __init__(self, namespace: dict[str, Any], hidden: Mapping[str, Any]) -> None:
        self._namespace = namespace
        self._hidden = hidden

    def _rpyc_getattr(self, name: str) -> Any:
        if name in _VIEW_DUNDERS or name == "keys":
            return getattr(self, name)
        try:
            return self._namespace[name]
        except KeyError:
            raise AttributeError(f"the remote namespace has no {name!r}") from None

    def _rpyc_setattr(self, name: str, value: Any) -> None:
        if not name.isidentifier() or name.startswith("__"):
            raise AttributeError(f"cannot bind {name!r}")
        self._namespace[name] = value

    def _rpyc_delattr(self, name: str) -> None:
        try:
            del self._namespace[name]
        except KeyError:
            raise AttributeError(name) from None

    def keys(self) -> tuple[str, ...]:
        hidden = self._hidden
        return tuple(k for k, v in tuple(self._namespace.items()) if k != "__builtins__" and not
                     (k in hidden and hidden[k] is v))

    def __dir__(self) -> list[str]:
        return sorted(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __contains__(self, name: object) -> bool:
        return name in self._namespace and name != "__builtins__"

    def __getitem__(self, name: str) -> Any:
        if name == "__builtins__":
            raise KeyError(name)
        return self._namespace[name]

    def __setitem__(self, name: str, value: Any) -> None:
        self._rpyc_setattr(name, value)

    def __delitem__(self, name: str) -> None:
        del self._namespace[name]

    def __repr__(self) -> str:
        return f"<remote namespace: {len(self)} names>"

    __str__ = __repr__
