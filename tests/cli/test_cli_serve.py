"""``rpyc-ipy serve`` as a real subprocess on 127.0.0.1 (port 0), real clients."""

from __future__ import annotations

import importlib
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from clikit import HERE, WAIT, ServerProcess, run_cli
from waitkit import wait_until

import rpyc_ipy
from rpyc_ipy.auth.userdb import UserDB

APP = ["--app-dir", str(HERE)]
SERVICE = "cli_services:WhoAmIService"
CONFIG = {"sync_request_timeout": WAIT}

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def test_srp_login_right_and_wrong_password(tmp_path: Path, serve_cli: Any) -> None:
    db = tmp_path / "users.json"
    added = run_cli("users", "add", str(db), "alice", "--password-stdin", input="s3cret pw\n")
    assert added.returncode == 0, added.stderr

    server: ServerProcess = serve_cli([*APP, SERVICE, "--srp-db", str(db), "--port", "0"])
    assert (server.name, server.host, server.auth) == ("WHOAMI", "127.0.0.1", "srp")
    assert server.port > 0

    with rpyc_ipy.srp_connect("127.0.0.1", server.port, "alice", "s3cret pw",
                              config=CONFIG, timeout=WAIT) as conn:
        assert conn.root.whoami() == "alice"
        assert conn.root.add(2, 3) == 5
        with pytest.raises(ValueError, match="boom"):
            conn.root.fail("boom")
    # the audit line: peer, user, service
    server.wait_for_stderr(r"connection \S+ from 127\.0\.0\.1:\d+ user=alice "
                           r"service=WHOAMI")

    with pytest.raises(rpyc_ipy.AuthenticationError):
        rpyc_ipy.srp_connect("127.0.0.1", server.port, "alice", "wrong", timeout=WAIT)
    with pytest.raises(rpyc_ipy.AuthenticationError):
        rpyc_ipy.srp_connect("127.0.0.1", server.port, "mallory", "s3cret pw", timeout=WAIT)
    server.wait_for_stderr(r"authentication failed for \('127\.0\.0\.1', \d+\)")

    # a user added while the server runs can log in at once
    added = run_cli("users", "add", str(db), "bob", "--password-stdin", input="bob password\n")
    assert added.returncode == 0, added.stderr
    with rpyc_ipy.srp_connect("127.0.0.1", server.port, "bob", "bob password",
                              config=CONFIG, timeout=WAIT) as conn:
        assert conn.root.whoami() == "bob"

    assert server.stop(signal.SIGINT) == 0
    assert "server closed" in server.stderr


def test_srp_db_must_exist(tmp_path: Path) -> None:
    result = run_cli("serve", *APP, SERVICE, "--srp-db", str(tmp_path / "nope.json"),
                     "--port", "0")
    assert result.returncode == 1
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_tls_server_with_ca(pki: Any, serve_cli: Any) -> None:
    server = serve_cli([*APP, SERVICE, "--cert", str(pki.server_cert),
                        "--key", str(pki.server_key), "--port", "0"])
    assert server.auth == "tls"
    # the log names the certificate's fingerprint for clients that pin it
    from rpyc_ipy.auth.tls_client import certificate_fingerprint

    server.wait_for_stderr(re_escape(certificate_fingerprint(pki.server_cert)))
    with rpyc_ipy.ssl_connect("127.0.0.1", server.port, ca_certs=str(pki.ca),
                              config=CONFIG, timeout=WAIT) as conn:
        assert conn.root.add(20, 22) == 42
        assert conn.root.whoami() is None  # no client certificate asked for
    with pytest.raises(rpyc_ipy.AuthenticationError, match="verif"):
        rpyc_ipy.ssl_connect("127.0.0.1", server.port, ca_certs=str(pki.untrusted_ca),
                             timeout=WAIT)
    assert server.stop(signal.SIGTERM) == 0


