"""Cells through IPython in a session worker: ``!cmd``, ``%magics`` and ``%%cell magics``.

The worker (:func:`rpyc_ipy.remote.worker.main`) starts the shell on the engine's
namespace when IPython is importable, and the engine runs its foreground cells
through it::

    namespace: dict[str, Any] = {}
    shell = IPythonCells.start(namespace)
    engine = Engine(namespace, shell=shell, cell_runner=runner)
    engine.execute("!echo hello\\n%time sum(range(10))")

It is IPython's own :class:`~IPython.core.interactiveshell.InteractiveShell`, the
process's one instance (``get_ipython()``, ``IPython.display.display`` and
matplotlib-inline find it), wired to the engine:

* the last expression's value goes to the engine, which makes the result bundle;
* ``display()``, ``update_display`` and inline figures go to the running cell's sink;
* the traceback of the error that stopped a cell is plain text (no colours) and
  comes back as the cell's error; one the cell survived (a failing formatter) is
  written to its stderr;
* IPython's ``execution_count``, ``In`` and ``Out`` follow the engine's count;
* output of ``!cmd``, ``%%bash``, ``%time`` and ``%pip`` is ordinary ``sys.stdout``
  output, streamed like any other; ``%cd`` changes the worker's directory;
* matplotlib draws inline by default where matplotlib-inline is installed, as in
  Jupyter; GUI event loops (``%matplotlib qt``) are refused: a worker has no screen.

Background jobs do not come here. They run on threads of their own for hours
while foreground cells go on, and IPython's per-cell state (the builtins trap,
the displayhook, the execution count, ``sys.excepthook``) belongs to one cell at
a time: taking turns would stall the notebook behind a job. So jobs run as plain
Python in the same namespace (``display()`` works there too) and a ``!cmd`` line
in one gets a clear error.

Not shipped to classic servers (they run cells as plain Python, in-process), so
it imports IPython at module level.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import io
import json
import os
import re
import sys
import threading
import tokenize
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import IPython
from IPython.core.displayhook import DisplayHook
from IPython.core.displaypub import DisplayPublisher
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.display import clear_output
from traitlets.config import Config

from rpyc_ipy.remote import bundle as _bundle
from rpyc_ipy.remote import values as _values
from rpyc_ipy.remote.capture import current_sink
from rpyc_ipy.remote.cells import CellRun, bound_traceback

__all__ = ["IPythonCells", "wire_bundle"]

INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def wire_bundle(data: Mapping[str, Any], metadata: Mapping[str, Any] | None = None,
                max_bytes: int = _bundle.DEFAULT_MAX_BYTES
                ) -> tuple[tuple[tuple[str, str | bytes], ...], Any]:
    """IPython's display data as the engine sends it: ``(data_pairs, packed_metadata)``
    with ``str``/``bytes`` values (images as bytes, JSON as text); a value over
    ``max_bytes`` is dropped and noted in the metadata, as :mod:`~rpyc_ipy.remote.bundle`
    does."""
    pairs: list[tuple[str, str | bytes]] = []
    dropped: list[str] = []
    for mime, value in data.items():
        wire = _wire_value(mime, value)
        if wire is None:
            continue
        if len(wire) > max_bytes:
            dropped.append(f"{mime} ({len(wire):,} bytes)")
            continue
        pairs.append((mime, wire))
    md = dict(metadata or {})
    if dropped:
        md["rpyc_ipy"] = {"dropped": dropped, "max_bytes": max_bytes}
    try:
        packed = _values.pack(md, max_bytes=1 << 20)
    except (_values.NotByValue, _values.TooLarge):
        packed = _values.pack({})
    return tuple(pairs), packed


def _wire_value(mime: str, value: Any) -> str | bytes | None:
    if type(value) is str and mime.startswith("image/") and mime != "image/svg+xml":
        try:  # Jupyter's convention for binary images in JSON
            return base64.b64decode("".join(value.split()), validate=True)
        except (binascii.Error, ValueError):
            return value
    if type(value) is str or type(value) is bytes:
        return value
    if mime == "application/json" or mime.endswith("+json"):
        try:
            return json.dumps(value, default=str)
        except (TypeError, ValueError):
            return None
    return None


class _ValueHook(DisplayHook):
    """Keeps the last expression's value for the engine instead of printing it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.value: tuple[Any] | None = None  # (value,) once the last expression ran
        self.show = True  # False: the cell is silent, or silenced with ";"

    def start_cell(self, show: bool) -> None:
        self.value = None
        self.show = show

    def __call__(self, result: Any = None) -> None:
        self.check_for_underscore()
        self.value = (result,)
        if result is not None and self.show:
            self.update_user_ns(result)  # _, __, ___, _N and Out, as IPython keeps them
            self.fill_exec_result(result)


class _SinkPublisher(DisplayPublisher):
    """Sends display data to the running cell's sink."""

    def publish(self, data: Any, metadata: Any = None, source: Any = None, *,
                transient: Any = None, update: bool = False, **kwargs: Any) -> None:
        sink = current_sink()
        if sink is None:  # not in a cell: like IPython without a frontend
            print(data.get("text/plain", ""))
            return
        pairs, md = wire_bundle(data, metadata)
        display_id = (transient or {}).get("display_id")
        sink.display(pairs, md, None if display_id is None else str(display_id), update)

    def clear_output(self, wait: bool = False) -> None:
        sink = current_sink()
        if sink is not None:
            sink.clear(wait)


