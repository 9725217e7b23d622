"""Remote text made safe to show: sanitized, escaped, bounded.

The bottom of the notebook layer: it imports no other module of
:mod:`rpyc_ipy.ipython`, so every one of them can use it::

    sanitize_text(remote_str)        # colours kept, other escapes and controls removed
    say(f"[rpyc] {note}", sys.stderr)  # print, sanitized: how the notebook layers print
    escape(value)                    # for our HTML
    netref_text(obj, 10_000)         # a netref's repr: one request, bounded, sanitized

The colours (``RED`` ... ``RESET``) are the ones our own text output uses.
"""

from __future__ import annotations

import html
import re
import sys
from typing import TYPE_CHECKING, Any, TextIO

from rpyc_ipy.core.netref import RemoteMethod, method_target, resolve_method
from rpyc_ipy.protocol import consts

if TYPE_CHECKING:
    from rpyc_ipy.ipython.session import RemoteSession

__all__ = [
    "AMBER",
    "DIM",
    "GREEN",
    "RED",
    "RESET",
    "escape",
    "netref_connection",
    "netref_text",
    "remote_type_name",
    "sanitize_text",
    "say",
]

RED, AMBER, GREEN, DIM, RESET = "\x1b[31m", "\x1b[33m", "\x1b[32m", "\x1b[2m", "\x1b[0m"
_get = object.__getattribute__

# Two passes, each linear and in C: one regex substitution (a plain replacement, no
# Python call per match) removes every ESC sequence but SGR (colours): other CSI, OSC
# (titles, clipboard, hyperlinks), two-byte escapes and a lone ESC; then
# ``str.translate`` deletes the C0/C1 controls but \n \r \t. ESC itself is not in
# the table: every ESC left after the first pass starts a colour.
_ESCAPES = re.compile(
    r"\x1b(?!\[[0-9;]*m)"                     # an ESC that does not start a colour, and
    r"(?:\[[0-?]*[ -/]*[@-~]"                  # the rest of a CSI,
    r"|\][^\x07\x1b]*(?:\x07|\x1b\\)?"          # or of an OSC,
    r"|[@-_]?)"                                # or of a two-byte escape
)
_CONTROLS = dict.fromkeys(
    [*range(0x00, 0x09), 0x0b, 0x0c, *range(0x0e, 0x1b), *range(0x1c, 0x20),
     *range(0x7f, 0xa0)])


def sanitize_text(text: str) -> str:
    """Remote text made safe for a terminal or a notebook: colours kept, other
    escape sequences and control characters removed (in time linear in its length)."""
    if type(text) is not str:
        return ""
    if "\x1b" in text:
        text = _ESCAPES.sub("", text)
    return text.translate(_CONTROLS)


def say(text: str, file: TextIO | None = None, *, end: str = "\n") -> None:
    """Print ``text`` to ``file`` (``sys.stdout``) sanitized: the one way the notebook
    layers put text on the screen, as what they print may quote a server."""
    out = sys.stdout if file is None else file
    out.write(sanitize_text(text) + end)
    out.flush()


def escape(text: Any) -> str:
    """HTML-escaped ``str(text)`` (for values we produced or validated as str)."""
    return html.escape(text if type(text) is str else str(text), quote=True)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit:,} more)"


# -- netrefs -----------------------------------------------------------------------------------


def remote_type_name(obj: Any) -> str:
    """The remote class name of a netref, known locally (no request)."""
    target = method_target(obj)[0] if type(obj) is RemoteMethod else obj
    try:
        name_pack = _get(target, "____id_pack__")[0]
    except Exception:
        return type(obj).__name__
    return name_pack[len("builtins."):] if name_pack.startswith("builtins.") else name_pack


def netref_connection(obj: Any) -> Any:
    """The connection a netref (or a remote method) belongs to, without a request."""
    target = method_target(obj)[0] if type(obj) is RemoteMethod else obj
    return _get(target, "____conn__")


def netref_text(obj: Any, max_chars: int = 10_000, timeout: float = 5.0,
                session: RemoteSession | None = None) -> str:
    """A netref's ``repr``: one request, bounded in time and length, sanitized.

    With a ``session`` that runs our engine, the server cuts the text, so a huge
    repr never crosses the wire; otherwise it is a plain REPR request, cut here.
    """
    if type(obj) is RemoteMethod:
        try:
            obj = resolve_method(obj)
        except Exception as exc:
            return f"<remote method: {type(exc).__name__}>"
    conn = netref_connection(obj)
    kind = remote_type_name(obj)
    try:
        if session is not None and session.has_engine and not session.closed:
            text = session.repr_text(obj, max_chars, timeout=timeout)
        else:
            result = conn.async_request(consts.HANDLE_REPR, obj)
            result.wait(timeout)
            text = result.value
    except TimeoutError:
        return f"<remote {kind}: repr took longer than {timeout:g} s>"
    except Exception as exc:
        return f"<remote {kind}: repr failed: {sanitize_text(_first_line(exc))}>"
    if type(text) is not str:  # a hostile peer answered with something else
        return f"<remote {kind}>"
    return _cut(sanitize_text(text), max_chars)


def _first_line(exc: BaseException) -> str:
    text = exc.args[0] if exc.args and isinstance(exc.args[0], str) else type(exc).__name__
    return text.split("\n", 1)[0][:200]
