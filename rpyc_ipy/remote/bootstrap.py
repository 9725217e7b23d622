"""Ship the engine to a classic server by source, so ``%%remote`` works there too.

A classic RPyC server (ours, or ``rpyc_classic``/``rpyc.core.SlaveService``) lets
its client run any code: that is what classic mode is. The client uses that to
load :mod:`rpyc_ipy.remote.engine` and its helpers into the server process,
under a private package name, and to build an
:class:`~rpyc_ipy.remote.engine.Engine` on the classic namespace::

    engine = install_engine(conn)          # a netref; a few requests, once per process
    engine.start("print(1)", emit, ())     # same API as the execution service

The modules are pure standard library, so the server needs nothing installed.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from typing import Any

__all__ = ["ENGINE_MODULES", "LOADER_SOURCE", "engine_sources", "install_engine"]

#: the engine's modules, in dependency order
ENGINE_MODULES = ("values", "capture", "cancel", "joblog", "bundle", "introspect", "cells",
                  "namespace", "files", "engine")

# runs on the server: build the package from sources once per process
LOADER_SOURCE = '''
def load(key, sources, namespace, capture_fd):
    import sys, types
    package = sys.modules.get(key)
    if package is None:
        package = types.ModuleType(key)
        package.__path__ = []
        package.__package__ = key
        sys.modules[key] = package
        try:
            for name, source in sources:
                module = types.ModuleType(key + "." + name)
                module.__package__ = key
                module.__file__ = "<" + key + "/" + name + ".py>"
                sys.modules[module.__name__] = module
                exec(compile(source, module.__file__, "exec"), module.__dict__)
                setattr(package, name, module)
        except BaseException:
            for name in [m for m in sys.modules if m == key or m.startswith(key + ".")]:
                del sys.modules[name]
            raise
    info = {"service": "classic", "user": None,
            "grants": (("classic", "full control of the server process"),)}
    return package.engine.Engine(namespace, capture_fd=capture_fd, allow_pickle=True, info=info)
'''


def engine_sources() -> tuple[tuple[str, str], ...]:
    """``(module name, source)`` of every engine module."""
    out = []
    for name in ENGINE_MODULES:
        module = importlib.import_module(f"{__package__}.{name}")
        out.append((name, inspect.getsource(module)))
    return tuple(out)


def install_engine(conn: Any, *, capture_fd: bool = True) -> Any:
    """Load the engine into a classic peer (once per process) and build one on its
    namespace; returns the remote :class:`Engine` as a netref."""
    sources = engine_sources()
    digest = hashlib.sha256(repr(sources).encode()).hexdigest()[:12]
    scratch = conn.builtins.dict()
    conn.builtins.exec(LOADER_SOURCE, scratch)
    load = scratch["load"]
    return load(f"_rpyc_ipy_engine_{digest}", sources, conn.namespace, capture_fd)
