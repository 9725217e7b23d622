"""The public surface is pinned, and the package never imports rpyc."""

from __future__ import annotations

import ast
import pathlib

import rpyc_ipy

PACKAGE = pathlib.Path(rpyc_ipy.__file__).parent

RPYC_NAMES = {
    "connect", "connect_thread", "connect_stream", "classic", "Service", "VoidService",
    "SlaveService", "ClassicService", "exposed", "service", "async_", "timed", "buffiter",
    "BgServingThread", "restricted", "spawn", "BaseNetref", "AsyncResultTimeout",
    "ThreadedServer", "ThreadPoolServer", "OneShotServer", "SSLAuthenticator",
    "DEFAULT_CONFIG", "brine", "vinegar", "ForkingServer",
    "GenericException", "connect_by_service", "connect_pipes", "connect_stdpipes", "discover",
    "list_services", "setup_logger", "lib", "utils",
}
OUR_NAMES = {
    "AsyncResult", "AuthenticationError", "Connection", "ConnectionClosed", "ConnectionLost",
    "FrameBudget",
    "MasterService", "PingError", "ProtocolError", "RPyCError", "RemoteError",
    "SRPAuthenticator", "SecurityError", "SecurityPolicy", "UserDB", "__version__",
    "connect_socket", "connect_subproc", "load_ipython_extension", "ssl_connect", "srp_connect",
    "unix_connect", "unload_ipython_extension",
}


def test_all_is_pinned() -> None:
    assert set(rpyc_ipy.__all__) == RPYC_NAMES | OUR_NAMES


def test_every_public_name_resolves() -> None:
    for name in rpyc_ipy.__all__:
        assert getattr(rpyc_ipy, name) is not None, name


def test_classic_mirrors_rpyc() -> None:
    for name in ("connect", "ssl_connect", "unix_connect", "connect_thread", "upload",
                 "download", "obtain", "deliver", "teleport_function"):
        assert callable(getattr(rpyc_ipy.classic, name)), name


def test_the_package_never_imports_rpyc() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            if any(name == "rpyc" or name.startswith("rpyc.") for name in names):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []


def test_protocol_layer_imports_no_io() -> None:
    """protocol/ is sans-I/O: no sockets, threads, ssl or clocks, and nothing of ours
    above it but errors."""
    forbidden = {"socket", "threading", "ssl", "time", "select", "asyncio"}
    for path in (PACKAGE / "protocol").glob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level == 2:
                    assert node.module == "errors", f"{path}: imports ..{node.module}"
                names = [node.module or ""] if node.level == 0 else []
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path}: imports {name}"
                if name.split(".")[0] == "rpyc_ipy":
                    assert name in ("rpyc_ipy.errors", "rpyc_ipy.protocol") or \
                        name.startswith("rpyc_ipy.protocol."), f"{path}: imports {name}"
