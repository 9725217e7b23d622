"""Run an unmodified RPyC program on rpyc_ipy, for a trial::

    python -m rpyc_ipy.compat run prog.py [args ...]

For that process only, ``import rpyc`` (and ``rpyc.utils.server``,
``rpyc.core.netref`` ...) gives the rpyc_ipy module of the same path
(``rpyc.utils.classic`` gives :mod:`rpyc_ipy.classic`, which is ``rpyc.classic``).
Nothing is installed: other processes, including the program's children,
still import the real rpyc if they have it. To port for good, replace ``rpyc``
with ``rpyc_ipy`` in the imports.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.abc
import importlib.machinery
import runpy
import sys
from collections.abc import Sequence
from types import ModuleType

__all__ = ["RPYC_PATHS", "RpycAlias", "install_alias", "main", "run"]

#: rpyc module paths whose rpyc_ipy counterpart has another path (in rpyc,
#: ``rpyc.classic`` is ``rpyc.utils.classic``; ours is ``rpyc_ipy.classic``)
RPYC_PATHS = {"rpyc.utils.classic": "rpyc_ipy.classic"}


def counterpart(fullname: str) -> str | None:
    """The rpyc_ipy module standing for the rpyc module ``fullname``, if it is one."""
    if fullname != "rpyc" and not fullname.startswith("rpyc."):
        return None
    return RPYC_PATHS.get(fullname, "rpyc_ipy" + fullname[len("rpyc"):])


class RpycAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``rpyc`` and its submodules first and answers with the rpyc_ipy ones."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        target_name = counterpart(fullname)
        if target_name is None:
            return None
        try:
            module = importlib.import_module(target_name)
        except ModuleNotFoundError as exc:
            if exc.name != target_name:
                raise
            raise ModuleNotFoundError(
                f"{fullname} has no rpyc_ipy counterpart ({target_name}); see "
                "rpyc_ipy.utils for the module paths that have one", name=fullname) from None
        spec = importlib.machinery.ModuleSpec(fullname, self,
                                              is_package=hasattr(module, "__path__"))
        self._modules[fullname] = module
        return spec

    def __init__(self) -> None:
        self._modules: dict[str, ModuleType] = {}
        self._specs: dict[int, importlib.machinery.ModuleSpec | None] = {}

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        # the rpyc_ipy module itself: `rpyc.X` and `rpyc_ipy.X` are one object
        module = self._modules.pop(spec.name)
        self._specs[id(module)] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run (the module is already imported); give it back its own
        ``__spec__``, which the import system just overwrote with the alias's."""
        module.__spec__ = self._specs.pop(id(module))


def install_alias() -> RpycAlias:
    """Make ``rpyc`` mean rpyc_ipy in this process (first on ``sys.meta_path``)."""
    loaded = sorted(name for name in sys.modules if counterpart(name) is not None)
    if loaded:
        raise RuntimeError(f"rpyc is already imported in this process ({loaded[0]}); "
                           "the alias must be installed before any rpyc import")
    alias = RpycAlias()
    sys.meta_path.insert(0, alias)
    return alias


def run(program: str, args: Sequence[str]) -> None:
    """Run the script ``program`` as ``__main__`` with ``sys.argv[1:] = args``, rpyc aliased."""
    install_alias()
    sys.argv = [program, *args]
    runpy.run_path(program, run_name="__main__")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rpyc_ipy.compat",
        description="Run an unmodified RPyC program with `rpyc` imports served by rpyc_ipy "
                    "(this process only; nothing is installed).")
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="run PROGRAM with rpyc aliased to rpyc_ipy")
    run_parser.add_argument("program", metavar="PROGRAM", help="the Python script to run")
    run_parser.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    options = parser.parse_args(argv)
    run(options.program, options.args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
