"""The ``rpyc-ipy`` argument handling, in process: option checks, defaults, the
classic warning, and the one-function subcommand registry."""

from __future__ import annotations

import argparse
import io
import signal
from pathlib import Path
from typing import Any

import pytest
from clikit import HERE

import rpyc_ipy.servers
from rpyc_ipy import cli
from rpyc_ipy.cli import common, serve


class FakeServer:
    """Stands in for ThreadedServer: records its arguments, serves nothing."""

    created: list[dict[str, Any]] = []

    def __init__(self, service: Any, **kwargs: Any) -> None:
        self.service = service
        self.kwargs = kwargs
        self.host = kwargs["hostname"]
        self.port = kwargs["port"] or 40000  # port 0: the "real" port
        FakeServer.created.append({"service": service, **kwargs})

    def start(self) -> None:
        signal.raise_signal(signal.SIGINT)  # as if Ctrl-C came at once

    def close(self) -> None:
        pass


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    FakeServer.created = []
    monkeypatch.setattr(rpyc_ipy.servers, "ThreadedServer", FakeServer)
    # serve configures the process's logging; not pytest's
    monkeypatch.setattr(serve, "_configure_logging", lambda level, logfile=None: None)
    return FakeServer.created


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_default_ports(fake_server: list[dict[str, Any]], pki: Any, userdb: Any,
                       capsys: pytest.CaptureFixture[str]) -> None:
    app = ["--app-dir", str(HERE), "cli_services:WhoAmIService"]
    assert run(capsys, "serve", *app)[0] == 0
    assert run(capsys, "serve", *app, "--srp-db", userdb.path)[0] == 0
    assert run(capsys, "serve", *app, "--cert", str(pki.server_cert), "--key",
               str(pki.server_key))[0] == 0
    status, out, err = run(capsys, "serve", *app, "--port", "0", "--max-connections", "7")
    assert status == 0
    ports = [created["port"] for created in fake_server]
    assert ports == [cli.DEFAULT_PORT, cli.DEFAULT_TLS_PORT, cli.DEFAULT_TLS_PORT, 0]
    assert [c["hostname"] for c in fake_server] == ["127.0.0.1"] * 4
    assert fake_server[-1]["max_connections"] == 7
    assert out == "rpyc-ipy: serving WHOAMI on 127.0.0.1:40000 (auth: none)\n"
    assert "stopped (interrupt); server closed" in err


