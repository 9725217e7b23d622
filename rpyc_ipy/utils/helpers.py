"""RPyC's ``rpyc.utils.helpers``: async and timed calls, buffered iteration,
background serving, ``restricted`` and ``classpartial``."""

from __future__ import annotations

import functools
from typing import Any, TypeVar

from rpyc_ipy.core.helpers import BgServingThread, async_, buffiter, timed
from rpyc_ipy.core.service import restricted
from rpyc_ipy.lib import asyncreq, spawn, syncreq
from rpyc_ipy.protocol.consts import HANDLE_BUFFITER, HANDLE_CALL

__all__ = ["HANDLE_BUFFITER", "HANDLE_CALL", "BgServingThread", "async_", "asyncreq",
           "buffiter", "classpartial", "restricted", "spawn", "syncreq", "timed"]


T = TypeVar("T")


def classpartial(cls: type[T], /, *args: Any, **kwargs: Any) -> type[T]:
    """``cls`` with ``args``/``kwargs`` bound to its ``__init__``: give it to a server,
    which makes one instance per connection, to pass a service its settings::

        server = ThreadedServer(classpartial(MyService, db=db), port=0)
    """
    init = cls.__init__  # the class's own (or inherited) __init__
    partial = type(cls.__name__, (cls,), {
        "__init__": functools.partialmethod(init, *args, **kwargs),
        "__doc__": cls.__doc__,
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
    })
    return partial
