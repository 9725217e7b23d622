"""RPyC's ``rpyc.utils``: the module paths RPyC code imports, over our own layout.

``rpyc_ipy.utils.server``, ``.classic``, ``.helpers``, ``.factory``,
``.authenticators``, ``.registry`` and ``.teleportation`` carry the public names
of their RPyC 6.0.2 namesakes (tests/compat/test_module_paths.py lists the few
that are left out, and why). Porting RPyC code is renaming ``rpyc`` to
``rpyc_ipy`` in its imports. The submodules load on first use.
"""

import importlib
from typing import Any

from rpyc_ipy.core.policy import DEFAULT_CONFIG
from rpyc_ipy.core.service import exposed, service

SUBMODULES = ("authenticators", "classic", "factory", "helpers", "registry", "server",
              "teleportation")

__all__ = ["DEFAULT_CONFIG", "exposed", "service", *SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
