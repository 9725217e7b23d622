"""Where the remote kernel's password comes from (an environment variable, an owner-only
file, a prompt in the frontend), and TLS certificates instead of a password."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from kernelkit import PASSWORD, USER, KernelRig, NotebookServer, plain, worker_of

from rpyc_ipy.credentials import (
    check_owner_only,
    read_credentials_file,
    read_password,
    read_password_env,
)
from rpyc_ipy.errors import CredentialsError
from rpyc_ipy.target import ConnectionTarget

pytestmark = pytest.mark.timeout(120)


# -- the credentials module ----------------------------------------------------------------


def test_an_owner_only_file_gives_its_first_line(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_bytes(b"s3cret with spaces\r\nsecond line\n")
    path.chmod(0o600)
    assert read_credentials_file(str(path)) == "s3cret with spaces"
    path.chmod(0o400)
    assert read_credentials_file(str(path)) == "s3cret with spaces"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o620])
def test_a_file_others_can_reach_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "pw"
    path.write_text("s3cret\n")
    path.chmod(mode)
    with pytest.raises(CredentialsError, match=f"mode {mode:04o}.*chmod 600"):
        read_credentials_file(str(path))


def test_missing_empty_and_odd_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="does not exist"):
        read_credentials_file(str(tmp_path / "nope"))
    empty = tmp_path / "empty"
    empty.write_text("")
    empty.chmod(0o600)
    with pytest.raises(CredentialsError, match="is empty"):
        read_credentials_file(str(empty))
    with pytest.raises(CredentialsError, match="not a regular file"):
        check_owner_only(str(tmp_path))
    target = tmp_path / "target"
    target.write_text("s3cret\n")
    target.chmod(0o600)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(CredentialsError):  # O_NOFOLLOW: a symlink is not followed
        read_credentials_file(str(link))


def test_the_environment_variable_must_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RPYC_IPY_NOT_SET", raising=False)
    with pytest.raises(CredentialsError, match="RPYC_IPY_NOT_SET is not set"):
        read_password_env("RPYC_IPY_NOT_SET")
    monkeypatch.setenv("RPYC_IPY_NOT_SET", "pw")
    assert read_password_env("RPYC_IPY_NOT_SET") == "pw"


def test_read_password_follows_the_targets_password_source(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return "typed"

    monkeypatch.setenv("RPYC_IPY_PW", "from env")
    path = tmp_path / "pw"
    path.write_text("from file\n")
    path.chmod(0o600)
    target = ConnectionTarget("127.0.0.1", 1, srp_user="alice")
    assert read_password(ConnectionTarget("127.0.0.1", 1, srp_user="alice",
                                          password_env="RPYC_IPY_PW"), ask) == "from env"
    assert read_password(ConnectionTarget("127.0.0.1", 1, srp_user="alice",
                                          credentials_file=str(path)), ask) == "from file"
    assert asked == []
    assert read_password(target, ask) == "typed"
    assert asked == ["SRP password for alice@127.0.0.1:1: "]
    with pytest.raises(CredentialsError, match=r"no password given for alice@127\.0\.0\.1:1"):
        read_password(target, lambda prompt: "")


# -- kernels ---------------------------------------------------------------------------------


def card_of(cell: Any) -> str:
    """The session card the connecting cell shows (a slow connect shows its progress
    line before it)."""
    texts = [plain(d["data"].get("text/plain", "")) for d in cell.of("display_data")]
    return next((text for text in texts if text.startswith("RemoteSession")), "\n".join(texts))


def _kernel(tmp_path: Path, server: NotebookServer, name: str, **settings: Any) -> KernelRig:
    rig = KernelRig(tmp_path / "prefix", name)
    rig.install(host="127.0.0.1", port=server.port, **settings)
    return rig.start()


def test_a_credentials_file_logs_in_and_the_first_cell_shows_the_card(
        server: NotebookServer, tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o600)
    rig = _kernel(tmp_path, server, "file-pw", srp_user=USER, credentials_file=str(path))
    try:
        cell = rig.run("'hello'")
        assert cell.status == "ok", cell.text
        card = card_of(cell)
        assert "RemoteSession 'remote' (execution)" in card
        assert "TLS-SRP" in card and USER in card
        assert cell.result == {"text/plain": "'hello'"}
        path.chmod(0o644)  # read again on a reconnect only: the open session goes on
        assert rig.run("1").status == "ok"
    finally:
        rig.shutdown()


def test_the_first_cell_shows_the_connect_steps(server: NotebookServer,
                                                tmp_path: Path) -> None:
    """With RPyCMagics.progress_delay = 0 the cell that connects shows each step (a bar in
    the cell, its line updated through the widget's state)."""
    path = tmp_path / "password"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o600)
    rig = _kernel(tmp_path, server, "steps", srp_user=USER, credentials_file=str(path))
    try:
        assert rig.run("%%local\n%config RPyCMagics.progress_delay = 0").status == "ok"
        cell = rig.run("'hello'")
        assert cell.status == "ok", cell.text
        lines = [state["value"] for kind in ("comm_open", "comm_msg")
                 for content in cell.of(kind)
                 for state in [content.get("data", {}).get("state", {})]
                 if isinstance(state.get("value"), str) and state["value"].startswith("connect")]
        label = f"connect {USER}@127.0.0.1:{server.port}"
        assert f"{label} [SRP login]" in lines
        assert f"{label} [starting the session's worker]" in lines
        assert any(line.startswith(f"{label}, done in") for line in lines)
    finally:
        rig.shutdown()


