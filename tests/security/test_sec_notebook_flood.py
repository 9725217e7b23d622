"""Output floods: a real execution server streams far more output than the notebook
shows, into a real InteractiveShell (issue 13, item 5).

* the notebook holds at most ``RPyCPolicy.max_output_backlog`` characters of it; its
  peak RSS grows by less than that plus a constant, not by the flood;
* the cell says how much was dropped;
* once the notebook stops waiting for a cell, it accepts none of its events, and the
  server, told so, stops sending them;
* the sanitizer is linear: the flood is made of control characters and escapes.
"""

from __future__ import annotations

import _thread
import random
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from notebook_rig import (
    WAIT,
    Screen,
    exec_server,
    extension,
    new_shell,
    peak_rss_kib,
    reset,
    reset_peak_rss,
    within,
)
from waitkit import wait_until

from rpyc_ipy.ipython.backlog import EventBacklog
from rpyc_ipy.ipython.session import RemoteSession
from rpyc_ipy.ipython.text import sanitize_text

MiB = 1 << 20
LIMIT = 4 * MiB  #: the backlog bound at test scale
FLOOD = 256 * MiB  #: what the server sends: 64 times the bound
#: the notebook's own working memory beside what it holds: frames in flight (a batch is
#: at most the server's 4 Mi-character buffer), decoding, the shell; far below FLOOD
CONSTANT = 96 * MiB
#: one MiB of what a hostile server prints: every kind of escape, and controls
CHUNK = ("\x1b]52;c;cHduZWQ=\x07\x1b]0;owned\x07\x1b[2J\x01\x02\x1b[31mred\x1b[0m"
         * 20_000)[:MiB]


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with exec_server() as found:
        yield found


@pytest.fixture(scope="module")
def ip() -> Iterator[InteractiveShell]:
    yield from new_shell()


@pytest.fixture
def session(ip: InteractiveShell, port: int) -> Iterator[RemoteSession]:
    ip.run_line_magic("config", f"RPyCPolicy.max_output_backlog = {LIMIT}")
    ip.run_line_magic("rpyc_connect", f"s=127.0.0.1:{port}")
    session = ip.user_ns["s"]
    try:
        yield session
    finally:
        session.end()
        reset(ip)


def shown_on(screen: Screen, monkeypatch: pytest.MonkeyPatch) -> Screen:
    """``screen`` as the notebook's stdout and stderr (in the test's body: pytest sets its
    own capture again between a fixture and the test)."""
    monkeypatch.setattr("sys.stdout", screen)
    monkeypatch.setattr("sys.stderr", screen)
    return screen


