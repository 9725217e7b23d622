"""The package's layers import one way, its modules form no import cycle, and the
modules shipped to a classic server import only the standard library.

Layers, bottom to top (a module may import from its own layer and the ones below)::

    errors, _lazy, _version < protocol < core, lib < transports, auth, servers
      < factory, classic, target, credentials, utils < remote < ipython, kernel
      < cli, demo, compat, the package root

``lib`` and ``utils`` are RPyC's module paths (``rpyc.lib``, ``rpyc.utils.*``) over our
layout: ``lib`` is small helpers beside the core, ``utils`` re-exports from the layer below.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import rpyc_ipy
from rpyc_ipy.remote import bootstrap

PACKAGE = Path(rpyc_ipy.__file__).parent

LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors", "_lazy", "_version"}),
    frozenset({"protocol"}),
    frozenset({"core", "lib"}),
    frozenset({"transports", "auth", "servers"}),
    frozenset({"factory", "classic", "target", "credentials", "utils"}),
    frozenset({"remote"}),
    frozenset({"ipython", "kernel"}),
    frozenset({"cli", "demo", "compat", "__init__", "__main__"}),
)


def _rank(module: str) -> int:
    """The layer of ``rpyc_ipy.<top>...``: its first component below the package."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    for rank, layer in enumerate(LAYERS):
        if top in layer:
            return rank
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _imports(module: str, path: Path, *, type_checking: bool) -> set[str]:
    """The rpyc_ipy modules ``module`` imports, at the top or inside functions;
    ``type_checking`` includes those made only for the type checker."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if _is_package(path) else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                if type_checking:
                    visit(child)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.startswith("rpyc_ipy"))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.rsplit(".", child.level - 1)[0] if child.level > 1 else package
                    target = f"{base}.{child.module}" if child.module else base
                else:
                    target = child.module or ""
                if target.startswith("rpyc_ipy"):
                    # `from pkg import mod` imports the submodule when there is one
                    for alias in child.names:
                        sub = f"{target}.{alias.name}"
                        found.add(sub if sub in KNOWN else target)
            visit(child)

    visit(tree)
    found.discard(module)
    return found


KNOWN = {name for name, _ in _modules()}


def test_every_package_imports_only_its_own_layer_and_the_ones_below() -> None:
    offenders = []
    for module, path in _modules():
        for target in _imports(module, path, type_checking=True):
            if _rank(target) > _rank(module):
                offenders.append(f"{module} imports {target}")
    assert not offenders, "imports against the layer order:\n" + "\n".join(offenders)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                connect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_no_import_cycles_between_modules() -> None:
    # an import made only for the type checker never runs, so it cannot close a cycle
    graph = {module: {t for t in _imports(module, path, type_checking=False) if t in KNOWN}
             for module, path in _modules()}
    # a package's __init__ importing its own submodules is how packages work, not a cycle
    for module in graph:
        graph[module] = {t for t in graph[module] if not t.startswith(module + ".")}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# -- what remote/bootstrap.py ships to a classic server -------------------------------

#: imported lazily and optionally on the server (cells run through IPython when it is there;
#: numpy, pandas and pyarrow by the functions that build or send an array or frame)
OPTIONAL_ON_THE_SERVER = {"IPython", "numpy", "pandas", "pyarrow"}


@pytest.mark.parametrize("name", bootstrap.ENGINE_MODULES)
def test_shipped_modules_import_only_the_standard_library(name: str) -> None:
    path = PACKAGE / "remote" / f"{name}.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                assert node.level == 1, f"{name}: {ast.unparse(node)}"
                siblings = {node.module} if node.module else {a.name for a in node.names}
                assert siblings <= set(bootstrap.ENGINE_MODULES), f"{name}: {ast.unparse(node)}"
                continue
            roots = {(node.module or "").partition(".")[0]}
        else:
            continue
        outside = roots - set(sys.stdlib_module_names) - OPTIONAL_ON_THE_SERVER
        assert not outside, f"{name} imports {sorted(outside)}: the server may not have them"
        if node in tree.body:  # at import time: the standard library only
            assert not roots & OPTIONAL_ON_THE_SERVER, f"{name}: {ast.unparse(node)} at the top"


def test_the_shipped_engine_runs_where_only_the_standard_library_is() -> None:
    """-I -S: no site-packages (so no rpyc_ipy, no IPython), no user paths."""
    import json

    script = textwrap.dedent("""
        import json, sys
        sources = json.loads(sys.stdin.read())
        loader = {}
        exec(sources.pop("__loader__"), loader)
        ns = {}
        engine = loader["load"]("_shipped", list(sources.items()), ns, False)
        assert "rpyc_ipy" not in sys.modules and "IPython" not in sys.modules
        engine.execute("x = 6 * 7")
        print(ns["x"])
    """)
    payload = dict(bootstrap.engine_sources())
    payload["__loader__"] = bootstrap.LOADER_SOURCE
    done = subprocess.run([sys.executable, "-I", "-S", "-c", script], input=json.dumps(payload),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "42"
