"""Reading ``%remote``/``%%remote`` text: which options, which code, where the cursor is.

Shared by the magics (to run) and the completer (to complete inside a cell)::

    split_options("-s a,b --timeout 5 x + 1")   # ("-s a,b --timeout 5", "x + 1")
    remote_cell("%%remote -s gpu\\nimport o", 1, 8)  # ("gpu", "import o", 8)
"""

from __future__ import annotations

import re

__all__ = ["remote_cell", "remote_line", "session_option", "split_options"]

# the options of %remote/%%remote, each with its argument if it takes one
_OPTION = re.compile(
    r"\s*(?:(?:-s|--sessions?|-o|--output|--timeout)(?:\s+|=)\S+|--all|--no-stream|--silent)"
    r"(?=\s|$)")
_SESSION = re.compile(r"(?:^|\s)(?:-s|--sessions?)(?:\s+|=)(\S+)")


def _options_end(line: str) -> int:
    pos = 0
    while True:
        found = _OPTION.match(line, pos)
        if found is None or found.end() == pos:
            return pos
        pos = found.end()


def split_options(line: str) -> tuple[str, str]:
    """``(options, code)``: the leading ``%remote`` options, and the code after them."""
    pos = _options_end(line)
    return line[:pos].strip(), line[pos:].strip()


def session_option(options: str) -> str | None:
    """The first session named by ``-s a,b`` in an options string, or None."""
    found = _SESSION.search(options)
    if found is None:
        return None
    return found.group(1).split(",")[0] or None


def remote_cell(full_text: str, cursor_line: int, cursor_column: int
                ) -> tuple[str | None, str, int] | None:
    """For a cursor inside a ``%%remote`` cell body: ``(session or None, body, offset)``."""
    lines = full_text.split("\n")
    if not lines or not lines[0].lstrip().startswith("%%remote") or cursor_line < 1:
        return None
    first = lines[0].lstrip()[len("%%remote"):]
    if first and not first[0].isspace():
        return None  # %%remote_something else
    body_lines = lines[1:]
    if cursor_line - 1 >= len(body_lines):
        return None
    offset = sum(len(line) + 1 for line in body_lines[: cursor_line - 1]) + cursor_column
    return session_option(first), "\n".join(body_lines), offset


def remote_line(line: str, cursor_column: int) -> tuple[str | None, str, int] | None:
    """For a cursor in the code of a ``%remote`` line: ``(session or None, code, offset)``."""
    stripped = line.lstrip()
    if not stripped.startswith("%remote") or stripped.startswith("%%"):
        return None
    indent = len(line) - len(stripped)
    rest = stripped[len("%remote"):]
    if not rest or not rest[0].isspace():
        return None
    end = _options_end(rest)
    options, code = rest[:end].strip(), rest[end:].lstrip()
    code_start = indent + len("%remote") + len(rest) - len(code)
    if cursor_column < code_start:
        return None
    return session_option(options), code, cursor_column - code_start