def test_pending_and_frame_budget_flags(fake_server: list[dict[str, Any]],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    app = ["--app-dir", str(HERE), "cli_services:WhoAmIService"]
    assert run(capsys, "serve", *app)[0] == 0
    assert run(capsys, "serve", *app, "--max-pending-connections", "9",
               "--max-pending-per-address", "3", "--pending-frame-limit", "64K",
               "--frame-budget", "1G")[0] == 0
    keys = ("max_pending_connections", "max_pending_per_address", "pending_frame_limit",
            "frame_budget")
    assert [fake_server[0][key] for key in keys] == [64, 16, 1 << 20, 512 << 20]
    assert [fake_server[1][key] for key in keys] == [9, 3, 64 << 10, 1 << 30]


def test_auth_kinds_and_mutual_tls(fake_server: list[dict[str, Any]], pki: Any, userdb: Any,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from rpyc_ipy.auth import SRPAuthenticator, SSLAuthenticator

    status, out, _ = run(capsys, "serve", "--classic", "--srp-db", userdb.path,
                         "--host", "0.0.0.0")
    assert status == 0 and "(auth: srp)" in out
    assert isinstance(fake_server[-1]["authenticator"], SRPAuthenticator)
    assert fake_server[-1]["allow_insecure_remote"] is False
    status, out, _ = run(capsys, "serve", "--classic", "--cert", str(pki.server_cert),
                         "--key", str(pki.server_key), "--ca", str(pki.ca), "--host", "::")
    assert status == 0 and "on [::]:18821 (auth: tls)" in out
    auth = fake_server[-1]["authenticator"]
    assert isinstance(auth, SSLAuthenticator) and auth.ca_certs == str(pki.ca)
    assert auth.cert_reqs != 0  # client certificates required


def test_login_throttle_flags(fake_server: list[dict[str, Any]], userdb: Any,
                              capsys: pytest.CaptureFixture[str]) -> None:
    from rpyc_ipy.auth.throttle import (
        DEFAULT_FORGET_AFTER,
        DEFAULT_FREE_FAILURES,
        DEFAULT_MAX_DELAY,
    )

    app = ["--app-dir", str(HERE), "cli_services:WhoAmIService", "--srp-db", userdb.path]
    assert run(capsys, "serve", *app)[0] == 0
    throttle = fake_server[-1]["authenticator"].throttle
    assert (throttle.free_failures, throttle.max_delay, throttle.forget_after) == \
        (DEFAULT_FREE_FAILURES, DEFAULT_MAX_DELAY, DEFAULT_FORGET_AFTER) == (5, 300.0, 300.0)
    assert run(capsys, "serve", *app, "--login-free-failures", "3", "--login-max-delay", "60",
               "--login-forget-after", "120")[0] == 0
    throttle = fake_server[-1]["authenticator"].throttle
    assert (throttle.free_failures, throttle.max_delay, throttle.forget_after) == (3, 60.0, 120.0)
    # a maximum under the 1 s first step makes every lock that long
    assert run(capsys, "serve", *app, "--login-max-delay", "0.5")[0] == 0
    assert fake_server[-1]["authenticator"].throttle.delay(10) == 0.5
    for bad in (["--login-free-failures", "0"], ["--login-max-delay", "-1"]):
        with pytest.raises(SystemExit) as exited:  # argparse's own errors
            run(capsys, "serve", *app, *bad)
        assert exited.value.code == 2 and "must be" in capsys.readouterr().err
    # only TLS-SRP logins are throttled: the flags are refused without --srp-db
    created = len(fake_server)
    status, _, err = run(capsys, "serve", *app[:3], "--login-free-failures", "3")
    assert status == 2 and "--login-free-failures: only TLS-SRP logins are throttled" in err
    assert len(fake_server) == created


def test_insecure_no_auth_is_explicit(fake_server: list[dict[str, Any]],
                                      capsys: pytest.CaptureFixture[str],
                                      caplog: pytest.LogCaptureFixture) -> None:
    status, _, err = run(capsys, "serve", "--classic", "--host", "0.0.0.0")
    assert status == 2 and "refusing to serve on '0.0.0.0'" in err
    status, _, err = run(capsys, "serve", "--classic", "--host", "")
    assert status == 2, "an empty host binds every interface"
    assert not fake_server
    status, _, err = run(capsys, "serve", "--classic", "--host", "0.0.0.0",
                         "--insecure-no-auth")
    assert status == 0
    assert fake_server[-1]["allow_insecure_remote"] is True
    assert "WITHOUT authentication" in caplog.text


@pytest.mark.parametrize(("argv", "message"), [
    ([], "say what to serve"),
    (["--classic", "--notebook"], "not allowed with"),
    (["--classic", "--key", "k.pem"], "--key needs --cert"),
    (["--classic", "--ca", "ca.pem"], "--ca needs --cert"),
    (["--classic", "--srp-db", "u.json", "--cert", "c.pem"], "not both"),
    (["--classic", "--srp-db", "u.json", "--insecure-no-auth"], "contradicts"),
    (["--classic", "--stdio", "--host", "127.0.0.1"], "--stdio"),
    (["--classic", "--stdio", "--srp-db", "u.json"], "--stdio"),
    (["--classic", "--port", "70000"], "out of range"),
    (["--classic", "--max-connections", "0"], "at least 1"),
    (["--classic", "--max-pending-per-address", "0"], "at least 1"),
    (["--classic", "--max-pending-connections", "0"], "at least 1"),
    (["--classic", "--frame-budget", "lots"], "NUMBER[K|M|G]"),
    (["--classic", "--pending-frame-limit", "0"], "NUMBER[K|M|G]"),
    (["--notebook", "--worker-limit", "RLIMIT_AS"], "RLIMIT_NAME=NUMBER"),
    (["--notebook", "--worker-limit", "RLIMIT_NOPE=5"], "not a resource limit"),
    (["--notebook", "--run-as", "alice"], "USER=ACCOUNT"),
    (["--notebook", "--idle-timeout", "0"], "more than 0"),
    (["--notebook", "--output-buffer", "lots"], "NUMBER[K|M|G]"),
])
def test_option_errors(argv: list[str], message: str, fake_server: list[dict[str, Any]],
                       capsys: pytest.CaptureFixture[str]) -> None:
    try:
        status, _, err = run(capsys, "serve", *argv)
    except SystemExit as exc:  # argparse's own errors
        status, err = int(exc.code or 0), capsys.readouterr().err
    assert status == 2
    assert message in err
    assert not fake_server


def test_classic_warning_is_framed_and_red_on_a_terminal(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    tty = Terminal()
    serve._classic_warning(tty)
    text = tty.getvalue()
    assert text.startswith("\x1b[1;31m!!!") and text.rstrip("\n").endswith("!!!\x1b[0m")
    assert "FULL CONTROL" in text
    monkeypatch.setenv("NO_COLOR", "1")
    plain = Terminal()
    serve._classic_warning(plain)
    assert "\x1b[" not in plain.getvalue() and "FULL CONTROL" in plain.getvalue()
    lines = plain.getvalue().splitlines()
    assert len({len(line) for line in lines}) == 1, "the frame is rectangular"


def test_adding_a_subcommand_is_one_function(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(common, "COMMANDS", dict(common.COMMANDS))

    @cli.command("hello", help="say hello")
    def _hello(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("name")
        parser.set_defaults(run=lambda args: print(f"hello {args.name}") or 0)

    assert run(capsys, "hello", "kernel")[:2] == (0, "hello kernel\n")
    assert "hello" in cli.build_parser().format_help()


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys)
    assert status == 2 and "serve" in err and "users" in err


def test_notebook_service_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch,
                                                   fake_server: list[dict[str, Any]],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(serve, "NOTEBOOK_SERVICE", "rpyc_ipy.no_such_module:ExecutionService")
    status, _, err = run(capsys, "serve", "--notebook")
    assert status == 1
    assert "--notebook needs rpyc_ipy.no_such_module:ExecutionService" in err
    monkeypatch.setattr(serve, "NOTEBOOK_SERVICE", "rpyc_ipy.core.service:NoSuchService")
    status, _, err = run(capsys, "serve", "--notebook")
    assert status == 1 and "has no NoSuchService" in err
    assert not fake_server


def test_notebook_serves_the_execution_service(fake_server: list[dict[str, Any]],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from rpyc_ipy.remote import ExecutionService

    assert run(capsys, "serve", "--notebook", "--idle-timeout", "60",
               "--max-sessions-per-user", "2", "--worker-limit", "RLIMIT_NOFILE=1K",
               "--output-buffer", "16M")[0] == 0
    service = fake_server[-1]["service"]
    assert issubclass(service, ExecutionService)
    settings = service.registry.settings
    assert (settings.idle_timeout, settings.max_sessions_per_user) == (60.0, 2)
    assert dict(settings.limits) == {"RLIMIT_NOFILE": 1024}
    assert settings.max_buffered_output == 16 << 20
    assert fake_server[-1]["channel_handler"] is not None  # data channels are relayed



def test_file_roots_are_absolute_folders(fake_server: list[dict[str, Any]],
                                         capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(capsys, "serve", "--notebook", "--file-root", "data", "--file-root",
               str(tmp_path))[0] == 0
    settings = fake_server[-1]["service"].registry.settings
    assert settings.file_roots == (str(tmp_path / "data"), str(tmp_path))
    assert run(capsys, "serve", "--notebook")[0] == 0
    assert fake_server[-1]["service"].registry.settings.file_roots == ()  # the defaults
