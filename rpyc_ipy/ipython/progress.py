"""Progress of long work in the notebook: a bar in a kernel, a text line in a terminal.

Work that moves data in chunks or waits on several sessions reports as it goes::

    with Progress("pull df", total=nbytes) as bar:
        for chunk in chunks:
            ...
            bar.advance(len(chunk))          # or bar.update(done), or pass bar as on_progress

Nothing is shown for work that ends within ``delay`` seconds, so quick
transfers stay quiet. In a Jupyter kernel the bar is an ipywidgets progress bar
when ipywidgets is installed (``pip install 'rpyc_ipy[widgets]'``), else a text
line updated in place; in a terminal it is a line on stderr rewritten with
``\\r``. The line says how far, how fast and how long is left::

    pull df: 96.0 MiB of 256.0 MiB (37%), 140.2 MiB/s, 1 s left

Stopping is the notebook's own: the stop button or Ctrl-C raises
``KeyboardInterrupt`` between chunks; leaving the ``with`` block that way marks
the bar as stopped (and any other exception as failed) and lets it propagate.

Work that reports rarely (a handshake, one large request) still shows once
``delay`` has passed: inside the ``with`` block a timer draws the bar then.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, Protocol, TextIO

from rpyc_ipy.ipython.text import sanitize_text, say

__all__ = ["Progress", "describe_progress", "format_amount", "in_kernel"]

Unit = Literal["bytes", "items"]
Outcome = Literal["done", "stopped", "failed"]

#: at most this many redraws a second: a redraw is an IOPub message in a kernel
_REDRAWS_PER_SECOND = 8
_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
#: a delay this long (or infinite) means "never show": no timer is started for it
_LONGEST_DELAY = 24 * 3600.0


def format_amount(amount: float, unit: Unit) -> str:
    """``format_amount(3 << 20, "bytes")`` -> ``'3.0 MiB'``; items are plain counts."""
    if unit == "items":
        return f"{int(amount):,}"
    value = float(amount)
    for name in _BYTE_UNITS:
        if abs(value) < 1024 or name == _BYTE_UNITS[-1]:
            return f"{int(value)} B" if name == "B" else f"{value:.1f} {name}"
        value /= 1024
    raise AssertionError("unreachable: the last unit always returns")


def _format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def describe_progress(label: str, done: int, total: int | None, elapsed: float, unit: Unit,
                      stage: str = "", outcome: Outcome | None = None, start: int = 0) -> str:
    """The one line a bar shows: how far, how fast and how long is left (or how it ended).

    ``start`` units were done before this run (a resumed transfer's kept part): they
    count in how far, not in how fast."""
    amount = format_amount(done, unit)
    if total is not None:
        share = 100 * done // total if total else 100
        amount = f"{amount} of {format_amount(total, unit)} ({share}%)"
    parts = [f"{label}: {amount}"] if done or total is not None else [label]
    if stage:
        parts[0] += f" [{stage}]"
    rate = max(done - start, 0) / elapsed if elapsed > 0 else 0.0
    if outcome is None:
        if rate > 0 and unit == "bytes":
            parts.append(f"{format_amount(rate, unit)}/s")
        if rate > 0 and total is not None and total > done:
            parts.append(f"{_format_duration((total - done) / rate)} left")
    elif outcome == "done":
        parts.append(f"done in {_format_duration(elapsed)}")
        if unit == "bytes" and rate > 0:
            parts.append(f"{format_amount(rate, unit)}/s")
    else:
        parts.append(outcome)
    return ", ".join(parts)


class _Renderer(Protocol):
    def show(self, line: str, fraction: float | None) -> None: ...

    def hide(self) -> None: ...

    def finish(self, line: str, fraction: float | None, outcome: Outcome) -> None: ...


class _TerminalLine:
    """A line on a stream rewritten in place with ``\\r``."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._width = 0

    def show(self, line: str, fraction: float | None) -> None:
        padding = " " * max(0, self._width - len(line))
        self._width = len(line)
        # through the sanitizing sink like all notebook text; the \r is ours, not the line's
        say("", self._stream, end="\r")
        say(line + padding, self._stream, end="")

    def hide(self) -> None:
        if self._width:
            say("", self._stream, end="\r")
            say(" " * self._width, self._stream, end="")
            say("", self._stream, end="\r")
            self._width = 0

    def finish(self, line: str, fraction: float | None, outcome: Outcome) -> None:
        self.show(line, fraction)
        say("", self._stream)


class _KernelLine:
    """A text output of the cell, updated in place through its display id."""

    def __init__(self) -> None:
        from IPython.display import display

        self._handle = display({"text/plain": ""}, raw=True, display_id=True)

    def show(self, line: str, fraction: float | None) -> None:
        if self._handle is not None:
            self._handle.update({"text/plain": line}, raw=True)

    def hide(self) -> None:
        """Nothing to do: the line is an output of its own, other output goes below it."""

    def finish(self, line: str, fraction: float | None, outcome: Outcome) -> None:
        self.show(line, fraction)


class _KernelWidget:
    """An ipywidgets bar with the line beside it."""

    def __init__(self) -> None:
        import ipywidgets as widgets
        from IPython.display import display

        self._bar = widgets.FloatProgress(value=0.0, min=0.0, max=1.0,
                                          layout=widgets.Layout(width="16em"))
        self._text = widgets.Label()
        display(widgets.HBox([self._bar, self._text]))

    def show(self, line: str, fraction: float | None) -> None:
        self._text.value = line
        if fraction is None:
            self._bar.bar_style = "info"
            self._bar.value = 1.0
        else:
            self._bar.value = min(1.0, fraction)

    def hide(self) -> None:
        """Nothing to do: the bar is an output of its own, other output goes below it."""

    def finish(self, line: str, fraction: float | None, outcome: Outcome) -> None:
        self.show(line, 1.0 if outcome == "done" else fraction)
        self._bar.bar_style = {"done": "success", "stopped": "warning", "failed": "danger"}[outcome]


def _renderer_for(shell: Any, stream: TextIO) -> _Renderer:
    """Where a bar shows: a widget or a display line in a kernel, ``stream`` otherwise."""
    if not in_kernel(shell):
        return _TerminalLine(stream)
    try:
        return _KernelWidget()
    except ImportError:
        return _KernelLine()


def in_kernel(shell: Any) -> bool:
    """Whether ``shell`` runs in a Jupyter kernel (whose front end renders widgets and
    display updates), not a terminal."""
    if shell is None:
        return False
    try:
        from ipykernel.zmqshell import ZMQInteractiveShell
    except ImportError:
        return False
    return isinstance(shell, ZMQInteractiveShell)


class Progress:
    """A progress report for one piece of long work; see the module docstring.

    ``total`` may be unknown (``None``) or set later with :meth:`update`;
    ``unit`` is ``"bytes"`` (sizes and rates) or ``"items"`` (counts);
    ``shell`` is the IPython shell (``None``: the current one, if any);
    ``quiet_unseen``: a bar never shown stays hidden even if the work stops or fails
    (for work that says so in its own one-line error);
    ``start``: units done before this run (a resumed transfer's kept part), counted
    in how far but not in the rate;
    ``clock`` and ``stream`` are there for tests and terminals (with a clock of the
    caller's, only reports draw: no timer).
    """

    def __init__(self, label: str, total: int | None = None, *, unit: Unit = "bytes",
                 delay: float = 0.5, shell: Any = None, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 quiet_unseen: bool = False, start: int = 0) -> None:
        self.label = sanitize_text(label)
        self.total = total
        self.unit: Unit = unit
        self.start = self.done = start
        self.stage_text = ""
        self.outcome: Outcome | None = None
        self._delay = delay
        self._shell = shell if shell is not None else _current_shell()
        self._stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._started = clock()
        self._last_draw = float("-inf")
        self._renderer: _Renderer | None = None
        self._quiet_unseen = quiet_unseen
        # the timer that reveals a quiet bar draws from its own thread
        self._lock = threading.RLock()
        self._timer: threading.Timer | None = None

    # -- reporting ---------------------------------------------------------------------------

    def advance(self, amount: int) -> None:
        """``amount`` more units are done."""
        self.update(self.done + amount)

    def update(self, done: int, total: int | None = None) -> None:
        """``done`` units of ``total`` (if given) are done; fits an ``on_progress`` callback."""
        self.done = done
        if total is not None:
            self.total = total
        self._draw()

    __call__ = update

    def stage(self, text: str) -> None:
        """Name the step under way (``"TLS handshake"``), shown after the amount; each new
        step is drawn (once past ``delay``), however soon after the last redraw."""
        self.stage_text = sanitize_text(text)
        self._draw(force=True)

    def detail(self, text: str) -> None:
        """Say how far the current item is (``"96.0 MiB of 256.0 MiB"``), in place of a
        step; redrawn at the usual pace, so it may be called for every chunk."""
        self.stage_text = sanitize_text(text)
        self._draw()

    @property
    def elapsed(self) -> float:
        """Seconds since the work started."""
        return self._clock() - self._started

    @property
    def line(self) -> str:
        """The line the bar shows now."""
        return describe_progress(self.label, self.done, self.total, self.elapsed, self.unit,
                                 self.stage_text, self.outcome, self.start)

    @property
    def shown(self) -> bool:
        """Whether anything has been drawn (work that ends within ``delay`` shows nothing)."""
        return self._renderer is not None

    def hide(self) -> None:
        """Clear a terminal's line so other output starts at its beginning instead of
        after the bar's text; the next report draws it again at once."""
        with self._lock:
            if self._renderer is not None and self.outcome is None:
                self._renderer.hide()
                self._last_draw = float("-inf")

    # -- ending ------------------------------------------------------------------------------

    def close(self, outcome: Outcome = "done") -> None:
        """End the bar; a bar that was never shown stays hidden unless the work did not finish."""
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            if self.outcome is not None:
                return
            self.outcome = outcome
            if outcome == "done":
                self.stage_text = ""  # the steps are over; a stop or failure keeps where it was
            if self._renderer is None and (outcome == "done" or self._quiet_unseen):
                return
            self._renderer = self._renderer or _renderer_for(self._shell, self._stream)
            self._renderer.finish(self.line, self._fraction(), outcome)

    def __enter__(self) -> Progress:
        if self._clock is time.monotonic and 0 < self._delay < _LONGEST_DELAY:
            self._timer = threading.Timer(self._delay, self._draw, kwargs={"force": True})
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close("done")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.close("stopped")
        else:
            self.close("failed")

    # -- drawing -----------------------------------------------------------------------------

    def _fraction(self) -> float | None:
        if self.total is None:
            return None
        return self.done / self.total if self.total else 1.0

    def _draw(self, force: bool = False) -> None:
        with self._lock:
            now = self._clock()
            if self.outcome is not None or now - self._started < self._delay:
                return
            if not force and now - self._last_draw < 1 / _REDRAWS_PER_SECOND:
                return
            self._last_draw = now
            if self._renderer is None:
                self._renderer = _renderer_for(self._shell, self._stream)
            self._renderer.show(self.line, self._fraction())


def _current_shell() -> Any:
    from IPython.core.getipython import get_ipython

    return get_ipython()