class _RemoteShell(InteractiveShell):
    """IPython wired to the engine (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        # tracebacks of errors that may have stopped the cell: (exception, text)
        self.held: list[tuple[BaseException, str]] = []
        self.cell_thread: int | None = None  # the thread in run_cell, if any
        super().__init__(**kwargs)

    def _showtraceback(self, etype: Any, evalue: Any, stb: list[str]) -> None:
        self._shown(evalue, self.InteractiveTB.stb2text(stb))

    def show_usage_error(self, exc: Any) -> None:
        self._shown(exc, f"UsageError: {exc}")

    def _shown(self, exc: BaseException, text: str) -> None:
        """Hold the traceback of the error that stops the cell (it becomes the cell's
        error); write one the cell goes on after to its stderr now."""
        text = bound_traceback(_ANSI.sub("", text))
        running = self.displayhook.exec_result
        survived = running is not None and exc is not running.error_in_exec and \
            exc is not running.error_before_exec
        if survived or threading.get_ident() != self.cell_thread:  # or a background job's
            print(text, file=sys.stderr)
            return
        self.held.append((exc, text))

    @contextmanager
    def _tee(self, channel: str) -> Iterator[None]:
        # IPython would keep every cell's stdout in memory for its history, for the
        # life of the worker; the engine's own output log is bounded
        yield

    def enable_gui(self, gui: str | None = None) -> None:
        if gui not in (None, "inline"):
            raise UsageError(f"a session worker has no screen for {gui} windows: use "
                             "%matplotlib inline")


class IPythonCells:
    """The worker's IPython running the engine's foreground cells: a
    :class:`~rpyc_ipy.remote.engine.CellShell`. Make it with :meth:`start`."""

    def __init__(self, shell: _RemoteShell) -> None:
        self._shell = shell
        self.name = f"ipython {IPython.__version__}"

    @property
    def hidden(self) -> Mapping[str, Any]:
        return self._shell.user_ns_hidden

    @classmethod
    def start(cls, namespace: dict[str, Any]) -> IPythonCells:
        """Start the process's IPython shell on ``namespace`` (once per process)."""
        if InteractiveShell.initialized():
            raise RuntimeError("this process has an IPython shell already")
        config = Config()
        # history in memory: no database in the user's home, no thread writing it
        config.HistoryManager.hist_file = ":memory:"
        if importlib.util.find_spec("matplotlib_inline") is not None:
            os.environ.setdefault("MPLBACKEND", INLINE_BACKEND)  # as ipykernel does
        shell = _RemoteShell.instance(user_ns=namespace, config=config, colors="nocolor",
                                      displayhook_class=_ValueHook,
                                      display_pub_class=_SinkPublisher)
        # the engine's plain-Python cells have it as a builtin: keep cells portable
        shell.push({"clear_output": clear_output}, interactive=False)
        return cls(shell)

    def run_cell(self, code: str, *, count: int, store_history: bool, silent: bool
                 ) -> CellRun:
        """Run ``code`` as cell ``count`` (see :class:`~rpyc_ipy.remote.engine.CellShell`)."""
        shell = self._shell
        hook = shell.displayhook
        assert isinstance(hook, _ValueHook)
        silenced = _ends_with_semicolon(code)
        # IPython numbers a cell it keeps by its count, one it does not by the next
        shell.execution_count = count if store_history else count + 1
        if store_history:
            self._pad_history(count)
        hook.start_cell(show=not (silent or silenced))
        shell.held.clear()
        shell.cell_thread = threading.get_ident()
        try:
            # silence is the engine's business (a silent cell may still want its value)
            outcome = shell.run_cell(code, store_history=store_history, silent=False)
        finally:
            shell.cell_thread = None
        error = outcome.error_before_exec or outcome.error_in_exec
        text = ""
        held, shell.held = shell.held, []
        for exc, shown in held:
            if exc is error:
                text = shown
            else:  # shown while the cell went on after all
                print(shown, file=sys.stderr)
        if error is not None and not text:
            text = bound_traceback("".join(traceback.format_exception(
                type(error), error, error.__traceback__)))
        value = hook.value
        return CellRun(value is not None, None if value is None else value[0], silenced,
                       error, text)

    def _pad_history(self, count: int) -> None:
        """Make ``In[count]`` this cell's: numbers the shell never saw (background jobs,
        blank cells) get empty entries, as ``In[0]`` is."""
        history = self._shell.history_manager
        assert history is not None
        for inputs in (history.input_hist_parsed, history.input_hist_raw):
            inputs.extend([""] * (count - len(inputs)))


def _ends_with_semicolon(code: str) -> bool:
    """True if the cell's last token is ``;``: IPython's rule for a silenced result
    (its own check reads the history, which a cell run without history lacks)."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError):
        return code.rstrip().endswith(";")
    for token in reversed(tokens):
        if token.type not in (tokenize.ENDMARKER, tokenize.NL, tokenize.NEWLINE,
                              tokenize.COMMENT):
            return token.type == tokenize.OP and token.string == ";"
    return False
