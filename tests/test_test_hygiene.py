"""Tests wait on events, never on elapsed time: a scan of tests/ with ``ast``.

The heuristic, per function (and per module body):

* a *clock reading* is a call of ``time.monotonic()``, ``time.time()`` or
  ``time.perf_counter()`` (also ``monotonic()`` etc. imported bare), a name assigned a
  clock reading or arithmetic on one (``started = time.monotonic()``,
  ``deadline = time.monotonic() + 5``), or a name or attribute called like a duration
  (``elapsed``, ``took``, ``duration``);
* an ``assert`` fails the scan when one side of a comparison in it is a clock reading
  or arithmetic on one (``time.monotonic() - started < 2``, ``cell.elapsed < 8``);
  passing a reading to a call (``policy.begin(time.perf_counter()) == 0``) is fine;
* a ``while`` fails the scan when its condition involves a clock reading anywhere
  (``while time.monotonic() < deadline``).

tests/waitkit.py, whose ``wait_until`` is the one loop allowed to watch a clock, is exempt.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parent
EXEMPT = {"waitkit.py"}
CLOCKS = {"monotonic", "time", "perf_counter", "monotonic_ns", "time_ns", "perf_counter_ns"}
DURATION = re.compile(r"elapsed|took|duration", re.IGNORECASE)


def _is_clock_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call) or node.args or node.keywords:
        return False
    func = node.func
    if isinstance(func, ast.Attribute):  # time.monotonic()
        return (func.attr in CLOCKS and isinstance(func.value, ast.Name)
                and func.value.id == "time")
    return isinstance(func, ast.Name) and func.id in CLOCKS - {"time"}  # monotonic()


def _is_reading(node: ast.AST, tainted: set[str]) -> bool:
    """A clock reading or arithmetic on one (not looking inside calls or subscripts)."""
    if _is_clock_call(node):
        return True
    if isinstance(node, ast.Name):
        return node.id in tainted or bool(DURATION.search(node.id))
    if isinstance(node, ast.Attribute):
        return bool(DURATION.search(node.attr))
    if isinstance(node, ast.BinOp):
        return _is_reading(node.left, tainted) or _is_reading(node.right, tainted)
    if isinstance(node, ast.UnaryOp):
        return _is_reading(node.operand, tainted)
    return False


def _mentions_clock(node: ast.AST, tainted: set[str]) -> bool:
    return any(_is_clock_call(n) or (isinstance(n, ast.Name) and n.id in tainted)
               for n in ast.walk(node))


def _scopes(tree: ast.Module) -> Iterator[list[ast.stmt]]:
    """The module body and every function body."""
    yield tree.body
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.body


def _own_nodes(body: list[ast.stmt]) -> list[ast.AST]:
    """The nodes of ``body``, not descending into nested functions (their own scope)."""
    nested = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
    found: list[ast.AST] = []
    pending: list[ast.AST] = [node for node in body if not isinstance(node, nested)]
    while pending:  # bounded: every node is visited once
        node = pending.pop()
        found.append(node)
        pending.extend(child for child in ast.iter_child_nodes(node)
                       if not isinstance(child, nested))
    return found


def _tainted(nodes: list[ast.AST]) -> set[str]:
    """Names assigned a clock reading or arithmetic on one."""
    tainted: set[str] = set()
    for _ in range(3):  # a chain like started -> elapsed settles in a few rounds
        for node in nodes:
            if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)) \
                    and node.value is not None and _is_reading(node.value, tainted):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                tainted |= {t.id for t in targets if isinstance(t, ast.Name)}
    return tainted


def offences(source: str, filename: str = "<source>") -> list[str]:
    """``"file:line: why"`` for each elapsed-time assertion and clock-watching loop."""
    tree = ast.parse(source, filename)
    found: set[tuple[int, str]] = set()
    for body in _scopes(tree):
        nodes = _own_nodes(body)
        tainted = _tainted(nodes)
        for node in nodes:
            if isinstance(node, ast.Assert):
                for compare in ast.walk(node.test):
                    if isinstance(compare, ast.Compare) and any(
                            _is_reading(side, tainted)
                            for side in (compare.left, *compare.comparators)):
                        found.add((node.lineno, "assert on elapsed time"))
                        break
            elif isinstance(node, ast.While) and _mentions_clock(node.test, tainted):
                found.add((node.lineno, "a loop that watches the clock (use waitkit.wait_until)"))
    return [f"{filename}:{line}: {why}" for line, why in sorted(found)]


def test_no_test_asserts_on_elapsed_time_or_loops_on_the_clock() -> None:
    sources = sorted(p for p in TESTS.rglob("*.py") if p.name not in EXEMPT)
    assert len(sources) > 50  # the scan sees the suite
    found = [o for p in sources for o in offences(p.read_text(), str(p.relative_to(TESTS)))]
    assert found == [], "wait on events instead (tests/waitkit.py):\n" + "\n".join(found)


def test_the_scan_recognises_what_it_forbids() -> None:
    bad = '''
import time
from time import monotonic

def waits_by_hand(cell, ready):
    t0 = time.monotonic()
    assert time.monotonic() - t0 < 2
    elapsed = monotonic() - t0
    assert elapsed < 5 and ready
    assert cell.elapsed < 8, "too slow"
    deadline = time.monotonic() + 5
    while not ready() and time.monotonic() < deadline:
        time.sleep(0.01)
    while time.perf_counter() < deadline:
        pass
'''
    assert [line.split(": ", 1)[0] for line in offences(bad)] == [
        "<source>:7", "<source>:9", "<source>:10", "<source>:12", "<source>:14"]


def test_the_scan_lets_event_waits_and_clock_inputs_pass() -> None:
    good = '''
import time

def waits_on_events(policy, thread, event, wait_until, server):
    assert policy.begin(time.perf_counter()) == 0.0
    now = time.perf_counter()
    assert policy.begin(now + 0.01) == 0.0
    thread.join(10)
    assert not thread.is_alive()
    assert event.wait(10)
    assert wait_until(lambda: not server.clients, timeout=5)
    for _ in range(3):
        time.sleep(0.1)
'''
    assert offences(good) == []
