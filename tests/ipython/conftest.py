"""Fixtures for the IPython tests: a real InteractiveShell with the extension loaded,
and real servers in subprocesses on 127.0.0.1 (see ipy_servers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ipy_rig import PASSWORD_ENV
from ipy_servers import SRP_PASSWORD, ServerProcess, make_pki, spawn
from IPython.core.interactiveshell import InteractiveShell

from rpyc_ipy.ipython.extension import extension_of


@pytest.fixture(scope="session")
def server_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("servers")
    make_pki(folder)
    return folder


def _server(kind: str, folder: Path) -> Iterator[ServerProcess]:
    server = spawn(kind, folder)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def exec_server(server_dir: Path) -> Iterator[ServerProcess]:
    yield from _server("exec", server_dir)


@pytest.fixture(scope="session")
def srp_server(server_dir: Path) -> Iterator[ServerProcess]:
    yield from _server("srp", server_dir)


@pytest.fixture(scope="session")
def tls_server(server_dir: Path) -> Iterator[ServerProcess]:
    yield from _server("tls", server_dir)


@pytest.fixture(scope="session")
def hostile_server(server_dir: Path) -> Iterator[ServerProcess]:
    yield from _server("hostile", server_dir)


@pytest.fixture
def srp_password(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(PASSWORD_ENV, SRP_PASSWORD)
    return PASSWORD_ENV


@pytest.fixture(scope="module")
def shell() -> Iterator[InteractiveShell]:
    """One InteractiveShell per test module, with the extension loaded."""
    InteractiveShell.clear_instance()
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "rpyc_ipy")
    try:
        yield ip
    finally:
        ip.run_line_magic("unload_ext", "rpyc_ipy")
        ip.reset(new_session=False)
        InteractiveShell.clear_instance()


@pytest.fixture
def ip(shell: InteractiveShell) -> Iterator[InteractiveShell]:
    """The module's shell, with sessions closed and settings reset after each test."""
    yield shell
    extension = extension_of(shell)
    assert extension is not None
    extension.registry.close_all()
    for configurable in (extension.policy, extension.magics):
        for name in configurable.trait_names(config=True):
            configurable.set_trait(name, configurable.trait_defaults(name))
    for name in [n for n in shell.user_ns if not n.startswith("_") and n not in (
            "In", "Out", "exit", "quit", "get_ipython")]:
        del shell.user_ns[name]
