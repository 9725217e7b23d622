"""Helpers for the notebook security tests: a real InteractiveShell with the extension
loaded, and bounded waits on what it does (a uniquely named module, so tests can
import it)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from IPython.core.interactiveshell import InteractiveShell
from seckit import ROOT, readline_within

from rpyc_ipy.ipython.extension import Extension, extension_of

WAIT = 30.0  #: upper bound of any one wait in these tests


def new_shell() -> Iterator[InteractiveShell]:
    """One InteractiveShell with the extension loaded; unloaded and cleared after."""
    InteractiveShell.clear_instance()
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "rpyc_ipy")
    try:
        yield ip
    finally:
        ip.run_line_magic("unload_ext", "rpyc_ipy")
        ip.reset(new_session=False)
        InteractiveShell.clear_instance()


def extension(ip: InteractiveShell) -> Extension:
    found = extension_of(ip)
    assert found is not None
    return found


def reset(ip: InteractiveShell) -> None:
    """Close the sessions, restore the settings and drop the user's names."""
    ext = extension(ip)
    ext.registry.close_all()
    for configurable in (ext.policy, ext.magics):
        for name in configurable.trait_names(config=True):
            configurable.set_trait(name, configurable.trait_defaults(name))
    for name in [n for n in ip.user_ns if not n.startswith("_") and n not in (
            "In", "Out", "exit", "quit", "get_ipython")]:
        del ip.user_ns[name]


def within(seconds: float, action: Callable[[], Any]) -> Any:
    """``action()`` on a helper thread; its result if it ended within ``seconds`` (the
    test fails otherwise: the thing it checks blocked)."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(("ok", action()))
        except BaseException as exc:  # raised again on the test's thread
            outcome.append(("error", exc))

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still blocked after {seconds:g} s"
    kind, value = outcome[0]
    if kind == "error":
        raise value
    return value


def completions(ip: InteractiveShell, text: str) -> list[str]:
    """IPython's completions for ``text``, cursor at the end."""
    from IPython.core.completer import provisionalcompleter

    with provisionalcompleter():
        return [c.text for c in ip.Completer.completions(text, len(text))]


def run_captured(ip: InteractiveShell, cell: str) -> tuple[Any, Any]:
    """Run a cell with its output captured: ``(result, captured)``."""
    from IPython.utils.capture import capture_output

    with capture_output() as captured:
        result = ip.run_cell(cell)
    return result, captured


# -- a real execution server ------------------------------------------------------------------

SERVER = """
import sys
sys.path.insert(0, {root!r})
import rpyc_ipy
from rpyc_ipy.remote import ExecutionService
service = ExecutionService.configured(allow_loopback_plaintext=True)
server = rpyc_ipy.ThreadedServer(service, hostname="127.0.0.1", port=0,
                                 channel_handler=service.channel_handler())
print(server.port, flush=True)
server.start()
"""


@contextlib.contextmanager
def exec_server() -> Iterator[int]:
    """The notebook execution service (loopback demo mode) in a process group of its
    own, on 127.0.0.1; yields its port, ends the group (its workers too) after."""
    proc = subprocess.Popen([sys.executable, "-c", SERVER.format(root=str(ROOT))],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    try:
        yield int(readline_within(proc, WAIT))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(WAIT)
        if proc.stdout is not None:
            proc.stdout.close()


# -- the notebook's memory and screen -----------------------------------------------------------


def reset_peak_rss() -> None:
    """Start a new peak (``VmHWM``) for this process (Linux: /proc/self/clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Screen:
    """A stand-in for ``sys.stdout``/``sys.stderr``: counts what is written, keeps the
    lines that are our notes and a bounded tail, and can hold the writer (a notebook
    that does not keep up) until :attr:`go` is set."""

    def __init__(self, hold: bool = False) -> None:
        self.go = threading.Event()
        if not hold:
            self.go.set()
        self.first = threading.Event()  # something was written
        self.chars = 0
        self.notes: list[str] = []
        self.tail = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        self.first.set()
        assert self.go.wait(WAIT), "the test never let the screen go"
        with self._lock:
            self.chars += len(text)
            self.notes.extend(line for line in text.splitlines() if "[rpyc" in line)
            self.tail = (self.tail + text)[-4096:]
        return len(text)

    def flush(self) -> None:
        pass
