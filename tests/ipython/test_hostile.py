"""A hostile server: nothing remote is rendered or run locally, sizes and times stay
bounded, and the shell stays responsive."""

from __future__ import annotations

import pytest
from ipy_rig import RequestCounter, completions, connect, html_of, run
from ipy_servers import SCRIPT, ServerProcess
from IPython.core.interactiveshell import InteractiveShell

from rpyc_ipy.ipython.session import RemoteSession

HOOKS = ("_repr_html_", "_repr_mimebundle_", "_ipython_display_", "_repr_pretty_",
         "_ipython_key_completions_", "__len__", "__iter__")


def _clean(text: str, html: str = "") -> None:
    """No raw HTML from the server in rendered HTML (text/plain is shown as text, so a
    ``<script>`` there is harmless), and no terminal escape beyond colours anywhere."""
    assert SCRIPT not in html
    assert "\x1b]" not in text + html, "an OSC escape (clipboard/title) reached the output"


def _remote_calls(session: RemoteSession) -> tuple[str, ...]:
    return tuple(session.conn.root.calls())


@pytest.fixture
def hostile(ip: InteractiveShell, hostile_server: ServerProcess) -> RemoteSession:
    return connect(ip, "h", hostile_server)


def test_displaying_hostile_netrefs_runs_none_of_their_hooks(ip: InteractiveShell,
                                                             hostile: RemoteSession) -> None:
    ip.user_ns["evil"] = hostile.conn.root.evil()
    for cell in ("evil", "[evil, evil]", "{'k': evil}", "h.conn.root.evils()",
                 "print(repr(evil)[:10])"):
        result, captured = run(ip, cell)  # ends within ipy_rig.WAIT, or fails
        assert result.error_in_exec is None, (cell, result.error_in_exec)
        _clean(captured.stdout + captured.stderr, html_of(captured))
    assert not [c for c in _remote_calls(hostile) if c in HOOKS]
    # the canary IPython probes with is answered locally: no request at all
    counter = RequestCounter(hostile.conn)
    assert not hasattr(ip.user_ns["evil"], "_ipython_canary_method_should_not_exist_")
    assert not hasattr(ip.user_ns["evil"], "_repr_html_")
    assert counter.count == 0
    counter.remove()


def test_hostile_repr_is_cut_and_sanitized(ip: InteractiveShell, hostile: RemoteSession) -> None:
    ip.user_ns["evil"] = hostile.conn.root.evil()
    ip.run_line_magic("config", "RPyCPolicy.max_repr_chars = 300")
    _, captured = run(ip, "evil")
    assert len(captured.stdout) < 600
    assert "&lt;script&gt;" in html_of(captured) or not html_of(captured)


def test_hostile_execution_events_and_bundles_are_filtered(ip: InteractiveShell,
                                                           hostile: RemoteSession) -> None:
    result, captured = run(ip, "%%remote\nanything")
    assert result.error_in_exec is None
    _clean(captured.stdout + repr(result.result), html_of(captured))
    assert "before" in captured.stdout and "red" in captured.stdout
    assert set(result.result.data) == {"text/plain"}  # no html, no javascript
    # even when trusted, javascript is never in the allowed set
    ip.run_line_magic("config", "RPyCPolicy.trust_remote_display = True")
    result, _ = run(ip, "%%remote\nanything")
    assert "application/javascript" not in result.result.data
    result, _ = run(ip, "%%remote\nmalformed")
    assert result.error_in_exec is not None and "malformed" in str(result.error_in_exec)


def test_hostile_completion_inspection_and_browse_stay_bounded(ip: InteractiveShell,
                                                               hostile: RemoteSession) -> None:
    ip.user_ns["evil"] = hostile.conn.root.evil()
    found = completions(ip, "evil.na")
    assert 0 < len(found) <= 5000  # 50,000 names offered, RPyCPolicy.max_dir_names kept
    found = completions(ip, "%remote na")  # the server offers 100,000 junk matches
    assert len(found) <= 1000
    result, captured = run(ip, "evil?")  # ends within ipy_rig.WAIT, or fails
    assert result.error_in_exec is None
    _clean(captured.stdout)
    result, captured = run(ip, "%rpyc_browse --html")
    assert result.error_in_exec is None
    _clean("", html_of(captured))
    assert not [c for c in _remote_calls(hostile) if c in HOOKS]


def test_poisoned_remote_exceptions_are_shown_safely(ip: InteractiveShell,
                                                     hostile: RemoteSession) -> None:
    result, _ = run(ip, "h.conn.root.boom()")  # ends within ipy_rig.WAIT, or fails
    error = result.error_in_exec
    assert error is not None
    assert "PoisonedError" in type(error).__name__ + getattr(error, "remote_type", "")
    text = str(error)
    assert len(text) < 200_000  # the 1 MB attribute was not copied into the message
    assert run(ip, "1 + 1")[0].result == 2  # still responsive
