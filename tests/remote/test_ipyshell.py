"""Cells through IPython in real session workers: ``!cmd``, magics and cell magics,
plain-text tracebacks, bundles, inline figures, the stop button, background jobs
beside the shell, and the plain-Python fallback's one clear error."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import IPython
import pytest
from waitkit import wait_until

from rpyc_ipy.remote import Engine
from rpyc_ipy.remote.cells import NO_SHELL, NOT_IN_BACKGROUND, CellRun
from rpyc_ipy.remote.supervisor import WorkerProcess, WorkerSpec
from rpyc_ipy.remote.values import unpack
from rpyc_ipy.remote.worker import parse_settings

pytestmark = pytest.mark.timeout(120)

WAIT = 30.0  #: generous: worker start-up and signals on a loaded 2-core machine


class Collector:
    """An ``emit`` callback that keeps every event."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.lock = threading.Lock()

    def __call__(self, batch: tuple[Any, ...]) -> None:
        with self.lock:
            self.events.extend(batch)

    @property
    def stdout(self) -> str:
        with self.lock:
            return _stream(self.events)


def _stream(events: Any, name: str = "stdout") -> str:
    return "".join(e[2] for e in events if e[0] == "stream" and e[1] == name)


def _text(outcome: tuple[Any, ...]) -> str:
    assert outcome[0] == "ok", outcome
    return str(dict(outcome[2][0])["text/plain"])


@pytest.fixture
def spawn() -> Iterator[Callable[..., WorkerProcess]]:
    """Start session workers (fd capture on, as a server runs them); all end with the test."""
    workers: list[WorkerProcess] = []

    def start(**spec: Any) -> WorkerProcess:
        worker = WorkerProcess.spawn(WorkerSpec(user="alice", session="lab", **spec))
        workers.append(worker)
        worker.conn.start_serving()  # the worker calls back with streamed output
        return worker

    yield start
    for worker in workers:
        worker.terminate()


@pytest.fixture
def worker(spawn: Callable[..., WorkerProcess]) -> WorkerProcess:
    return spawn()


def run(worker: WorkerProcess, code: str, emit: Any = None, **options: Any) -> tuple[Any, ...]:
    return tuple(worker.call("execute", code, emit, tuple(options.items())))


# -- IPython runs the cells -------------------------------------------------------------------

def test_hello_says_the_cells_run_through_ipython(worker: WorkerProcess) -> None:
    assert dict(worker.call("hello"))["shell"] == f"ipython {IPython.__version__}"
    cell = ("from IPython.core.interactiveshell import InteractiveShell\n"
            "InteractiveShell.initialized() and get_ipython() is InteractiveShell.instance()")
    assert _text(run(worker, cell)) == "True"


def test_shell_command_output_is_streamed_while_it_runs(worker: WorkerProcess,
                                                        tmp_path: Path) -> None:
    assert "hello" in _stream(run(worker, "!echo hello")[3])
    flag = tmp_path / "go"
    seen = Collector()
    cell = f"!echo started; while [ ! -e {flag} ]; do sleep 0.01; done; echo finished"
    running = worker.call_async("execute", cell, seen, (("stream_interval", 0.02),))
    wait_until(lambda: "started" in seen.stdout, WAIT, what="the command's first line")
    assert "finished" not in seen.stdout
    flag.touch()
    running.wait(WAIT)
    assert running.value[0] == "ok"
    assert "finished" in seen.stdout + _stream(running.value[3])


def test_line_magics(worker: WorkerProcess, tmp_path: Path) -> None:
    timed = run(worker, "%time total = sum(range(10))")
    assert "Wall time" in _stream(timed[3])
    assert _text(run(worker, "total")) == "45"
    pip = _stream(run(worker, "%pip --version")[3])
    assert pip.startswith("pip ") and "python" in pip
    here = os.path.realpath(tmp_path)
    moved = run(worker, f"%cd {here}")
    assert here in _stream(moved[3])
    assert _text(run(worker, "import os\nos.getcwd()")) == repr(here)
    assert dict(worker.call("hello"))["cwd"] == here


def test_cell_magics(worker: WorkerProcess) -> None:
    timed = run(worker, "%%timeit -n1 -r1\nsum(range(10))")
    assert timed[0] == "ok" and "per loop" in _stream(timed[3])
    assert _stream(run(worker, "%%bash\necho from bash\necho again")[3]) == \
        "from bash\nagain\n"


def test_an_error_gives_a_plain_text_traceback_naming_the_line(worker: WorkerProcess) -> None:
    status, count, _, _, error, _, _ = run(worker, "x = 1\ndef f():\n    return x / 0\nf()")
    assert status == "error"
    ename, evalue, text = error
    assert (ename, evalue) == ("ZeroDivisionError", "division by zero")
    assert f"Cell In[{count}], line 4" in text and "----> 3     return x / 0" in text
    assert "\x1b" not in text and "interactiveshell.py" not in text
    assert run(worker, "%no_such_magic")[4][:2] == \
        ("UsageError", "Line magic function `%no_such_magic` not found.")
    assert run(worker, "def (:")[4][:2] == ("SyntaxError", "invalid syntax")
    assert _text(run(worker, "'still here'")) == "'still here'"


