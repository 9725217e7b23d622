"""The rest of rpyc's classic and helper API: MockClassicConnection, redirected_stdio,
interact, upload_package, connect_pipes / connect_stdpipes / connect_multiprocess,
classpartial, ForkingServer, rpyc_ipy.lib and _remote_tb on rebuilt exceptions."""

from __future__ import annotations

import io
import logging
import multiprocessing
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from compatkit import WAIT, run_script

import rpyc_ipy
from rpyc_ipy import classic, lib
from rpyc_ipy.errors import UsageError
from rpyc_ipy.utils.helpers import classpartial

rpyc = pytest.importorskip("rpyc")


@pytest.fixture
def classic_child() -> Iterator[Any]:
    """A classic server in a subprocess (over its stdin/stdout); our client exposes
    itself, which redirected_stdio and interact need."""
    conn = classic.connect_subproc(expose_local=True)
    try:
        yield conn
    finally:
        conn.close()


def local_stdio(monkeypatch: pytest.MonkeyPatch, text: str = "") -> io.StringIO:
    """This process's stdin reads ``text``; returns what its stdout gets. (Called in the
    test itself: pytest's capture replaces sys.stdout again after fixtures ran.)"""
    stdout = io.StringIO()
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    monkeypatch.setattr(sys, "stdout", stdout)
    return stdout


def test_mock_classic_connection_is_this_process() -> None:
    conn = classic.MockClassicConnection()
    assert conn.modules.os.getpid() == os.getpid()
    assert conn.modules["os.path"] is os.path
    conn.execute("x = 6 * 7")
    assert conn.eval("x") == 42 and conn.namespace["x"] == 42
    assert conn.builtins.len([1, 2]) == 2


