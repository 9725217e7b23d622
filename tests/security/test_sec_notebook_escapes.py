"""Terminal escapes from a server never reach the screen (issue 13, item 8): an OSC 52
clipboard write, an OSC 0 window title and ``ESC[2J`` in every text a hostile server
controls, on each path the review found (the ``%rpyc_connect`` error, the ``[rpyc]``
note of a cancelled cell, the ``%rpyc_pull`` error) and on the others that print what a
server said (a remote exception in any cell, a job id, a worker's pid). A structural
scan checks that the notebook layers print only through the one sanitizing sink.
(The remote kernel's notes: tests/kernel/test_kernel_escapes.py.)
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from notebook_rig import new_shell, reset, run_captured

import rpyc_ipy

ROOT = Path(__file__).resolve().parents[2] / "rpyc_ipy"
ESC = "\x1b]52;c;cHduZWQ=\x07\x1b]0;owned\x07\x1b[2J"
BAD = ("\x1b]", "\x1b[2J")


class Refusing(rpyc_ipy.Service):
    """Refuses every client, in a message full of escapes."""

    @classmethod
    def exposed_get_service_name(cls) -> str:
        raise PermissionError(f"go away {ESC}")


class Lying(rpyc_ipy.Service):
    """An execution service whose every text carries escapes."""

    def on_connect(self, conn: Any) -> None:
        super().on_connect(conn)
        conn.update_policy(allow_public_attrs=True)

    def exposed_hello(self, client: Any = None) -> Any:
        return (("engine", "1"), ("features", ("execute", "jobs")))

    def exposed_execute(self, code: str, emit: Any, options: Any = ()) -> Any:
        if code.strip() == "fail":
            raise RuntimeError(f"it broke {ESC}")
        return ("cancelled", 1, None, (), None, f"stopped {ESC} by the server", None)

    def exposed_pull(self, names: Any, use_pickle: Any = False, max_bytes: Any = 0) -> Any:
        return tuple((name, "error", f"no such thing {ESC}") for name in names)

    def exposed_start(self, code: str, emit: Any, options: Any = ()) -> str:
        return f"job{ESC}"

    def exposed_boom(self) -> None:
        raise ValueError(f"remote failure {ESC}")


@pytest.fixture(scope="module")
def ip() -> Iterator[InteractiveShell]:
    yield from new_shell()


@pytest.fixture
def serve(ip: InteractiveShell, start_server: Callable[..., rpyc_ipy.ThreadedServer]
          ) -> Iterator[Callable[[type], int]]:
    def start(service: type) -> int:
        return start_server(service).port

    try:
        yield start
    finally:
        reset(ip)


def _shown(captured: Any) -> str:
    return captured.stdout + captured.stderr + "".join(
        str(o.data) for o in captured.outputs)


def _assert_clean(text: str, *expected: str) -> None:
    assert not [bad for bad in BAD if bad in text], repr(text[:500])
    for part in expected:
        assert part in text, (part, text[:500])


def test_the_rpyc_connect_error(ip: InteractiveShell, serve: Callable[[type], int]) -> None:
    result, captured = run_captured(ip, f"%rpyc_connect r=127.0.0.1:{serve(Refusing)}")
    assert result.error_in_exec is not None
    _assert_clean(_shown(captured), "go away")


def test_the_note_of_a_cancelled_cell(ip: InteractiveShell,
                                      serve: Callable[[type], int]) -> None:
    run_captured(ip, f"%rpyc_connect h=127.0.0.1:{serve(Lying)}")
    _, captured = run_captured(ip, "%%remote\nanything")
    _assert_clean(_shown(captured), "[rpyc] h: stopped", "by the server")


def test_the_rpyc_pull_error(ip: InteractiveShell, serve: Callable[[type], int]) -> None:
    run_captured(ip, f"%rpyc_connect h=127.0.0.1:{serve(Lying)}")
    result, captured = run_captured(ip, "%rpyc_pull h x")
    assert result.error_in_exec is not None
    _assert_clean(_shown(captured), "no such thing")


def test_a_failed_cell_and_a_remote_exception_in_any_cell(
        ip: InteractiveShell, serve: Callable[[type], int]) -> None:
    run_captured(ip, f"%rpyc_connect h=127.0.0.1:{serve(Lying)}")
    result, captured = run_captured(ip, "%%remote\nfail")
    assert result.error_in_exec is not None
    _assert_clean(_shown(captured), "it broke")
    result, captured = run_captured(ip, "h.conn.root.boom()")
    assert result.error_in_exec is not None
    _assert_clean(_shown(captured), "remote failure")


def test_a_job_id_from_the_server(ip: InteractiveShell, serve: Callable[[type], int]) -> None:
    run_captured(ip, f"%rpyc_connect h=127.0.0.1:{serve(Lying)}")
    _, captured = run_captured(ip, "%%remote --bg\nanything")
    _assert_clean(_shown(captured), "started job job")


# -- structure -------------------------------------------------------------------------------


def _writes(path: Path) -> list[tuple[int, str]]:
    """Calls in a file that put text on the screen other than through ``say``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "print":
            found.append((node.lineno, "print"))
        elif isinstance(func, ast.Attribute) and func.attr in ("write", "writelines"):
            found.append((node.lineno, func.attr))
    return found


def test_the_notebook_layers_print_only_through_the_sanitizing_sink() -> None:
    files = [p for p in sorted((ROOT / "ipython").glob("*.py")) if p.name != "text.py"]
    files += [ROOT / "kernel" / "mixin.py", ROOT / "kernel" / "kernel.py"]
    offenders = [(p.name, line, what) for p in files for line, what in _writes(p)
                 # CellOutput.write is a method of ours that calls say()
                 if not (p.name == "display.py" and what == "write")]
    assert offenders == []
    sink = ast.parse((ROOT / "ipython" / "text.py").read_text())
    say = next(n for n in sink.body if isinstance(n, ast.FunctionDef) and n.name == "say")
    assert "sanitize_text" in ast.unparse(say)
