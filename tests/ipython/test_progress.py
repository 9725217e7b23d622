"""The progress line: quiet for quick work, then how far, how fast, how long left; a stop shows."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest
from ipy_rig import WAIT
from IPython.core.interactiveshell import InteractiveShell

from rpyc_ipy.ipython.progress import Progress, describe_progress, format_amount

ROOT = Path(__file__).resolve().parents[2]
MIB = 1 << 20


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def terminal_bar(clock: Clock, total: int | None = 256 * MIB, **kwargs: object
                 ) -> tuple[Progress, io.StringIO]:
    stream = io.StringIO()
    shell = InteractiveShell.instance()
    bar = Progress("pull df", total, shell=shell, stream=stream, clock=clock, **kwargs)  # type: ignore[arg-type]
    return bar, stream


def test_amounts_read_like_a_person_writes_them() -> None:
    assert format_amount(0, "bytes") == "0 B"
    assert format_amount(1023, "bytes") == "1023 B"
    assert format_amount(3 * MIB, "bytes") == "3.0 MiB"
    assert format_amount(5 << 40, "bytes") == "5.0 TiB"
    assert format_amount(1 << 60, "bytes") == "1048576.0 TiB"
    assert format_amount(12345, "items") == "12,345"


def test_the_line_says_how_far_how_fast_and_how_long_is_left() -> None:
    line = describe_progress("pull df", 96 * MIB, 256 * MIB, 2.0, "bytes")
    assert line == "pull df: 96.0 MiB of 256.0 MiB (37%), 48.0 MiB/s, 3 s left"
    assert describe_progress("upload data", 0, None, 0.0, "bytes") == "upload data"
    assert describe_progress("run", 2, 5, 4.0, "items", stage="gpu") == (
        "run: 2 of 5 (40%) [gpu], 6 s left")
    assert describe_progress("pull", 10 * MIB, 10 * MIB, 5.0, "bytes", outcome="done") == (
        "pull: 10.0 MiB of 10.0 MiB (100%), done in 5 s, 2.0 MiB/s")
    assert describe_progress("pull", MIB, 4 * MIB, 1.0, "bytes", outcome="stopped") == (
        "pull: 1.0 MiB of 4.0 MiB (25%), stopped")
    assert describe_progress("x", 1, 2, 1.0, "items").endswith("1 s left")
    slow = describe_progress("x", 1, 10_000, 1.0, "items")
    assert slow.endswith("2 h 46 min left")
    assert describe_progress("x", 0, 0, 0.0, "bytes") == "x: 0 B of 0 B (100%)"


def test_a_resumed_part_counts_in_how_far_not_in_how_fast() -> None:
    line = describe_progress("download big", 160 * MIB, 256 * MIB, 2.0, "bytes", start=128 * MIB)
    assert line == "download big: 160.0 MiB of 256.0 MiB (62%), 16.0 MiB/s, 6 s left"
    clock = Clock()
    bar, stream = terminal_bar(clock, start=128 * MIB)
    with bar:
        clock.now += 4.0
        bar.update(256 * MIB)
    assert stream.getvalue().split("\r")[-1].startswith(
        "pull df: 256.0 MiB of 256.0 MiB (100%), done in 4 s, 32.0 MiB/s")


def test_hide_clears_the_terminal_line_and_the_next_report_redraws_it() -> None:
    clock = Clock()
    bar, stream = terminal_bar(clock)
    with bar:
        clock.now += 1.0
        bar.advance(32 * MIB)
        drawn = stream.getvalue()
        bar.hide()
        cleared = stream.getvalue()[len(drawn):]
        width = len(drawn.split("\r")[-1])
        assert cleared == "\r" + " " * width + "\r"  # other output now starts the line
        bar.hide()  # already clear: nothing more
        assert stream.getvalue() == drawn + cleared
        bar.update(bar.done)  # at once, however soon after the last draw
        assert stream.getvalue().endswith("pull df: 32.0 MiB of 256.0 MiB (12%), "
                                          "32.0 MiB/s, 7 s left")


def test_quick_work_shows_nothing() -> None:
    clock = Clock()
    bar, stream = terminal_bar(clock)
    with bar:
        clock.now += 0.2
        bar.update(256 * MIB)
    assert not bar.shown and stream.getvalue() == ""
    assert bar.outcome == "done"


def test_long_work_rewrites_one_line_and_ends_it() -> None:
    clock = Clock()
    bar, stream = terminal_bar(clock)
    with bar:
        for _ in range(8):
            clock.now += 1.0
            bar.advance(32 * MIB)
    text = stream.getvalue()
    lines = text.split("\r")[1:]
    assert len(lines) == 9  # one draw per step after the delay, then the final line
    assert lines[0].startswith("pull df: 32.0 MiB of 256.0 MiB (12%), 32.0 MiB/s, 7 s left")
    assert lines[-1].startswith("pull df: 256.0 MiB of 256.0 MiB (100%), done in 8 s")
    assert text.endswith("\n") and text.count("\n") == 1


def test_redraws_are_bounded_however_often_work_reports() -> None:
    clock = Clock()
    bar, stream = terminal_bar(clock, total=10_000, unit="items")
    clock.now += 1.0
    for _ in range(10_000):
        clock.now += 0.0001
        bar.advance(1)
    # one second of reports: at most eight redraws, however many updates came
    assert 1 <= stream.getvalue().count("\r") <= 9


def test_a_stop_marks_the_line_and_propagates() -> None:
    clock = Clock()
    bar, stream = terminal_bar(clock)
    with pytest.raises(KeyboardInterrupt):
        with bar:
            clock.now += 0.1
            bar.advance(MIB)
            raise KeyboardInterrupt
    assert bar.outcome == "stopped"
    # shown even though it was quick: the user should see where the work stopped
    assert stream.getvalue().rstrip().endswith("pull df: 1.0 MiB of 256.0 MiB (0%), stopped")


def test_a_failure_marks_the_line_failed() -> None:
    clock = Clock()
    bar, stream = terminal_bar(clock)
    with pytest.raises(ConnectionError):
        with bar:
            clock.now += 2
            bar.advance(MIB)
            raise ConnectionError("lost")
    assert stream.getvalue().rstrip().endswith("failed")


def test_stages_and_unknown_totals() -> None:
    clock = Clock()
    bar, stream = terminal_bar(clock, total=None, unit="items")
    clock.now += 1
    bar.stage("TLS handshake")
    assert stream.getvalue() == "\rpull df [TLS handshake]"
    clock.now += 1
    bar.update(3, total=4)
    assert bar.line == "pull df: 3 of 4 (75%) [TLS handshake], 1 s left"


def test_remote_text_in_a_label_is_sanitized() -> None:
    hostile = Progress("x\x1b]0;title\x07y", shell=InteractiveShell.instance(),
                       stream=io.StringIO())
    assert "\x1b" not in hostile.label and "\x07" not in hostile.label
    assert hostile.label.startswith("x") and hostile.label.endswith("y")


def test_in_a_kernel_the_line_updates_in_place(tmp_path: Path) -> None:
    """A real kernel: the bar is one display output, updated through its display id."""
    import nbformat
    from nbclient import NotebookClient

    code = ("from rpyc_ipy.ipython.progress import Progress\n"
            "with Progress('upload data', 4 << 20, delay=0) as bar:\n"
            "    for _ in range(4):\n"
            "        bar.advance(1 << 20)\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    NotebookClient(nb, kernel_name="python3", timeout=int(WAIT), startup_timeout=60,
                   ).execute(env=env, stderr=subprocess.DEVNULL)
    outputs = nb.cells[0].outputs
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        assert [o.output_type for o in outputs] == ["display_data"]
        assert outputs[0].data["text/plain"].startswith(
            "upload data: 4.0 MiB of 4.0 MiB (100%), done in")
    else:
        assert [o.output_type for o in outputs] == ["display_data"]
        assert "application/vnd.jupyter.widget-view+json" in outputs[0].data


def test_work_that_reports_rarely_still_shows_once_the_delay_passed() -> None:
    """A handshake reports its step once, then waits: the bar's timer shows it anyway."""
    from waitkit import wait_until

    stream = io.StringIO()
    with Progress("connect gpu", unit="items", delay=0.05, shell=InteractiveShell.instance(),
                  stream=stream) as bar:
        bar.stage("TLS handshake")  # within the delay: not drawn by the report itself
        wait_until(stream.getvalue, WAIT, what="the bar to show without another report")
    assert stream.getvalue().startswith("\rconnect gpu [TLS handshake]")
    assert "\rconnect gpu, done in " in stream.getvalue()  # the steps end with the work