def test_mutual_tls(pki: Any, serve_cli: Any) -> None:
    server = serve_cli([*APP, SERVICE, "--cert", str(pki.server_cert),
                        "--key", str(pki.server_key), "--ca", str(pki.ca), "--port", "0"])
    with rpyc_ipy.ssl_connect("127.0.0.1", server.port, keyfile=str(pki.client_key),
                              certfile=str(pki.client_cert), ca_certs=str(pki.ca),
                              config=CONFIG, timeout=WAIT) as conn:
        assert conn.root.peer_common_name() == "alice-client"
    with pytest.raises((rpyc_ipy.AuthenticationError, rpyc_ipy.ConnectionClosed)):
        conn = rpyc_ipy.ssl_connect("127.0.0.1", server.port, ca_certs=str(pki.ca),
                                    config=CONFIG, timeout=WAIT)
        try:  # TLS 1.3 reports a refused client certificate only at the first read
            conn.root.add(1, 1)
        finally:
            conn.close()
    server.wait_for_stderr(r"authentication failed for")
    assert server.stop() == 0


def test_classic_prints_the_warning_and_works(serve_cli: Any) -> None:
    server = serve_cli(["--classic", "--port", "0"])
    assert (server.name, server.auth) == ("SLAVE", "none")
    assert "FULL CONTROL" in server.stderr
    assert "\x1b[" not in server.stderr  # no colour when stderr is not a terminal
    with rpyc_ipy.classic.connect("127.0.0.1", server.port) as conn:
        assert conn.modules.os.getpid() == server.proc.pid
        conn.execute("x = 6 * 7")
        assert conn.eval("x") == 42
    assert server.stop() == 0


def test_non_loopback_without_auth_is_refused() -> None:
    for what in ([*APP, SERVICE], ["--classic"]):
        result = run_cli("serve", *what, "--host", "0.0.0.0", "--port", "0")
        assert result.returncode != 0
        assert "refusing to serve on '0.0.0.0' without authentication" in result.stderr
        assert "--insecure-no-auth" in result.stderr
        assert "serving" not in result.stdout
        assert "Traceback" not in result.stderr


def test_stdio_with_classic_connect_subproc() -> None:
    conn = rpyc_ipy.classic.connect_subproc()
    proc = conn.proc  # type: ignore[attr-defined]  # connect_subproc attaches its process
    try:
        pid = conn.modules.os.getpid()
        assert pid == proc.pid
        # printing on the server side must not corrupt the protocol on stdout
        conn.execute("print('hello from the server')")
        conn.execute("import sys; sys.stdout.write('more\\n'); sys.stdout.flush()")
        assert conn.eval("1 + 1") == 2
        # the server cannot steal protocol bytes from stdin either
        assert conn.eval("__import__('sys').stdin.read()") == ""
    finally:
        conn.close()
        try:
            proc.wait(timeout=WAIT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=WAIT)
    assert proc.returncode == 0


def test_stdio_rejects_socket_options() -> None:
    result = run_cli("serve", "--classic", "--stdio", "--port", "0")
    assert result.returncode == 2 and "--stdio" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_the_server_cleanly(sig: int, serve_cli: Any) -> None:
    server = serve_cli([*APP, SERVICE, "--port", "0"])
    conn = rpyc_ipy.connect("127.0.0.1", server.port, config=CONFIG)
    try:
        assert conn.root.add(1, 2) == 3
        server.wait_for_stderr(r"connection \S+ from .* service=WHOAMI")
        assert server.stop(sig) == 0
        assert "server closed" in server.stderr
        assert "Traceback" not in server.stderr
        with pytest.raises((rpyc_ipy.ConnectionClosed, OSError)):
            conn.root.add(1, 2)
    finally:
        conn.close()
    # the port is free again
    probe = socket.socket()
    try:
        with pytest.raises(OSError):
            probe.settimeout(WAIT)
            probe.connect(("127.0.0.1", server.port))
    finally:
        probe.close()