def test_redirected_stdio_prints_the_peer_s_output_here(
        classic_child: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    stdout = local_stdio(monkeypatch)
    with classic.redirected_stdio(classic_child):
        classic_child.execute("print('from the peer', 42)")
    classic_child.execute("print('not redirected')")  # back on the peer's own stdout
    assert stdout.getvalue() == "from the peer 42\n"


def test_redirected_stdio_needs_expose_local() -> None:
    with classic.connect_subproc() as conn, \
            pytest.raises(UsageError, match="expose_local=True"):
        with classic.redirected_stdio(conn):
            pass


def test_interact_runs_an_interpreter_on_the_peer(
        classic_child: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    stdout = local_stdio(monkeypatch, "import os\nprint('pid', os.getpid())\nprint(seed * 2)\n")
    classic.interact(classic_child, {"seed": 21})
    peer_pid = classic_child.modules.os.getpid()
    assert peer_pid != os.getpid()
    assert f"pid {peer_pid}\n" in stdout.getvalue()
    assert "42\n" in stdout.getvalue()


def test_upload_package_lets_the_peer_import_it(classic_child: Any, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "local" / "shipped_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("from shipped_pkg.inner import VALUE\n")
    (package / "inner.py").write_text("VALUE = 'shipped'\n")
    monkeypatch.syspath_prepend(str(tmp_path / "local"))
    import shipped_pkg

    remote_dir = tmp_path / "remote"
    remote_dir.mkdir()
    classic.upload_package(classic_child, shipped_pkg, str(remote_dir / "shipped_pkg"))
    assert sorted(os.listdir(remote_dir / "shipped_pkg")) == ["__init__.py", "inner.py"]
    classic_child.modules.sys.path.insert(0, str(remote_dir))
    assert classic_child.modules.shipped_pkg.VALUE == "shipped"
    assert classic.upload_module is classic.upload_package


def test_connect_pipes_serves_over_a_pair_of_pipes() -> None:
    class Adder(rpyc_ipy.Service):
        def exposed_add(self, a: int, b: int) -> int:
            return a + b

    to_server_r, to_server_w = os.pipe()
    to_client_r, to_client_w = os.pipe()
    server = rpyc_ipy.connect_pipes(os.fdopen(to_server_r, "rb"), os.fdopen(to_client_w, "wb"),
                                    Adder)
    serving = threading.Thread(target=server.serve_all, daemon=True)
    serving.start()
    client = rpyc_ipy.connect_pipes(os.fdopen(to_client_r, "rb"), os.fdopen(to_server_w, "wb"))
    try:
        assert client.root.add(2, 3) == 5
    finally:
        client.close()
        serving.join(WAIT)
        server.close()
    assert not serving.is_alive()


def test_connect_stdpipes_serves_a_parent_from_a_child() -> None:
    child = """
import rpyc_ipy

class Child(rpyc_ipy.Service):
    def exposed_pid(self):
        import os
        return os.getpid()

rpyc_ipy.connect_stdpipes(Child).serve_all()
"""
    with rpyc_ipy.connect_subproc([sys.executable, "-c", child]) as conn:
        assert conn.root.pid() == conn.proc.pid  # type: ignore[attr-defined]


def test_connect_multiprocess_shares_memory_with_the_child() -> None:
    counter = multiprocessing.Value("i", 0)
    conn = classic.connect_multiprocess({"counter": counter})
    try:
        assert conn.modules.os.getpid() != os.getpid()
        conn.execute("with counter.get_lock():\n    counter.value += 41")
        assert counter.value == 41
    finally:
        conn.close()
        conn.proc.join(WAIT)  # type: ignore[attr-defined]
    assert conn.proc.exitcode == 0  # type: ignore[attr-defined]


def test_connect_multiprocess_args_need_a_namespace() -> None:
    with pytest.raises(UsageError, match="define exposed_namespace"):
        rpyc_ipy.utils.factory.connect_multiprocess(args={"x": 1})


def test_classpartial_binds_a_services_arguments(start_server: Any) -> None:
    class Greeter(rpyc_ipy.Service):
        """Greets."""

        def __init__(self, greeting: str, *, mark: str = ".") -> None:
            super().__init__()
            self.greeting, self.mark = greeting, mark

        def exposed_greet(self, name: str) -> str:
            return f"{self.greeting}, {name}{self.mark}"

    bound = classpartial(Greeter, "Hello", mark="!")
    assert bound.get_service_name() == "GREETER" and bound.__doc__ == "Greets."
    server = start_server(bound)
    with rpyc_ipy.connect("127.0.0.1", server.port) as conn:
        assert conn.root.greet("world") == "Hello, world!"


FORKING_SERVER = """
import os, sys
import rpyc_ipy

class Pids(rpyc_ipy.Service):
    def exposed_pid(self):
        return os.getpid()

server = rpyc_ipy.ForkingServer(Pids, port=0, max_connections=int(sys.argv[1]))
print(server.port, os.getpid(), flush=True)
server.start()
"""


def test_forking_server_serves_each_client_in_its_own_process(tmp_path: Path) -> None:
    import subprocess

    script = tmp_path / "forking.py"
    script.write_text(FORKING_SERVER)
    proc = subprocess.Popen([sys.executable, str(script), "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port, server_pid = map(int, proc.stdout.readline().split())
        first = rpyc_ipy.connect("127.0.0.1", port, timeout=WAIT)
        second = rpyc_ipy.connect("127.0.0.1", port, timeout=WAIT)
        pids = {first.root.pid(), second.root.pid()}
        assert len(pids) == 2 and server_pid not in pids
        # max_connections=2 children: a third client is one over and is refused (at
        # connect time: connect() makes its first request at once)
        with pytest.raises(EOFError):
            rpyc_ipy.connect("127.0.0.1", port, timeout=WAIT)
        first.close()
        second.close()
    finally:
        proc.kill()
        proc.communicate(timeout=WAIT)


def test_rebuilt_exceptions_carry_the_remote_traceback(start_server: Any) -> None:
    class Failing(rpyc_ipy.Service):
        def exposed_fail(self) -> None:
            raise KeyError("nope")

    server = start_server(Failing)
    with rpyc_ipy.connect("127.0.0.1", server.port) as conn:
        with pytest.raises(KeyError) as caught:
            conn.root.fail()
    assert "exposed_fail" in caught.value._remote_tb  # type: ignore[attr-defined]
    assert caught.value._remote_version == "6.0.2"  # type: ignore[attr-defined]


# -- rpyc_ipy.lib -----------------------------------------------------------------------


def test_setup_logger_logs_to_a_file(tmp_path: Path) -> None:
    result = run_script(tmp_path, """
        import sys
        from rpyc_ipy.lib import setup_logger
        log = setup_logger(quiet=False, logfile=sys.argv[1], namespace="demo")
        log.debug("debug line")
        quiet = setup_logger(quiet=True)
        print(log.name, quiet.name)
    """, str(tmp_path / "log.txt"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["rpyc_ipy.demo", "rpyc_ipy"]
    assert "DEBUG rpyc_ipy.demo" in (tmp_path / "log.txt").read_text()


def test_spawn_and_spawn_waitready() -> None:
    done = threading.Event()
    thread = lib.spawn(done.set)
    assert done.wait(WAIT) and thread.daemon
    release = threading.Event()
    thread, value = lib.spawn_waitready(lambda: 42, lambda: release.wait(WAIT))
    assert value == 42 and thread.is_alive()
    release.set()
    thread.join(WAIT)
    assert not thread.is_alive()
    with pytest.raises(ZeroDivisionError):
        lib.spawn_waitready(lambda: 1 / 0, lambda: None)


def test_timeout() -> None:
    assert lib.Timeout(None).timeleft() is None and not lib.Timeout(None).expired()
    assert lib.Timeout(-1).timeleft() is None
    assert lib.Timeout(0).expired()
    assert lib.Timeout(lib.Timeout(0)).expired()
    long = lib.Timeout(3600)
    assert not long.expired() and 0 < (long.timeleft() or 0) <= 3600


def test_get_id_pack_and_get_methods_match_rpyc() -> None:
    import rpyc.lib as rpyc_lib

    class Thing:
        def method(self) -> None:
            """Doc."""

    thing = Thing()
    for obj in (thing, Thing, os, 42, "text", len):
        assert lib.get_id_pack(obj) == rpyc_lib.get_id_pack(obj), obj
    exclude = {"__init__"}
    assert dict(lib.get_methods(exclude, thing))["method"] == "Doc."
    assert "__init__" not in dict(lib.get_methods(exclude, thing))
    assert "mro" in dict(lib.get_methods((), Thing))  # the metaclass's methods too


def test_get_id_pack_of_a_netref_is_the_remote_object_s(start_server: Any) -> None:
    class Holder(rpyc_ipy.Service):
        thing = object()

        def exposed_get(self) -> object:
            return self.thing

    server = start_server(Holder)
    with rpyc_ipy.connect("127.0.0.1", server.port) as conn:
        assert lib.get_id_pack(conn.root.get()) == lib.get_id_pack(Holder.thing)
        assert lib.syncreq(conn.root.get(), rpyc_ipy.core.consts.HANDLE_REPR).startswith(
            "<object object")
        assert lib.asyncreq(conn.root, rpyc_ipy.core.consts.HANDLE_STR).value.startswith("<")


def test_safe_import_and_missing_module() -> None:
    assert lib.safe_import("json") is __import__("json")
    missing = lib.safe_import("no_such_module_here")
    assert not missing
    with pytest.raises(ImportError, match="no_such_module_here"):
        _ = missing.loads
    with pytest.raises(AttributeError):
        _ = missing.__wrapped__


def test_hybridmethod_and_hasattr_static() -> None:
    class Both:
        @lib.hybridmethod
        def who(self_or_cls: Any) -> Any:
            return self_or_cls

        @property
        def prop(self) -> int:
            raise AssertionError("hasattr_static must not run descriptors")

    both = Both()
    assert Both.who() is Both and both.who() is both
    assert lib.hasattr_static(both, "prop") and not lib.hasattr_static(both, "nothing")
    logging.getLogger(__name__).debug("hybridmethod ok")