def test_a_credentials_file_others_can_read_is_refused_clearly(server: NotebookServer,
                                                               tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o600)
    rig = _kernel(tmp_path, server, "open-file", srp_user=USER, credentials_file=str(path))
    path.chmod(0o644)  # after install (which checks it too)
    try:
        cell = rig.run("1")
        assert cell.status == "error"
        assert cell.reply["ename"] == "CredentialsError"
        assert "chmod 600" in cell.text and "readable or writable by group or others" in \
            cell.text
        assert PASSWORD not in cell.text
    finally:
        rig.shutdown()


def test_without_a_configured_source_the_kernel_asks_through_the_frontend(
        server: NotebookServer, tmp_path: Path) -> None:
    rig = _kernel(tmp_path, server, "prompt", srp_user=USER)
    prompts: list[dict[str, Any]] = []
    answers = iter(["wrong password", PASSWORD])

    def answer(msg: dict[str, Any]) -> None:
        prompts.append(msg["content"])
        rig.kc.input(next(answers))

    try:
        cell = rig.run("1", allow_stdin=False)  # a frontend that cannot ask
        assert cell.status == "error"
        assert "this frontend cannot ask" in cell.text
        assert "password_env" in cell.text and "credentials_file" in cell.text

        cell = rig.run("1", allow_stdin=True, on_stdin=answer)
        assert cell.status == "error" and cell.reply["ename"] == "AuthenticationError"
        cell = rig.run("'in'", allow_stdin=True, on_stdin=answer)  # asked again
        assert cell.result == {"text/plain": "'in'"}, cell.text
        assert len(prompts) == 2
        assert all(p["password"] is True for p in prompts)
        assert f"SRP password for {USER}@127.0.0.1:{server.port}" in prompts[0]["prompt"]
        assert PASSWORD not in cell.text
        cell = rig.run("2", allow_stdin=True, on_stdin=answer)  # the session stays open
        assert cell.result == {"text/plain": "2"} and len(prompts) == 2
    finally:
        rig.shutdown()


@pytest.fixture
def tls_server(pki: Any, tmp_path: Path) -> Any:
    (tmp_path / "tls").mkdir()
    srv = NotebookServer(tmp_path / "tls", tls=(pki.server_cert, pki.server_key, pki.ca))
    srv.start()
    yield srv
    srv.stop()


def test_tls_certificates_instead_of_a_password(tls_server: NotebookServer, pki: Any,
                                                tmp_path: Path) -> None:
    rig = _kernel(tmp_path, tls_server, "tls", cert=str(pki.client_cert),
                  key=str(pki.client_key), ca=str(pki.ca))
    try:
        spec = rig.km.kernel_spec.argv
        assert f"--RemoteKernel.cert={pki.client_cert}" in spec
        cell = rig.run("import os\nos.getpid()")
        assert cell.status == "ok", cell.text
        assert worker_of(cell.result, tls_server.pid)
        card = card_of(cell)
        assert "TLS" in card and "TLS-SRP" not in card
    finally:
        rig.shutdown()


def test_the_password_never_reaches_the_kernel_command_line(server: NotebookServer,
                                                            tmp_path: Path) -> None:
    rig = _kernel(tmp_path, server, "env-pw", srp_user=USER,
                  password_env="RPYC_IPY_TEST_KERNEL_PASSWORD")
    try:
        assert rig.run("1").status == "error"  # not in this kernel's environment yet
    finally:
        rig.shutdown()
    rig = KernelRig(tmp_path / "prefix", "env-pw")
    rig.start({"RPYC_IPY_TEST_KERNEL_PASSWORD": PASSWORD})
    try:
        assert rig.run("1").result == {"text/plain": "1"}
        pid = rig.km.provisioner.process.pid
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode() if \
            os.path.exists(f"/proc/{pid}/cmdline") else " ".join(rig.km.kernel_spec.argv)
        assert PASSWORD not in cmdline
        assert "RPYC_IPY_TEST_KERNEL_PASSWORD" in cmdline
        spec_text = (rig.kernel_dir / "env-pw" / "kernel.json").read_text()
        assert PASSWORD not in spec_text
    finally:
        rig.shutdown()
