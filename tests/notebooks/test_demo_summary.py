"""The ``make demo`` summary: long lines end in an ellipsis, never in half a name."""

from __future__ import annotations

import re

from rpyc_ipy.demo import summarize

NAME = "RPYC_IPY_DEMO_PASSWORD"


def _notebook(source: str, output: str) -> object:
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    cell = new_code_cell(source, execution_count=3,
                         outputs=[new_output("stream", name="stdout", text=output)])
    return new_notebook(cells=[cell])


def test_long_lines_are_cut_between_words_with_an_ellipsis() -> None:
    # the name straddles the cut, as the quickstart's %rpyc_connect line did
    source = "%rpyc_connect demo={host}:{port} --srp-user {user} " + "x" * 40 + f" {NAME} y"
    output = "disconnected; it stays on the server: " + " ".join(["word"] * 30)
    text = summarize(_notebook(source, output), width=100)
    lines = text.splitlines()
    assert len(lines) == 2 and all(len(line) <= 100 for line in lines), lines
    assert all(line.endswith(" …") for line in lines), lines
    words = set(re.split(r"\s+", source + " " + output))
    shown = lines[0].split()[2:-1] + lines[1].split()[:-1]  # no prompt, no "…"
    assert shown and set(shown) <= words, set(shown) - words  # every word whole
    assert "RPYC_IPY_DEMO" not in text  # cut before the name, not inside it


def test_a_line_without_spaces_is_cut_with_an_ellipsis() -> None:
    text = summarize(_notebook("print(1)", "z" * 300), width=60)
    assert text.splitlines()[1] == "      " + "z" * 52 + " …"


def test_short_lines_are_shown_whole() -> None:
    source = f"%rpyc_connect demo=h:1 --password-env {NAME}"
    text = summarize(_notebook(source, "connected"), width=100)
    assert text == f"In [3]: {source}\n      connected"
