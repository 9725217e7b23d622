"""TAB and ``?`` against a server object that hangs in ``__dir__`` and ``__getattr__``:
they return within ``completion_timeout`` / ``display_timeout``, whatever matcher
IPython would run (issue 13, item 4).

The object waits on an Event the test releases at teardown, so no test waits for it;
each completion runs on a helper thread joined with a generous bound (a completion
that asked the netref with an ordinary request would block for ``request_timeout``,
30 s, once per request).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from notebook_rig import completions, extension, new_shell, reset, run_captured, within

import rpyc_ipy
from rpyc_ipy.ipython.session import RemoteSession

BOUND = 10.0  #: far above 0.3 s (our timeouts), far below 30 s (one ordinary request)
HANG = 120.0  #: how long the object would hang if the test did not release it


@pytest.fixture(scope="module")
def ip() -> Iterator[InteractiveShell]:
    yield from new_shell()


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # the server's threads stuck in __dir__/__getattr__ end now


@pytest.fixture
def slow(ip: InteractiveShell, release: threading.Event,
         start_server: Callable[..., rpyc_ipy.ThreadedServer]) -> Iterator[RemoteSession]:
    class Hangs:
        """Every dir() and missing attribute waits for the test to let go."""

        def __dir__(self) -> list[str]:
            release.wait(HANG)
            return ["name_one", "name_two"]

        def __getattr__(self, name: str) -> Any:
            release.wait(HANG)
            if name.startswith("name"):
                return self
            raise AttributeError(name)

    class SlowService(rpyc_ipy.Service):
        def on_connect(self, conn: Any) -> None:
            super().on_connect(conn)
            conn.update_policy(allow_public_attrs=True)

        def exposed_hangs(self) -> Hangs:
            return Hangs()

    server = start_server(SlowService)
    ip.run_line_magic("config", "RPyCMagics.completion_timeout = 0.3")
    ip.run_line_magic("config", "RPyCPolicy.display_timeout = 0.3")
    run_captured(ip, f"%rpyc_connect s=127.0.0.1:{server.port}")
    session = ip.user_ns["s"]
    ip.user_ns["slow"] = session.conn.root.hangs()
    try:
        yield session
    finally:
        release.set()
        reset(ip)


@pytest.mark.parametrize("text", ["slow.na", "slow.", "slow.name_one.na", "slow(",
                                  "slow[", "slow[0].", "x = 1 + slow.na", "s.conn.root.hangs"])
def test_tab_on_a_hanging_netref_returns_within_the_completion_timeout(
        ip: InteractiveShell, slow: RemoteSession, text: str) -> None:
    found = within(BOUND, lambda: completions(ip, text))
    assert all(not name.startswith("_ipython") for name in found)


def test_a_claimed_completion_leaves_the_other_matchers_enabled_after(
        ip: InteractiveShell, slow: RemoteSession) -> None:
    disabled = list(ip.Completer.disable_matchers)
    within(BOUND, lambda: completions(ip, "slow.na"))
    assert ip.Completer.disable_matchers == disabled
    ip.user_ns["local_value"] = 1
    assert "local_value" in within(BOUND, lambda: completions(ip, "local_va"))
    assert "close" in within(BOUND, lambda: completions(ip, "s.clo"))  # the session's own


def test_tab_answers_from_the_cache_once_the_lookup_gave_up(ip: InteractiveShell,
                                                             slow: RemoteSession) -> None:
    completer = extension(ip).completer
    within(BOUND, lambda: completions(ip, "slow.na"))
    asked = completer.requests
    within(BOUND, lambda: completions(ip, "slow.na"))
    assert completer.requests == asked  # the empty answer is cached: no second wait


@pytest.mark.parametrize("name", ["slow", "slow.name_one", "slow.name_one.name_two",
                                  "slow.missing"])
def test_question_mark_on_a_hanging_netref_returns_within_the_display_timeout(
        ip: InteractiveShell, slow: RemoteSession, name: str) -> None:
    result, captured = within(BOUND, lambda: run_captured(ip, f"{name}?"))
    assert result.error_in_exec is None
    if name != "slow":  # the lookup gave up: IPython says so, in one line
        assert "not found" in captured.stdout


def test_question_mark_still_finds_a_remote_attribute_that_answers(
        ip: InteractiveShell, slow: RemoteSession, release: threading.Event) -> None:
    release.set()
    result, captured = within(BOUND, lambda: run_captured(ip, "slow.name_one?"))
    assert result.error_in_exec is None
    assert "not found" not in captured.stdout and "Hangs" in captured.stdout
