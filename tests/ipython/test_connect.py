"""%rpyc_connect with SRP, TLS and plaintext; the card; %rpyc_sessions/use/disconnect."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from ipy_rig import PASSWORD_ENV, completions, connect
from ipy_servers import SCRIPT, SRP_USER, ServerProcess, spawn
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from rpyc_ipy.errors import TargetError
from rpyc_ipy.ipython.extension import extension_of
from rpyc_ipy.ipython.session import SessionError
from rpyc_ipy.target import ConnectionTarget


def test_srp_with_password_from_the_environment(ip: InteractiveShell, srp_server: ServerProcess,
                                                srp_password: str) -> None:
    with capture_output() as captured:
        ip.run_line_magic("rpyc_connect", f"gpu=127.0.0.1:{srp_server.port} "
                          f"--srp-user {SRP_USER} --password-env {srp_password}")
    session = ip.user_ns["gpu"]
    assert session.kind == "execution" and session.user == SRP_USER
    card = captured.outputs[0].data["text/html"]
    assert "TLS-SRP" in card and SRP_USER in card and "ExecutionService" in card
    assert "round trip" in card and "we grant" in card
    facts = session.transport_facts()
    assert facts["encrypted"] and facts["version"] and facts["cipher"]
    # the password is nowhere: not in the session, not in the history of commands
    assert os.environ[PASSWORD_ENV] not in repr(vars(session))
    assert session.execute("1 + 1").data["text/plain"] == "2"


def test_srp_wrong_password_is_one_clean_error(ip: InteractiveShell, srp_server: ServerProcess,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WRONG_PW", "not the password")
    with pytest.raises(SessionError) as info:
        ip.run_line_magic("rpyc_connect", f"x=127.0.0.1:{srp_server.port} "
                          f"--srp-user {SRP_USER} --password-env WRONG_PW")
    assert len(info.value._render_traceback_()) == 1
    assert "x" not in ip.user_ns
    with pytest.raises(UsageError, match="not set"):
        ip.run_line_magic("rpyc_connect", f"x=127.0.0.1:{srp_server.port} "
                          f"--srp-user {SRP_USER} --password-env RPYC_IPY_UNSET_VARIABLE")


def test_tls_with_certificates_and_a_pinned_fingerprint(ip: InteractiveShell,
                                                        tls_server: ServerProcess) -> None:
    d = tls_server.dir
    session = connect(ip, "lab", tls_server, f"--ca {d}/ca.pem --cert {d}/client.pem "
                                             f"--key {d}/client.key")
    facts = session.transport_facts()
    assert facts["transport"] == "TLS" and facts["version"].startswith("TLS")
    assert session.info["user"] == "bob-client"
    pinned = facts["fingerprint"]
    again = connect(ip, "lab2", tls_server, f"--fingerprint {pinned} --cert {d}/client.pem "
                                            f"--key {d}/client.key")
    assert again.execute("2 * 21").data["text/plain"] == "42"
    with pytest.raises(SessionError):  # no client certificate: the server refuses
        connect(ip, "lab3", tls_server, f"--ca {d}/ca.pem")


def test_plaintext_beyond_loopback_needs_insecure(ip: InteractiveShell) -> None:
    with pytest.raises(UsageError, match="--insecure"):
        ip.run_line_magic("rpyc_connect", "far=192.0.2.1:18861")
    ip.run_line_magic("config", "RPyCPolicy.allow_insecure = False")
    with pytest.raises(UsageError, match="allow_insecure"):
        ip.run_line_magic("rpyc_connect", "far=192.0.2.1:18861 --insecure")
    with pytest.raises(UsageError, match="HOST:PORT"):
        ip.run_line_magic("rpyc_connect", "no-port-here")
    with pytest.raises(UsageError, match="not both"):
        ip.run_line_magic("rpyc_connect", "x=127.0.0.1:1 --srp-user a --ca ca.pem")


def test_insecure_plaintext_is_shown_in_red(ip: InteractiveShell, exec_server: ServerProcess
                                            ) -> None:
    session = connect(ip, "s", exec_server)
    text = repr(session)
    assert "plaintext (loopback)" in text and "\x1b[33m" in text  # amber on loopback
    session.host = "192.0.2.1"  # as if it were far away: the card turns red
    assert "NOT loopback" in repr(session) and "color:#c62828" in session._repr_html_()


def test_execution_service_refuses_unauthenticated_clients(ip: InteractiveShell,
                                                           server_dir: Path) -> None:
    strict = spawn("strict", server_dir)
    try:
        with pytest.raises(SessionError, match="requires an authenticated connection"):
            connect(ip, "s", strict)
    finally:
        strict.stop()


def test_sessions_use_and_disconnect(ip: InteractiveShell, exec_server: ServerProcess) -> None:
    a = connect(ip, "a", exec_server)
    b = connect(ip, "b", exec_server)
    extension = extension_of(ip)
    assert extension is not None
    assert extension.magics.default_session == "a"
    with capture_output() as captured:
        ip.run_line_magic("rpyc_sessions", "")
    table = captured.outputs[0].data["text/plain"]
    assert "* " in table and " a " in table and " b " in table and "execution" in table
    ip.run_line_magic("rpyc_use", "b")
    assert extension.registry.get(None) is b
    with pytest.raises(UsageError, match="no session named"):
        ip.run_line_magic("rpyc_use", "nope")
    ip.run_line_magic("rpyc_disconnect", "b")
    assert b.closed and not a.closed and extension.registry.default == "a"
    ip.run_line_magic("rpyc_disconnect", "--all")
    assert a.closed and len(extension.registry) == 0
    with pytest.raises(UsageError, match="no session"):
        ip.run_line_magic("remote", "1")


def test_session_names_complete_after_rpyc_use(ip: InteractiveShell,
                                               exec_server: ServerProcess) -> None:
    connect(ip, "alpha", exec_server)
    assert "alpha" in [c.text for c in completions(ip, "%rpyc_use al")]


def test_the_card_escapes_what_a_hostile_server_says(ip: InteractiveShell,
                                                     hostile_server: ServerProcess) -> None:
    session = connect(ip, "h", hostile_server)
    html = session._repr_html_()
    assert SCRIPT not in html and "&lt;script&gt;" in html
    assert "\x1b]" not in repr(session)


@pytest.mark.parametrize(("line", "settings"), [
    ("x=127.0.0.1:1 --key me.key", {"port": 1, "key": "me.key"}),
    ("x=127.0.0.1:0", {"port": 0}),
    ("x=127.0.0.1:1 --password-env PW", {"port": 1, "password_env": "PW"}),
    ("x=127.0.0.1:1 --srp-user a --tls", {"port": 1, "srp_user": "a", "tls": True}),
    ("x=192.0.2.1:1 --classic", {"host": "192.0.2.1", "port": 1, "classic": True}),
])
def test_the_magic_refuses_what_a_target_refuses_in_the_same_words(
        ip: InteractiveShell, line: str, settings: dict[str, Any]) -> None:
    values: dict[str, Any] = {"host": "127.0.0.1"}
    values.update(settings)
    with pytest.raises(TargetError) as expected:
        ConnectionTarget(**values)
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("rpyc_connect", line)
    assert str(info.value) == str(expected.value)
    assert "x" not in ip.user_ns