def test_quiet_unseen_keeps_a_stopped_bar_hidden_if_it_never_showed() -> None:
    """For work that ends in its own one-line message: no second line about the stop."""
    clock = Clock()
    bar, stream = terminal_bar(clock, quiet_unseen=True)
    with pytest.raises(KeyboardInterrupt):
        with bar:
            bar.advance(MIB)
            raise KeyboardInterrupt
    assert bar.outcome == "stopped" and stream.getvalue() == ""
    shown, stream = terminal_bar(clock, quiet_unseen=True)
    with pytest.raises(KeyboardInterrupt):
        with shown:
            clock.now += 1
            shown.advance(MIB)
            raise KeyboardInterrupt
    assert stream.getvalue().rstrip().endswith("stopped")  # a shown bar says how it ended


def test_details_follow_the_bars_pace() -> None:
    """detail() may come with every chunk: it is drawn at most eight times a second."""
    clock = Clock()
    bar, stream = terminal_bar(clock, total=1, unit="items")
    clock.now += 1
    bar.detail("4.0 MiB of 24.0 MiB")
    bar.detail("8.0 MiB of 24.0 MiB")  # within the same eighth of a second: not drawn
    clock.now += 0.2
    bar.detail("12.0 MiB of 24.0 MiB")
    assert stream.getvalue().split("\r")[1:] == [
        "pull df: 0 of 1 (0%) [4.0 MiB of 24.0 MiB]",
        "pull df: 0 of 1 (0%) [12.0 MiB of 24.0 MiB]"]
