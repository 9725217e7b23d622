"""One rule for every value the notebook might unpickle (issue 13, item 9): only with
``--pickle`` for that value, ``RPyCPolicy.allow_pickle`` here and the server's word.

A hostile server claims ``allow_pickle`` in ``hello()`` and answers every path with a
pickle whose loading would run :func:`canary` in the notebook; the notebook allows
pickle (``RPyCPolicy.allow_pickle = True``), as in the reported case.
"""

from __future__ import annotations

import ast
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from notebook_rig import new_shell, reset, run_captured

import rpyc_ipy
from rpyc_ipy.ipython.session import RemoteSession

ROOT = Path(__file__).resolve().parents[2] / "rpyc_ipy"
RAN: list[str] = []


def canary(tag: str) -> str:
    """What unpickling the server's value would run in the notebook."""
    RAN.append(tag)
    return tag


class Trap:
    def __init__(self, tag: str) -> None:
        self.tag = tag

    def __reduce__(self) -> Any:
        return (canary, (self.tag,))


def _pickled(tag: str) -> tuple[str, bytes]:
    return ("pickle", pickle.dumps(Trap(tag)))


class PicklingService(rpyc_ipy.Service):
    """Claims to be an execution service that allows pickle, and pickles everything."""

    def exposed_hello(self, client: Any = None) -> Any:
        return (("engine", "1"), ("features", ("execute",)), ("allow_pickle", True))

    def exposed_execute(self, code: str, emit: Any, options: Any = ()) -> Any:
        emit((("display", (("text/plain", "shown"),), _pickled("metadata"), None, False),))
        return ("ok", 1, None, (), None, "", ("value", _pickled("output")))

    def exposed_pull(self, names: Any, use_pickle: Any = False, max_bytes: Any = 0) -> Any:
        return tuple((name, "ok", _pickled(f"pull-{use_pickle}")) for name in names)


@pytest.fixture(scope="module")
def ip() -> Iterator[InteractiveShell]:
    yield from new_shell()


@pytest.fixture
def hostile(ip: InteractiveShell,
            start_server: Callable[..., rpyc_ipy.ThreadedServer]) -> Iterator[RemoteSession]:
    server = start_server(PicklingService)
    ip.run_line_magic("config", "RPyCPolicy.allow_pickle = True")
    run_captured(ip, f"%rpyc_connect h=127.0.0.1:{server.port}")
    RAN.clear()
    try:
        yield ip.user_ns["h"]
    finally:
        reset(ip)


def test_remote_o_never_unpickles_even_when_the_server_claims_pickle(
        ip: InteractiveShell, hostile: RemoteSession) -> None:
    assert hostile.pickle_allowed  # both sides say yes: only the rule stands in the way
    result, _ = run_captured(ip, "%%remote -o got\nanything")
    assert result.error_in_exec is None
    assert ip.user_ns.get("got") is None and RAN == []


def test_display_metadata_is_never_unpickled(ip: InteractiveShell,
                                            hostile: RemoteSession) -> None:
    result, captured = run_captured(ip, "%%remote\nanything")
    assert result.error_in_exec is None
    assert [o.data.get("text/plain") for o in captured.outputs] == ["shown"]
    assert RAN == []


def test_pull_unpickles_only_with_pickle_asked_for(ip: InteractiveShell,
                                                  hostile: RemoteSession) -> None:
    result, _ = run_captured(ip, "%rpyc_pull h x")
    assert result.error_in_exec is not None and "pickle" in str(result.error_in_exec)
    assert RAN == [] and "x" not in ip.user_ns
    result, _ = run_captured(ip, "%rpyc_pull h x --pickle")  # asked, and allowed here
    assert result.error_in_exec is None and RAN == ["pull-True"]


def test_pull_with_pickle_asked_for_but_not_allowed_here_refuses(
        ip: InteractiveShell, hostile: RemoteSession) -> None:
    ip.run_line_magic("config", "RPyCPolicy.allow_pickle = False")
    result, _ = run_captured(ip, "%rpyc_pull h x --pickle")
    assert result.error_in_exec is not None and RAN == []


def test_the_rule_needs_all_three(hostile: RemoteSession) -> None:
    assert hostile.unpickles(True)
    assert not hostile.unpickles(False)
    hostile.conn.update_policy(allow_pickle=False)
    assert not hostile.unpickles(True)


def _unpack_calls(path: Path) -> list[tuple[int, ast.expr | None]]:
    """``(line, allow_pickle argument)`` of every unpack/unpack_mapping call in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else \
                getattr(node.func, "id", "")
            if name in ("unpack", "unpack_mapping"):
                arg = next((k.value for k in node.keywords if k.arg == "allow_pickle"), None)
                found.append((node.lineno, arg))
    return found


def _is_the_rule(arg: ast.expr | None) -> bool:
    """No pickle at all, or the session's one rule (``unpickles(...)``) or a name the
    rule's value was bound to."""
    if arg is None or (isinstance(arg, ast.Constant) and arg.value is False):
        return True
    if isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute):
        return arg.func.attr == "unpickles"
    return isinstance(arg, ast.Name) and arg.id == "use_pickle"


def test_every_notebook_path_that_unpacks_goes_through_the_one_rule() -> None:
    files = sorted([*(ROOT / "ipython").glob("*.py"), *(ROOT / "kernel").glob("*.py")])
    calls = [(path.name, line, arg) for path in files for line, arg in _unpack_calls(path)]
    assert len(calls) >= 3  # pull, -o, display metadata: the scan sees them
    assert [(f, line) for f, line, arg in calls if not _is_the_rule(arg)] == []
    session = (ROOT / "ipython" / "session.py").read_text()
    assert session.count("use_pickle = self.unpickles(") >= 1
    for path in files:  # nothing here unpickles by itself
        assert "pickle.load" not in path.read_text(), path.name
