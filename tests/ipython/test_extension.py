"""%load_ext / %unload_ext: idempotent, and unload removes every registration."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any, TypedDict

import pytest
from ipy_rig import connect
from ipy_servers import ServerProcess
from IPython.core.interactiveshell import InteractiveShell
from traitlets import TraitError

from rpyc_ipy.ipython.completion import MATCHER_ID
from rpyc_ipy.ipython.extension import extension_of
from rpyc_ipy.ipython.session import RemoteSession

OUR_LINE_MAGICS = {"rpyc_connect", "rpyc_sessions", "rpyc_use", "rpyc_disconnect", "remote",
                   "rpyc_push", "rpyc_pull", "rpyc_policy", "rpyc_browse"}


@pytest.fixture
def bare() -> Iterator[InteractiveShell]:
    """A shell without the extension (these tests load and unload it themselves)."""
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance()
    yield shell
    shell.run_line_magic("unload_ext", "rpyc_ipy")
    InteractiveShell.clear_instance()


class _Snapshot(TypedDict):
    """Everything the extension may register in a shell."""

    line: set[str]
    cell: set[str]
    registry: set[str]
    configurables: list[Any]
    matchers: list[Any]
    overrides: dict[str, Any]
    format: object
    info: object
    type_printers: dict[Any, Any]
    deferred_printers: dict[Any, Any]
    hooks: set[str]


def _snapshot(shell: InteractiveShell) -> _Snapshot:
    load_lazy = getattr(shell.magics_manager, "load_all_lazy_magics", None)
    if load_lazy is not None:  # IPython registers its own magic classes on first use
        load_lazy()
    completer = shell.Completer
    assert shell.display_formatter is not None
    plain = shell.display_formatter.formatters["text/plain"]
    return {
        "line": set(shell.magics_manager.magics["line"]),
        "cell": set(shell.magics_manager.magics["cell"]),
        "registry": set(shell.magics_manager.registry),
        "configurables": list(shell.configurables),
        "matchers": list(completer.custom_matchers),
        "overrides": dict(completer.policy_overrides),
        "format": shell.display_formatter.__dict__.get("format"),
        "info": shell.inspector.__dict__.get("info"),
        "type_printers": dict(plain.type_printers),
        "deferred_printers": dict(plain.deferred_printers),
        "hooks": set(getattr(shell.strdispatchers.get("complete_command"), "strs", {})),
    }


def test_load_registers_everything_and_unload_removes_it(bare: InteractiveShell,
                                                         exec_server: ServerProcess) -> None:
    before = _snapshot(bare)
    bare.run_line_magic("load_ext", "rpyc_ipy")
    loaded = _snapshot(bare)
    assert OUR_LINE_MAGICS <= loaded["line"]
    assert "remote" in loaded["cell"]
    assert "RPyCMagics" in loaded["registry"]
    names = {type(c).__name__ for c in loaded["configurables"]}
    assert {"RPyCMagics", "RPyCPolicy"} <= names
    assert any(getattr(m, "matcher_identifier", None) == MATCHER_ID
               for m in loaded["matchers"])
    assert loaded["format"] is not None and loaded["info"] is not None
    assert "allowed_getattr" in loaded["overrides"]
    assert "%rpyc_use" in loaded["hooks"]

    session = connect(bare, "s", exec_server)
    assert isinstance(session, RemoteSession) and not session.closed

    bare.run_line_magic("unload_ext", "rpyc_ipy")
    after = _snapshot(bare)
    assert after == before
    assert session.closed
    assert "s" not in bare.user_ns
    assert extension_of(bare) is None


def test_load_twice_is_a_no_op_and_reload_works(bare: InteractiveShell) -> None:
    bare.run_line_magic("load_ext", "rpyc_ipy")
    first = extension_of(bare)
    bare.run_line_magic("load_ext", "rpyc_ipy")
    import rpyc_ipy

    rpyc_ipy.load_ipython_extension(bare)  # direct call: our own guard
    assert extension_of(bare) is first
    assert len(bare.Completer.custom_matchers) == 1
    bare.run_line_magic("reload_ext", "rpyc_ipy")
    assert extension_of(bare) is not first
    assert len(bare.Completer.custom_matchers) == 1
    assert sum(type(c).__name__ == "RPyCPolicy" for c in bare.configurables) == 1


def test_unload_keeps_the_users_own_policy_overrides(bare: InteractiveShell) -> None:
    mine = {("mypkg", "Thing")}
    bare.Completer.policy_overrides = {"allowed_getattr_external": mine,
                                       "allow_auto_import": False}
    bare.run_line_magic("load_ext", "rpyc_ipy")
    merged = bare.Completer.policy_overrides["allowed_getattr_external"]
    assert mine < merged and ("rpyc_ipy", "netref") in merged
    assert bare.Completer.policy_overrides["allow_auto_import"] is False
    bare.run_line_magic("unload_ext", "rpyc_ipy")
    assert bare.Completer.policy_overrides == {"allowed_getattr_external": mine,
                                               "allow_auto_import": False}


def test_config_is_read_from_the_shell_config_and_changes_live(
        bare: InteractiveShell) -> None:
    bare.config.RPyCMagics.default_timeout = 7.5
    bare.config.RPyCPolicy.max_repr_chars = 123
    try:
        bare.run_line_magic("load_ext", "rpyc_ipy")
        extension = extension_of(bare)
        assert extension is not None
        assert extension.magics.default_timeout == 7.5
        assert extension.policy.max_repr_chars == 123
        bare.run_line_magic("config", "RPyCPolicy.trust_remote_display = True")
        assert extension.policy.trust_remote_display is True
        bare.run_line_magic("config", "RPyCMagics.stream_interval = 0.2")
        assert extension.magics.stream_interval == 0.2
        with pytest.raises(TraitError):
            extension.magics.request_timeout = -1
        with pytest.raises(TraitError):
            extension.policy.safe_mimetypes = ["not a mime type"]
        with pytest.raises(TraitError):
            extension.policy.connection_config = {"allow_everything": True}
    finally:
        del bare.config["RPyCMagics"], bare.config["RPyCPolicy"]


def test_evaluation_change_keeps_overrides_valid(bare: InteractiveShell) -> None:
    bare.run_line_magic("load_ext", "rpyc_ipy")
    with warnings.catch_warnings():  # IPython validates the old overrides first
        warnings.simplefilter("ignore", UserWarning)
        bare.Completer.evaluation = "unsafe"
    assert "allowed_getattr" not in bare.Completer.policy_overrides
    bare.Completer.evaluation = "limited"
    assert RemoteSession in bare.Completer.policy_overrides["allowed_getattr"]


def test_magic_help_is_the_docstring(shell: InteractiveShell) -> None:
    doc = shell.find_line_magic("rpyc_connect").__doc__
    assert "--srp-user" in doc and "--password-env" in doc and "never part of the command" in doc
    assert "--all" in shell.find_cell_magic("remote").__doc__
