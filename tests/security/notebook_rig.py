"""Helpers for the notebook security tests: a real InteractiveShell with the extension
loaded, and bounded waits on what it does (a uniquely named module, so tests can
import it)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from IPython.core.interactiveshell import InteractiveShell

from rpyc_ipy.ipython.extension import Extension, extension_of

WAIT = 20.0  #: upper bound of any one wait in these tests


def new_shell() -> Iterator[InteractiveShell]:
    """One InteractiveShell with the extension loaded; unloaded and cleared after."""
    InteractiveShell.clear_instance()
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "rpyc_ipy")
    try:
        yield ip
    finally:
        ip.run_line_magic("unload_ext", "rpyc_ipy")
        ip.reset(new_session=False)
        InteractiveShell.clear_instance()


def extension(ip: InteractiveShell) -> Extension:
    found = extension_of(ip)
    assert found is not None
    return found


def reset(ip: InteractiveShell) -> None:
    """Close the sessions, restore the settings and drop the user's names."""
    ext = extension(ip)
    ext.registry.close_all()
    for configurable in (ext.policy, ext.magics):
        for name in configurable.trait_names(config=True):
            configurable.set_trait(name, configurable.trait_defaults(name))
    for name in [n for n in ip.user_ns if not n.startswith("_") and n not in (
            "In", "Out", "exit", "quit", "get_ipython")]:
        del ip.user_ns[name]


def within(seconds: float, action: Callable[[], Any]) -> Any:
    """``action()`` on a helper thread; its result if it ended within ``seconds`` (the
    test fails otherwise: the thing it checks blocked)."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(("ok", action()))
        except BaseException as exc:  # raised again on the test's thread
            outcome.append(("error", exc))

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still blocked after {seconds:g} s"
    kind, value = outcome[0]
    if kind == "error":
        raise value
    return value


def completions(ip: InteractiveShell, text: str) -> list[str]:
    """IPython's completions for ``text``, cursor at the end."""
    from IPython.core.completer import provisionalcompleter

    with provisionalcompleter():
        return [c.text for c in ip.Completer.completions(text, len(text))]


def run_captured(ip: InteractiveShell, cell: str) -> tuple[Any, Any]:
    """Run a cell with its output captured: ``(result, captured)``."""
    from IPython.utils.capture import capture_output

    with capture_output() as captured:
        result = ip.run_cell(cell)
    return result, captured
