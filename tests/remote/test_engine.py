"""The engine: IPython cell semantics, streaming, capture, cancel, and looking around."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from waitkit import wait_until

from rpyc_ipy.remote import Engine
from rpyc_ipy.remote.values import unpack

WAIT = 10.0  # upper bound for any single wait


def _stdout(outcome: tuple[Any, ...]) -> str:
    return "".join(e[2] for e in outcome[3] if e[0] == "stream" and e[1] == "stdout")


def _text(outcome: tuple[Any, ...]) -> str:
    return dict(outcome[2][0])["text/plain"]


def test_cell_semantics(engine: Engine) -> None:
    outcome = engine.execute("print('a')\nx = 6\nx * 7")
    assert outcome[0] == "ok" and outcome[1] == 1
    assert _stdout(outcome) == "a\n" and _text(outcome) == "42"
    assert engine.namespace["_"] == 42
    assert engine.execute("x;")[2] is None  # silenced
    assert engine.execute("y = 1")[2] is None  # no expression
    assert _text(engine.execute("import asyncio\nawait asyncio.sleep(0)\nx + 1")) == "7"
    assert engine.execute("__name__ == '__main__'")[2][0][0][1] == "True"
    outcome = engine.execute("display('shown', {'k': 1})\nclear_output(wait=True)")
    kinds = [e[0] for e in outcome[3]]
    assert kinds == ["display", "display", "clear", "mark"]  # mark: where a resume starts
    assert dict(outcome[3][0][1])["text/plain"] == "'shown'"


def test_errors_and_tracebacks(engine: Engine) -> None:
    status, _, _, _, error, _, _ = engine.execute("def f():\n    return 1/0\nf()")
    assert status == "error" and error[0] == "ZeroDivisionError"
    assert "return 1/0" in error[2] and "engine.py" not in error[2]
    assert engine.execute("def (:")[4][0] == "SyntaxError"
    assert engine.execute("raise SystemExit(2)")[4][0] == "SystemExit"
    assert engine.execute("raise KeyboardInterrupt")[0] == "error"  # not a cancel
    assert engine.execute("'still here'")[0] == "ok"


def test_output_is_streamed_in_batches(engine: Engine) -> None:
    # the cell waits for ``go``, which is set only once "0" has been emitted: output held
    # back until the end would leave the cell waiting in vain
    go = engine.namespace["go"] = threading.Event()
    batches: list[tuple[Any, ...]] = []

    def emit(events: tuple[Any, ...]) -> None:
        batches.append(events)
        if any(e[0] == "stream" and e[2] == "0\n" for e in events):
            go.set()

    outcome = engine.execute(
        "import time\nprint(0)\nprint('released' if go.wait(10) else 'never released')\n"
        "for i in range(1, 4):\n    print(i)\n    time.sleep(0.1)",
        emit=emit, options=(("stream_interval", 0.02),))
    streamed = "".join(e[2] for events in batches for e in events if e[0] == "stream") + \
        _stdout(outcome)
    assert streamed == "0\nreleased\n1\n2\n3\n"
    assert len(batches) >= 3


def test_threads_started_by_a_cell_are_routed_to_it(engine: Engine) -> None:
    outcome = engine.execute("import threading\nt = threading.Thread(target=print, "
                             "args=('from a thread',))\nt.start(); t.join()")
    assert _stdout(outcome) == "from a thread\n"


def test_fd_capture(engine: Engine) -> None:
    fd_engine = Engine(capture_fd=True)
    outcome = fd_engine.execute("import os, ctypes\nos.write(1, b'fd one\\n')\n"
                                "os.write(2, b'fd two\\n')\nctypes.CDLL(None).printf(b'c\\n')")
    streams = {(e[1], e[2]) for e in outcome[3] if e[0] == "stream"}
    text = "".join(t for _, t in streams)
    assert "fd one" in text and "fd two" in text and "c\n" in text
    assert ("stderr", "fd two\n") in streams


def _cancel_later(engine: Engine, delay: float = 0.2, force: bool = False) -> None:
    def go() -> None:
        time.sleep(delay)
        engine.cancel(force=force)

    threading.Thread(target=go, daemon=True).start()


def _execute_within(engine: Engine, code: str, options: Any = ()) -> tuple[Any, ...]:
    """``engine.execute`` on a thread, waited for at most WAIT seconds (or the test fails)."""
    outcome: list[tuple[Any, ...]] = []
    runner = threading.Thread(target=lambda: outcome.append(engine.execute(code, options=options)),
                              daemon=True)
    runner.start()
    runner.join(WAIT)
    assert not runner.is_alive(), f"still running after {WAIT} s: {code!r}"
    return outcome[0]


@pytest.mark.parametrize("code, level", [
    ("while True:\n    print('x', end='')", "stopped at its next output after"),
    ("while True:\n    pass", "stopped by an asynchronous KeyboardInterrupt after"),
    ("import time\ntime.sleep(300)", "abandoned after"),  # far beyond the wait: cut short
])
def test_cancel_escalates(engine: Engine, code: str, level: str) -> None:
    _cancel_later(engine)
    outcome = _execute_within(engine, code, options=(("grace", 0.2),))
    assert outcome[0] == "cancelled" and level in outcome[5]
    assert _execute_within(engine, "1")[0] == "ok"  # the engine answers at once
    assert engine.running() == ()


def test_cooperative_polling(engine: Engine) -> None:
    _cancel_later(engine)
    outcome = engine.execute("from rpyc_ipy.remote import cancelled\nimport time\nn = 0\n"
                             "while not cancelled():\n    time.sleep(0.01)\n    n += 1\n'clean'")
    assert outcome[0] == "ok" and _text(outcome) == "'clean'"


def test_start_reports_through_emit(engine: Engine) -> None:
    events: list[Any] = []
    done = threading.Event()

    def emit(batch: tuple[Any, ...]) -> None:
        events.extend(batch)
        if any(e[0] == "done" for e in batch):
            done.set()

    exec_id = engine.start("print('hi')\n5", emit, (("exec_id", "mine"),))
    assert exec_id == "mine" and done.wait(5)
    outcome = events[-1][1]
    assert _text(outcome) == "5" and _stdout(outcome) == "hi\n"
    assert engine.cancel("nothing") == "not running"


def test_completion_inspection_and_describe(engine: Engine) -> None:
    engine.execute("import os\nclass C:\n    @property\n    def boom(self):\n"
                   "        raise RuntimeError('ran')\n    plain = 1\nc = C()\n"
                   "data = {'alpha': 1, 'beta': [1, 2]}")
    matches, start, end, kinds = engine.complete("os.pa")
    assert "path" in matches and (start, end) == (3, 5) and len(kinds) == len(matches)
    assert engine.complete("data['al")[0] == ("alpha",)
    assert "boom" in engine.complete("c.b")[0]
    assert engine.complete("c.boom.x")[0] == ()  # a property is not run
    assert engine.complete("len(da", 6)[0] == ("data",)
    info = dict(engine.inspect("os.path.join(", 13))
    assert info["found"] is True and "join" in (info.get("definition") or "")
    assert engine.inspect("c.boom") == ()
    root, node, missing = engine.describe(("", "data", "c.boom"))
    assert dict(root)["kind"] == "namespace" and dict(root)["len"] >= 4
    children = dict(node)["children"]
    assert [c[0] for c in children] == ["'alpha'", "'beta'"] and children[1][1] == "data['beta']"
    assert "property" in dict(missing)["error"]
    pulled = engine.pull(("data", "os", "data['beta']"))
    assert unpack(pulled[0][2]) == {"alpha": 1, "beta": [1, 2]}
    assert pulled[1][1] == "error" and unpack(pulled[2][2]) == [1, 2]
    assert engine.push((("z", ("list", (1, 2))),)) == ("z",)
    assert engine.namespace["z"] == [1, 2]
    with pytest.raises(ValueError):
        engine.push((("not a name", 1),))


def test_describe_says_when_a_name_is_not_defined() -> None:
    """A browser looks for such a name elsewhere (a local netref); other errors are final."""
    engine = Engine({"data": {"a": 1}})
    undefined, refused, found = (dict(node) for node in engine.describe(
        ("nothing_here.x", "data.missing_attribute", "len")))
    assert undefined["undefined"] is True and "not defined" in undefined["error"]
    assert refused["undefined"] is False and refused["error"]
    assert found["error"] is None and "undefined" not in found


def test_push_binds_all_names_or_none() -> None:
    engine = Engine({})
    with pytest.raises(ValueError):  # the second name is bad: the first is not bound either
        engine.push((("a", 1), ("not a name", 2)))
    assert "a" not in engine.namespace
    # a push in several requests: held by stage, bound together by push_staged
    assert engine.stage((("a", 1),), first=True) == 1
    assert engine.stage((("b", ("list", (2,))),)) == 2
    assert "a" not in engine.namespace and "b" not in engine.namespace
    assert engine.push_staged((("c", 3),)) == ("a", "b", "c")
    assert (engine.namespace["a"], engine.namespace["b"], engine.namespace["c"]) == (1, [2], 3)
    # a stopped one is dropped by the next push's first part, and by a plain push
    engine.stage((("x", 1),), first=True)
    engine.stage((("y", 1),), first=True)
    assert engine.push_staged((("z", 1),)) == ("y", "z")
    engine.stage((("w", 1),), first=True)
    assert engine.push((("v", 1),)) == ("v",)
    assert engine.push_staged(()) == ()
    assert not {"w", "x"} & set(engine.namespace)


class HeldRunner:
    """A cell runner that runs what it is given only when told: a cell can be caught
    after it was sent and before its code starts."""

    def __init__(self) -> None:
        self.submitted: list[Any] = []
        self.arrived = threading.Event()

    def submit(self, run: Any) -> None:
        self.submitted.append(run)
        self.arrived.set()

    def signal_thread(self, ident: int) -> bool:
        return False

    def release(self) -> None:
        for run in self.submitted:
            threading.Thread(target=run, daemon=True).start()


def test_an_interrupt_before_the_cell_starts_stops_it_as_it_starts() -> None:
    runner = HeldRunner()
    engine = Engine(cell_runner=runner)
    outcome: list[tuple[Any, ...]] = []
    caller = threading.Thread(target=lambda: outcome.append(engine.execute("ran = True")),
                              daemon=True)
    caller.start()
    assert runner.arrived.wait(WAIT)
    engine.interrupt_before_user_code()  # what the worker's SIGINT handler does here
    runner.release()
    caller.join(WAIT)
    assert outcome and outcome[0][0] == "error" and outcome[0][4][0] == "KeyboardInterrupt"
    assert "ran" not in engine.namespace
    assert "rpyc_ipy" not in outcome[0][4][2]  # no frame of ours in the traceback
    # the interrupt was for that cell only: the next one runs
    runner.submitted.clear()
    caller = threading.Thread(target=lambda: outcome.append(engine.execute("ran = 2")),
                              daemon=True)
    caller.start()
    assert wait_until(lambda: bool(runner.submitted), WAIT)
    runner.release()
    caller.join(WAIT)
    assert outcome[1][0] == "ok" and engine.namespace["ran"] == 2


def test_an_interrupt_with_no_cell_waiting_stops_nothing() -> None:
    runner = HeldRunner()
    engine = Engine(cell_runner=runner)
    engine.interrupt_before_user_code()
    outcome: list[tuple[Any, ...]] = []
    caller = threading.Thread(target=lambda: outcome.append(engine.execute("ran = 3")),
                              daemon=True)
    caller.start()
    assert runner.arrived.wait(WAIT)
    runner.release()
    caller.join(WAIT)
    assert outcome[0][0] == "ok" and engine.namespace["ran"] == 3
