"""Showing remote things safely: netrefs at the prompt, cell output, MIME bundles.

Session cards and reports are in :mod:`.cards`, sanitizing and escaping in
:mod:`.text`. The rule (design §1): a
server must not be able to run code in the notebook. So:

* a netref shown at the prompt (or by ``display()``) costs one request, a
  bounded ``repr``; its remote ``_repr_*_``/``_ipython_display_`` hooks are
  never called, unless ``RPyCPolicy.trust_remote_display`` is on and the
  server runs our engine, and then its bundle comes by value in one request;
* every remote text is sanitized (terminal escapes other than colours are
  removed) and every remote string in our HTML is escaped;
* remote MIME bundles are filtered by :meth:`RPyCPolicy.mimetypes` and sizes;
  without trust, HTML is sanitized and SVG shown as an image (:mod:`.safehtml`).

:class:`NetrefDisplay` installs the prompt side into a shell (and removes it);
:class:`CellOutput` routes a ``%%remote`` cell's events into the cell.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rpyc_ipy.core.netref import BaseNetref, RemoteMethod
from rpyc_ipy.ipython.backlog import cut_note, dropped_note, output_size
from rpyc_ipy.ipython.events import dispatch_event
from rpyc_ipy.ipython.safehtml import sanitize_html, svg_image
from rpyc_ipy.ipython.text import (
    escape,
    netref_connection,
    netref_text,
    remote_type_name,
    sanitize_text,
    say,
)

if TYPE_CHECKING:
    from rpyc_ipy.ipython.execution import RemoteExecution
    from rpyc_ipy.ipython.registry import SessionRegistry
    from rpyc_ipy.ipython.settings import RPyCPolicy

__all__ = ["CellOutput", "NetrefDisplay", "RemoteResult", "filter_bundle", "policy_bundle"]


def filter_bundle(data: dict[str, Any], metadata: dict[str, Any], allowed: frozenset[str],
                  max_bytes: int, sanitized: frozenset[str] = frozenset()
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Keep allowed, small-enough MIME types; images base64 as Jupyter expects;
    ``text/plain`` sanitized; JSON parsed. The ``sanitized`` types are made inert:
    HTML cleaned (dropped if nothing is left), SVG shown as an ``<img>`` (as HTML,
    unless the bundle has HTML)."""
    out: dict[str, Any] = {}
    for mime, value in data.items():
        if mime not in allowed or type(value) not in (str, bytes) or len(value) > max_bytes:
            continue
        if mime == "text/plain":
            out[mime] = sanitize_text(value if type(value) is str else
                                      value.decode("utf-8", "replace"))
        elif mime in sanitized:
            text = value if type(value) is str else value.decode("utf-8", "replace")
            if mime == "text/html":
                clean = sanitize_html(text)
                if clean.strip():  # nothing left: the text/plain form shows instead
                    out[mime] = clean
            elif "text/html" not in data:  # image/svg+xml; HTML is what JupyterLab shows
                out["text/html"] = svg_image(text)
        elif mime.startswith("image/") and mime != "image/svg+xml":
            out[mime] = base64.b64encode(value).decode("ascii") if type(value) is bytes \
                else value
        elif mime == "application/json" or mime.endswith("+json"):
            try:
                out[mime] = json.loads(value)
            except ValueError:
                continue
        else:
            out[mime] = value if type(value) is str else value.decode("utf-8", "replace")
    if "text/plain" not in out:
        out["text/plain"] = "<remote output: no MIME type allowed by RPyCPolicy>" if data else ""
    kept_md = {k: v for k, v in metadata.items() if k in out and isinstance(v, dict)}
    return out, kept_md