def test_port_in_use_is_a_clear_error() -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    try:
        port = taken.getsockname()[1]
        result = run_cli("serve", *APP, SERVICE, "--port", str(port))
    finally:
        taken.close()
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_notebook_service(serve_cli: Any, tmp_path: Path) -> None:
    try:
        available = hasattr(importlib.import_module("rpyc_ipy.remote"), "ExecutionService")
    except ImportError:
        available = False
    if not available:
        result = run_cli("serve", "--notebook", "--port", "0")
        assert result.returncode == 1
        assert "rpyc_ipy.remote:ExecutionService" in result.stderr
        assert "Traceback" not in result.stderr
        return
    db = UserDB.create(tmp_path / "users.json")
    db.add("alice", "alice password")
    server = serve_cli(["--notebook", "--srp-db", db.path, "--port", "0"])
    assert server.auth == "srp"
    with rpyc_ipy.srp_connect("127.0.0.1", server.port, "alice", "alice password",
                              config=CONFIG, timeout=WAIT) as conn:
        assert conn.root.get_service_name() == server.name
    assert server.stop() == 0


def test_bad_service_specs() -> None:
    cases = {
        "nocolon": "must look like module:Class",
        "no_such_module_xyz:Thing": "no such module",
        "cli_services:Missing": "has no 'Missing'",
        "cli_services:not_a_service": "not a service class",
    }
    for spec, message in cases.items():
        result = run_cli("serve", *APP, spec, "--port", "0")
        assert result.returncode != 0, spec
        assert message in result.stderr, (spec, result.stderr)
        assert "Traceback" not in result.stderr


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("rpyc-ipy")
    if not script.exists():
        pytest.skip("the rpyc-ipy console script is not installed in this environment")
    import subprocess

    result = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                            timeout=WAIT)
    assert result.returncode == 0
    assert result.stdout.startswith("rpyc-ipy ")


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


def test_notebook_loopback_plaintext_needs_its_flag(serve_cli: Any) -> None:
    refused = serve_cli(["--notebook", "--port", "0"])
    with rpyc_ipy.connect("127.0.0.1", refused.port, config=CONFIG) as conn:
        with pytest.raises(Exception, match="requires an authenticated connection"):
            conn.root.execute("1 + 1")
    assert refused.stop() == 0
    allowed = serve_cli(["--notebook", "--allow-loopback-plaintext", "--port", "0"])
    allowed.wait_for_stderr("any local user of this machine can run code")
    with rpyc_ipy.connect("127.0.0.1", allowed.port, config=CONFIG) as conn:
        assert conn.root.hello()  # the service answers an unauthenticated local client
    assert allowed.stop() == 0
    result = run_cli("serve", "--allow-loopback-plaintext", "--classic", "--port", "0")
    assert result.returncode == 2 and "is for --notebook" in result.stderr


def _exited(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"  # exited, not reaped yet
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_processes_serve_from_workers_and_stop_with_the_server(sig: int, serve_cli: Any) -> None:
    server = serve_cli([*APP, "cli_services:PidService", "--port", "0", "--processes", "2"])
    conns = [rpyc_ipy.connect("127.0.0.1", server.port, config=CONFIG) for _ in range(4)]
    try:
        pids = [conn.root.pid() for conn in conns]
        assert len(set(pids)) == 2 and server.proc.pid not in pids
        assert pids[:2] == pids[2:]  # in turn
        assert server.stop(sig) == 0
        assert "server closed" in server.stderr and "Traceback" not in server.stderr
        assert wait_until(lambda: all(_exited(pid) for pid in pids), WAIT)
    finally:
        for conn in conns:
            conn.close()


def test_processes_apply_to_the_threaded_mode_only() -> None:
    for extra in (["--mode", "forking"], ["--mode", "oneshot"], ["--notebook"]):
        what = [] if extra == ["--notebook"] else [*APP, SERVICE]
        result = run_cli("serve", *what, *extra, "--processes", "2", "--port", "0")
        assert result.returncode == 2, result.stderr
        assert "--processes applies to --mode threaded only" in result.stderr