def test_results_and_displays_come_back_as_bundles(worker: WorkerProcess) -> None:
    outcome = run(worker, "display({'a': 1})\n6 * 7")
    assert _text(outcome) == "42"
    shown = [e for e in outcome[3] if e[0] == "display"]
    assert [dict(e[1])["text/plain"] for e in shown] == ["{'a': 1}"]
    assert run(worker, "6 * 7;")[2] is None  # silenced
    valued = run(worker, "[6, 7]", want_value=True)
    assert valued[6][0] == "value" and unpack(valued[6][1]) == [6, 7]
    updated = run(worker, "h = display('a', display_id=True)\nh.update('b')\nclear_output()")
    events = [e for e in updated[3] if e[0] != "mark"]
    assert [e[0] for e in events] == ["display", "display", "clear"]
    assert events[0][3] == events[1][3] is not None and events[1][4] is True


def test_in_and_out_follow_the_engine_count(worker: WorkerProcess) -> None:
    job = worker.call("start", "'job'", None, (("background", True),))  # takes a number
    assert worker.call("resume", job, None, 0)[0] == "ok"
    run(worker, "  ")  # a blank cell: counted by the engine, not kept by IPython
    first = run(worker, "'first'")
    assert first[1] == 3
    assert _text(run(worker, "(In[3], Out[3], _3)")) == "(\"'first'\", 'first', 'first')"


def test_inline_matplotlib_figures_are_displayed(worker: WorkerProcess) -> None:
    pytest.importorskip("matplotlib")
    pytest.importorskip("matplotlib_inline")
    outcome = run(worker, "%matplotlib inline\nimport matplotlib.pyplot as plt\n"
                          "plt.plot([1, 2, 3]);")
    assert outcome[0] == "ok" and outcome[2] is None
    images = [dict(e[1]).get("image/png") for e in outcome[3] if e[0] == "display"]
    assert len(images) == 1 and isinstance(images[0], bytes)
    assert images[0][:8] == b"\x89PNG\r\n\x1a\n"


def test_the_stop_button_interrupts_a_sleep_in_an_ipython_cell(worker: WorkerProcess) -> None:
    seen = Collector()
    running = worker.call_async("execute", "import time\nprint('sleeps', flush=True)\n"
                                "time.sleep(600)", seen, (("stream_interval", 0.02),))
    wait_until(lambda: "sleeps" in seen.stdout, WAIT, what="the cell to start")
    assert worker.interrupt()
    running.wait(WAIT)  # far below the 600 s sleep
    ename, _, text = running.value[4]
    assert ename == "KeyboardInterrupt" and "Cell In[1]" in text and "time.sleep(600)" in text
    cancelled = worker.call_async("execute", "import time\ntime.sleep(600)", None,
                                  (("exec_id", "sleepy"),))
    wait_until(lambda: "sleepy" in worker.call("running"), WAIT, what="the cell to start")
    worker.call("cancel", "sleepy")
    cancelled.wait(WAIT)
    assert cancelled.value[0] == "cancelled"
    assert _text(run(worker, "'still here'")) == "'still here'"


def test_background_jobs_run_plain_python_beside_the_shell(worker: WorkerProcess,
                                                          tmp_path: Path) -> None:
    flag = tmp_path / "go"
    job = worker.call("start", f"import pathlib, time\nwhile not pathlib.Path({str(flag)!r})"
                               ".exists():\n    time.sleep(0.01)\ndisplay('from the job')\n"
                               "class Broken:\n    def _repr_html_(self):\n"
                               "        raise ValueError('bad html')\n"
                               "display(Broken())\n'job result'", None, (("background", True),))
    assert "fg" in _stream(run(worker, "!echo fg")[3])  # the shell works meanwhile
    flag.touch()
    outcome = worker.call("resume", job, None, 0)
    assert _text(outcome) == "'job result'"
    shown = [dict(e[1])["text/plain"] for e in outcome[3] if e[0] == "display"]
    assert shown[0] == "'from the job'" and len(shown) == 2
    # the failing formatter's traceback goes to the job's own output, not to the shell
    assert "ValueError: bad html" in _stream(outcome[3], "stderr")
    magic = worker.call("start", "x = 1\n!echo hi", None, (("background", True),))
    assert worker.call("resume", magic, None, 0)[4][:2] == ("UsageError", NOT_IN_BACKGROUND)


# -- without IPython -----------------------------------------------------------------------------

def test_a_plain_python_worker_gives_one_clear_error_for_magics(
        spawn: Callable[..., WorkerProcess]) -> None:
    worker = spawn(shell="python")
    assert dict(worker.call("hello"))["shell"] == "python"
    for line in ("!echo hi", "%time 1", "%%bash\necho hi", "x = 1\nfiles = !ls"):
        assert run(worker, line)[4] == ("UsageError", NO_SHELL, f"UsageError: {NO_SHELL}\n")
    assert "pip install ipython" in NO_SHELL
    assert _text(run(worker, "display('shown')\n6 * 7")) == "42"
    assert run(worker, "def (:")[4][0] == "SyntaxError"


def test_an_engine_without_a_shell_refuses_magics_the_same_way(engine: Engine) -> None:
    assert dict(engine.hello())["shell"] == "python"
    assert engine.execute("!echo hi")[4][:2] == ("UsageError", NO_SHELL)
    assert engine.execute("(10\n% 3)")[0] == "ok"  # a % that is Python stays Python


def test_the_shell_setting_is_checked() -> None:
    assert parse_settings('{"shell": "python"}') == {"shell": "python"}
    with pytest.raises(ValueError, match="ipython, python"):
        parse_settings('{"shell": "bash"}')


def test_a_shell_needs_a_cell_runner() -> None:
    class Shell:
        name = "test"
        hidden: dict[str, Any] = {}

        def run_cell(self, code: str, *, count: int, store_history: bool, silent: bool
                     ) -> CellRun:
            return CellRun(False, None, False, None, "")

    with pytest.raises(ValueError, match="cell_runner"):
        Engine(shell=Shell())