def policy_bundle(data: dict[str, Any], metadata: dict[str, Any], policy: RPyCPolicy
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`filter_bundle` as ``policy`` says: its MIME types, sizes and sanitizing."""
    return filter_bundle(data, metadata, policy.mimetypes(), policy.max_bundle_bytes,
                         policy.sanitized_mimetypes())


class _Budget(threading.local):
    """Remote reprs allowed while one display call formats (nested netrefs)."""

    count = 0
    deadline = 0.0


class NetrefDisplay:
    """The prompt side of safe display; ``install()`` into a shell, ``uninstall()`` after.

    It wraps the shell's ``display_formatter.format`` (netrefs get our bundle,
    everything else the original), and guards the plain-text pretty printers
    so netrefs nested in local containers cost one bounded ``repr`` each, at
    most ``NESTED_REPRS`` per display.
    """

    NESTED_REPRS = 20

    def __init__(self, shell: Any, policy: RPyCPolicy, registry: SessionRegistry) -> None:
        self.shell = shell
        self.policy = policy
        self.registry = registry
        self._formatter: Any = None
        self._original_format: Callable[..., Any] | None = None
        self._wrapped: dict[Any, Any] = {}
        self._wrapped_deferred: dict[Any, Any] = {}
        self._budget = _Budget()

    # -- install / uninstall -------------------------------------------------------------

    def install(self) -> None:
        formatter = self.shell.display_formatter
        self._formatter = formatter
        self._original_format = formatter.format
        formatter.format = self.format  # instance attribute: shadows the method
        plain = formatter.formatters["text/plain"]
        for cls, printer in list(plain.type_printers.items()):
            if isinstance(cls, type) and cls.__module__ == "builtins":
                guarded = self._guard(printer)
                plain.type_printers[cls] = guarded
                self._wrapped[cls] = (printer, guarded)
        for key, printer in list(plain.deferred_printers.items()):
            guarded = self._guard(printer)
            plain.deferred_printers[key] = guarded
            self._wrapped_deferred[key] = (printer, guarded)
        plain.type_printers[BaseNetref] = self._pretty
        plain.type_printers[RemoteMethod] = self._pretty

    def uninstall(self) -> None:
        formatter = self._formatter
        if formatter is None:
            return
        if formatter.__dict__.get("format") == self.format:
            del formatter.format
        plain = formatter.formatters["text/plain"]
        for table, wrapped in ((plain.type_printers, self._wrapped),
                               (plain.deferred_printers, self._wrapped_deferred)):
            for key, (original, guarded) in wrapped.items():
                if table.get(key) is guarded:  # not replaced by someone since
                    table[key] = original
            wrapped.clear()
        for cls in (BaseNetref, RemoteMethod):
            if plain.type_printers.get(cls) == self._pretty:
                del plain.type_printers[cls]
        self._formatter = None

    # -- formatting --------------------------------------------------------------------------

    def format(self, obj: Any, include: Any = None, exclude: Any = None) -> Any:
        """``DisplayFormatter.format`` with netrefs shown by :meth:`bundle`."""
        assert self._original_format is not None
        self._budget.count = self.NESTED_REPRS
        self._budget.deadline = time.monotonic() + self.policy.display_timeout
        if isinstance(obj, BaseNetref) or type(obj) is RemoteMethod:
            data, metadata = self.bundle(obj)
            if include:
                data = {k: v for k, v in data.items() if k in include}
            if exclude:
                data = {k: v for k, v in data.items() if k not in exclude}
            return data, metadata
        return self._original_format(obj, include=include, exclude=exclude)

    def bundle(self, obj: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """What a netref looks like in the notebook; see the module docstring."""
        policy = self.policy
        session = self.registry.for_conn(netref_connection(obj))
        if policy.trust_remote_display and session is not None and session.has_engine \
                and type(obj) is not RemoteMethod:
            try:
                data, metadata = session.mimebundle(
                    obj, tuple(sorted(policy.mimetypes())), policy.max_bundle_bytes,
                    timeout=policy.display_timeout)
                return policy_bundle(data, metadata, policy)
            except Exception:  # fall back to the plain repr
                pass
        text = netref_text(obj, policy.max_repr_chars, policy.display_timeout, session)
        where = f" on {session.name}" if session is not None else ""
        label = f"remote {remote_type_name(obj)}{where}"
        html_text = (f'<div title="{escape(label)}"><span style="font-size:80%;opacity:.7">'
                     f"&#x21c4; {escape(label)}</span><pre style=\"margin:0\">{escape(text)}"
                     "</pre></div>")
        return {"text/plain": text, "text/html": html_text}, {}

    def _pretty(self, obj: Any, printer: Any, cycle: bool) -> None:
        budget = self._budget
        if budget.count <= 0 or (budget.deadline and time.monotonic() > budget.deadline):
            printer.text(f"<remote {remote_type_name(obj)}>")
            return
        budget.count -= 1
        remaining = max(0.1, budget.deadline - time.monotonic()) if budget.deadline else \
            self.policy.display_timeout
        session = self.registry.for_conn(netref_connection(obj))
        printer.text(netref_text(obj, self.policy.max_repr_chars, remaining, session))

    def _guard(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def guarded(obj: Any, printer: Any, cycle: bool) -> Any:
            if isinstance(obj, BaseNetref) or type(obj) is RemoteMethod:
                return self._pretty(obj, printer, cycle)
            return original(obj, printer, cycle)

        guarded.__wrapped__ = original  # type: ignore[attr-defined]
        return guarded


# -- cell output -----------------------------------------------------------------------------


class CellOutput:
    """Routes the events of ``%%remote`` executions into the running cell.

    With ``labels`` (fan-out), every output line is prefixed ``[name]`` and
    display data gets a small label first. Without ``stream`` the output is held until
    its cell ends, at most ``RPyCPolicy.max_output_backlog`` characters of it (what
    does not fit is dropped, and a note says how much). A cell shows at most
    ``RPyCPolicy.max_cell_output`` characters of output in all; it ends with a note
    of what it did not show.
    """

    def __init__(self, policy: RPyCPolicy, labels: bool = False,
                 stream: bool = True) -> None:
        self.policy = policy
        self.labels = labels
        self.stream = stream
        self._partial: dict[tuple[str, str], bool] = {}
        self._held: list[tuple[RemoteExecution, tuple[Any, ...]]] = []
        self._held_size = 0
        self._held_dropped: dict[RemoteExecution, int] = {}
        self._shown = 0  # characters of output shown by this cell
        self._cut = 0  # characters of output not shown, past max_cell_output

    def __call__(self, execution: RemoteExecution, event: tuple[Any, ...]) -> None:
        if not self.stream and event[0] != "done":
            self._hold(execution, event)
            return
        if event[0] == "done" and self._held:
            held, self._held = self._held, []
            for item in held:
                if item[0] is execution:
                    self._held_size -= output_size(item[1])
                    self._dispatch(*item)
                else:
                    self._held.append(item)
        if event[0] == "done" and execution in self._held_dropped:
            self.write(execution.session.name, "stderr", dropped_note(
                self._held_dropped.pop(execution), self.policy.max_output_backlog))
        self._dispatch(execution, event)

    def _hold(self, execution: RemoteExecution, event: tuple[Any, ...]) -> None:
        size = output_size(event)
        if self._held_size + size > self.policy.max_output_backlog:
            self._held_dropped[execution] = self._held_dropped.get(execution, 0) + size
            return
        self._held_size += size
        self._held.append((execution, event))

    def _dispatch(self, execution: RemoteExecution, event: tuple[Any, ...]) -> None:
        name = execution.session.name
        if event[0] == "done" and self._cut:
            self.write(name, "stderr", cut_note(self._cut, self.policy.max_cell_output))
            self._cut = 0
        shown = self._within_bound(event)
        if shown is None:
            return
        dispatch_event(shown, lambda stream, text: self.write(name, stream, text),
                       lambda data, md, did, update: self.display(name, data, md, did, update),
                       self.clear)
        if event[0] == "done":
            self.end_lines(name)

    def _within_bound(self, event: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """``event`` as far as the cell may still show output (``None``: none of it)."""
        size = output_size(event)
        room = self.policy.max_cell_output - self._shown
        if size <= room:
            self._shown += size
            return event
        self._cut += size - max(room, 0)
        self._shown += max(room, 0)
        if room > 0 and event[0] == "stream" and len(event) == 3 and type(event[2]) is str:
            return (*event[:2], event[2][:room])
        return None

    def write(self, name: str, stream: str, text: str) -> None:
        if self.labels:
            text = self._label_lines(name, stream, text)
        say(text, sys.stdout if stream == "stdout" else sys.stderr, end="")

    def _label_lines(self, name: str, stream: str, text: str) -> str:
        at_start = not self._partial.get((name, stream), False)
        out = []
        for line in text.splitlines(keepends=True):
            out.append((f"[{name}] " if at_start else "") + line)
            at_start = line.endswith("\n")
        self._partial[(name, stream)] = not at_start
        return "".join(out)

    def end_lines(self, name: str) -> None:
        for stream in ("stdout", "stderr"):
            if self._partial.pop((name, stream), False):
                say("", sys.stdout if stream == "stdout" else sys.stderr)

    def display(self, name: str, data: dict[str, Any], metadata: dict[str, Any],
                display_id: str | None, update: bool) -> None:
        from IPython.display import display

        policy = self.policy
        data, metadata = policy_bundle(data, metadata, policy)
        if self.labels:
            self.end_lines(name)
            say(f"[{name}]")
        kwargs: dict[str, Any] = {"raw": True, "metadata": metadata or None}
        if display_id:
            kwargs["display_id"] = f"rpyc-{name}-{display_id}"
            kwargs["update"] = update
        display(data, **kwargs)

    def clear(self, wait: bool) -> None:
        from IPython.display import clear_output

        clear_output(wait=wait)


class RemoteResult:
    """A ``%%remote`` cell's last expression, shown as the cell's ``Out[]`` (by value)."""

    def __init__(self, session: str, data: dict[str, Any], metadata: dict[str, Any]) -> None:
        self.session = session
        self.data = data
        self.metadata = metadata

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None
                          ) -> tuple[dict[str, Any], dict[str, Any]]:
        return dict(self.data), dict(self.metadata)

    def __repr__(self) -> str:
        return str(self.data.get("text/plain", ""))