def _flood_code(mib: int, flag: Path) -> str:
    chunk = CHUNK[: MiB // 4]
    return ("import pathlib, sys\n"
            f"chunk = {chunk!r} * 4\n"
            f"for _ in range({mib}):\n"
            "    sys.stdout.write(chunk)\n"
            f"pathlib.Path({str(flag)!r}).touch()\n")


def test_a_flood_the_notebook_cannot_keep_up_with_is_bounded_and_noted(
        ip: InteractiveShell, session: RemoteSession, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    screen = shown_on(Screen(hold=True), monkeypatch)
    flag = tmp_path / "flooded"
    code = _flood_code(FLOOD // MiB, flag)
    reset_peak_rss()
    before = peak_rss_kib()
    cell = threading.Thread(target=lambda: ip.run_cell("%%remote\n" + code), daemon=True)
    cell.start()
    try:
        assert screen.first.wait(WAIT)  # the notebook is stuck showing the first output
        wait_until(flag.exists, WAIT, what="the server to send the whole flood")
        backlog = extension(ip).magics.backlog
        wait_until(lambda: backlog.dropped >= FLOOD - 2 * LIMIT - 8 * MiB, WAIT,
                   what="the flood to reach the notebook")
        grown = (peak_rss_kib() - before) * 1024
    finally:
        screen.go.set()
    cell.join(WAIT)
    assert not cell.is_alive()
    assert backlog.peak <= LIMIT
    assert grown < LIMIT + CONSTANT, f"the notebook grew by {grown / MiB:.0f} MiB"
    dropped = [note for note in screen.notes if "of output dropped here" in note]
    assert dropped and "RPyCPolicy.max_output_backlog" in dropped[0]
    assert "\x1b]" not in screen.tail and "\x1b[2J" not in screen.tail
    assert screen.chars < FLOOD // 4  # what was shown is about the bound, not the flood


def test_no_stream_holds_at_most_the_bound_and_says_what_it_dropped(
        ip: InteractiveShell, session: RemoteSession, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    screen = shown_on(Screen(), monkeypatch)
    code = _flood_code(3 * LIMIT // MiB, tmp_path / "flag")
    within(WAIT, lambda: ip.run_cell("%%remote --no-stream\n" + code))
    assert any("of output dropped here" in note for note in screen.notes)
    assert screen.chars <= LIMIT + 4096


def test_a_cell_shows_at_most_max_cell_output_and_says_what_it_did_not_show(
        ip: InteractiveShell, session: RemoteSession, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    # IPython keeps what a cell shows (and so does a browser): a notebook that keeps up
    # with a flood would grow by all of it without this bound
    ip.run_line_magic("config", f"RPyCPolicy.max_cell_output = {LIMIT}")
    ip.run_line_magic("config", f"RPyCPolicy.max_output_backlog = {64 * MiB}")  # no drops
    screen = shown_on(Screen(), monkeypatch)
    code = ("import sys\nfor _ in range(48):\n"
            "    sys.stdout.write('0123456789abcdef' * 65536)\n")  # 48 MiB, all shown text
    result = within(WAIT, lambda: ip.run_cell("%%remote\n" + code))
    assert result.error_in_exec is None
    cut = [note for note in screen.notes if "more output not shown" in note]
    assert len(cut) == 1 and "44.0 MiB" in cut[0] and "RPyCPolicy.max_cell_output" in cut[0]
    assert LIMIT <= screen.chars <= LIMIT + 4096


def test_after_the_stop_button_no_event_of_the_cell_is_accepted(
        ip: InteractiveShell, session: RemoteSession, monkeypatch: pytest.MonkeyPatch) -> None:
    job_code = ("import sys\nn = 0\nwhile True:\n"
                f"    sys.stdout.write({CHUNK[:4096]!r})\n    n += 1\n")
    started = ip.run_cell("%%remote --bg\n" + job_code)
    assert started.error_in_exec is None
    screen = shown_on(Screen(), monkeypatch)
    def stop_once_output_shows() -> None:
        if screen.first.wait(WAIT):
            _thread.interrupt_main()  # the stop button

    stopper = threading.Thread(target=stop_once_output_shows, daemon=True)
    stopper.start()
    result = ip.run_cell("%rpyc_result")  # follows the job until the stop button
    stopper.join(WAIT)
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    backlog = extension(ip).magics.backlog
    assert backlog.closed and backlog.held == 0

    def printed() -> int:
        return int(session.ns.n)

    def more_output(since: int) -> int:
        return wait_until(lambda: printed() > since + 2000 and printed(), WAIT,
                          what="the job to print 8 MiB more")

    # the job prints on; what reached the notebook since is one refused batch at most
    # (the one that told the server to stop sending)
    first = more_output(printed())
    refused = backlog.refused
    more_output(first)
    assert backlog.refused == refused <= 1
    assert backlog.held == 0


def test_the_backlog_refuses_output_past_its_bound_and_notes_it_once_caught_up() -> None:
    backlog = EventBacklog(limit=100)
    run = object()
    for _ in range(10):
        backlog.put((run, ("stream", "stdout", "x" * 30)))
    assert backlog.held == 90 and backlog.dropped == 210 and backlog.peak == 90
    taken = [backlog.get(timeout=1) for _ in range(3)]
    assert backlog.held == 0
    backlog.put((run, ("stream", "stdout", "y")))  # caught up: the note, then the output
    note = backlog.get(timeout=1)[1]
    assert note[0] == "stream" and "210 B of output dropped here" in note[2]
    assert backlog.get(timeout=1)[1][2] == "y"
    assert all(item[0] is run for item in taken)
    backlog.close()
    backlog.put((run, ("stream", "stdout", "z")))
    assert backlog.refused == 1 and backlog.held == 0 and backlog.refuses()


# -- the sanitizer -----------------------------------------------------------------------------

_REFERENCE = re.compile(  # the former one-pass sanitizer, as the reference of behaviour
    r"\x1b\[[0-9;]*m"
    r"|(\x1b\[[0-?]*[ -/]*[@-~])"
    r"|(\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?)"
    r"|(\x1b[@-_]?)"
    r"|([\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f\x80-\x9f])"
)


def _reference(text: str) -> str:
    return _REFERENCE.sub(lambda m: m.group(0) if m.lastindex is None else "", text)


def test_the_sanitizer_removes_what_the_former_one_did() -> None:
    alphabet = ["\x1b", "[", "]", "\\", "0", "1", ";", "?", "m", "J", "H", "\x07", "\x01",
                "\x9b", "\x7f", "\n", "\t", "a", "é", " ", "52", "c"]
    rng = random.Random(13)
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        assert sanitize_text(text) == _reference(text), repr(text)


@pytest.mark.parametrize("text", [
    "\x01" * (64 * MiB),                   # a control character per match, formerly
    "\x1b[2J" * (8 * MiB),                 # an escape sequence per 4 characters
    "\x1b[" + "1" * (32 * MiB),            # one CSI that never ends
    "\x1b]" + "a" * (32 * MiB),            # one OSC that never ends
])
def test_the_sanitizer_is_fast_on_hostile_text(text: str) -> None:
    # the former sanitizer took about 9 s on 64 Mi controls: far above this bound
    cleaned: Any = within(4.0, lambda: sanitize_text(text))
    assert "\x1b" not in cleaned and "\x01" not in cleaned
