"""Lazy module attributes: import a heavy submodule only when its name is first used."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(module: str, table: dict[str, str], namespace: dict[str, Any]
                    ) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562): ``name`` comes from the module ``table[name]``
    on first use and is then cached in ``namespace`` (the module's globals)."""

    def __getattr__(name: str) -> Any:
        source = table.get(name)
        if source is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source), name)
        namespace[name] = value
        return value

    return __getattr__
