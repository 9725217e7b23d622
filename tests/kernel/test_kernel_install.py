"""Kernelspecs for the remote kernel: install (into a temporary prefix), list, remove;
the settings travel as traitlets arguments, the password never does."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kernelkit import REPO, child_env

from rpyc_ipy.errors import UsageError
from rpyc_ipy.kernel.install import (
    add_arguments,
    install_kernel_spec,
    remove_kernel_spec,
    rpyc_kernel_specs,
    run,
    spec_settings,
)

pytestmark = pytest.mark.timeout(60)


def kernel_cli(*args: str, env: dict[str, str] | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rpyc_ipy.kernel", *args], text=True,
                          capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          env=child_env(env))


def spec_of(prefix: Path, name: str) -> dict[str, Any]:
    path = prefix / "share" / "jupyter" / "kernels" / name / "kernel.json"
    return dict(json.loads(path.read_text()))


def test_install_writes_the_settings_as_traitlets_arguments(tmp_path: Path) -> None:
    destination = install_kernel_spec(
        "gpu", host="10.0.0.5", port=18861, srp_user="alice", password_env="GPU_PW",
        timeout=5, session_name="gpu", interrupt_mode="message", prefix=str(tmp_path),
        extra=["--RPyCPolicy.trust_remote_display=True"])
    assert Path(destination) == tmp_path / "share" / "jupyter" / "kernels" / "gpu"
    spec = spec_of(tmp_path, "gpu")
    assert spec["argv"] == [
        sys.executable, "-m", "rpyc_ipy.kernel", "-f", "{connection_file}",
        "--RemoteKernel.host=10.0.0.5", "--RemoteKernel.port=18861",
        "--RemoteKernel.srp_user=alice", "--RemoteKernel.password_env=GPU_PW",
        "--RemoteKernel.session_name=gpu", "--RemoteKernel.timeout=5.0",
        "--RPyCPolicy.trust_remote_display=True"]
    assert spec["display_name"] == "Remote Python (alice@10.0.0.5:18861)"
    assert spec["language"] == "python"
    assert spec["interrupt_mode"] == "message"
    assert spec["env"] == {}
    assert spec["metadata"]["rpyc_ipy"] == {"host": "10.0.0.5", "port": 18861, "auth": "srp",
                                            "user": "alice", "classic": False}
    assert spec_settings(spec["argv"])["srp_user"] == "alice"


def test_certificate_paths_become_absolute(tmp_path: Path, pki: Any,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(pki.ca.parent)
    install_kernel_spec("lab", host="lab.example.org", port=18821, cert="client.pem",
                        key="client.key", ca="ca.pem", fingerprint="AB:CD",
                        display_name="Lab", prefix=str(tmp_path))
    argv = spec_of(tmp_path, "lab")["argv"]
    assert f"--RemoteKernel.cert={pki.client_cert}" in argv
    assert f"--RemoteKernel.key={pki.client_key}" in argv
    assert f"--RemoteKernel.ca={pki.ca}" in argv
    assert "--RemoteKernel.fingerprint=AB:CD" in argv
    assert spec_of(tmp_path, "lab")["metadata"]["rpyc_ipy"]["auth"] == "tls"


@pytest.mark.parametrize(("settings", "message"), [
    ({"srp_user": "a", "cert": "x.pem"}, "not both"),
    ({"password_env": "PW"}, "go with --srp-user"),
    ({"srp_user": "a", "password_env": "PW", "credentials_file": "/x"}, "not both"),
    ({"srp_user": "a", "password_env": "not a name"}, "NAME of an environment variable"),
    ({"host": "10.1.2.3"}, "is not this machine"),
    ({"port": 0}, "port must be"),
    ({"port": 70000}, "port must be"),
    ({"cert": "/no/such/cert.pem"}, "does not exist"),
    ({"key": "k.pem"}, "--key needs --cert"),
    ({"interrupt_mode": "telepathy"}, "'signal' or 'message'"),
    ({"extra": ["--RemoteKernel.password=hunter2"]}, "never written into kernel.json"),
    ({"extra": ["rm -rf /"]}, "--Class.trait=value"),
    ({"session_name": "not-a-name"}, "not a Python name"),
    ({"timeout": 0}, "must be > 0"),
    ({"user": True, "prefix": "/tmp"}, "choose one of"),
])
def test_settings_that_cannot_work_are_refused(tmp_path: Path, settings: dict[str, Any],
                                               message: str) -> None:
    kwargs: dict[str, Any] = {"host": "127.0.0.1", "port": 18821, "prefix": str(tmp_path)}
    kwargs.update(settings)
    with pytest.raises(UsageError, match=message):
        install_kernel_spec("k", **kwargs)
    assert not (tmp_path / "share").exists()


@pytest.mark.parametrize("name", ["", "has space", "slash/name", "rpyc_ipy"])
def test_bad_or_reserved_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(UsageError):
        install_kernel_spec(name, host="127.0.0.1", prefix=str(tmp_path))


def test_plaintext_beyond_loopback_needs_insecure(tmp_path: Path) -> None:
    install_kernel_spec("far", host="10.1.2.3", insecure=True, prefix=str(tmp_path))
    assert "--RemoteKernel.insecure=True" in spec_of(tmp_path, "far")["argv"]


def test_a_credentials_file_is_checked_at_install(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "pw"
    path.write_text("s3cret\n")
    path.chmod(0o644)
    with pytest.raises(UsageError, match="chmod 600"):
        install_kernel_spec("k", host="127.0.0.1", srp_user="a", credentials_file=str(path),
                            prefix=str(tmp_path))
    path.chmod(0o600)
    install_kernel_spec("k", host="127.0.0.1", srp_user="a", credentials_file=str(path),
                        prefix=str(tmp_path))
    assert f"--RemoteKernel.credentials_file={path}" in spec_of(tmp_path, "k")["argv"]
    install_kernel_spec("later", host="127.0.0.1", srp_user="a",
                        credentials_file=str(tmp_path / "later"), prefix=str(tmp_path))
    assert "does not exist yet" in capsys.readouterr().err


def test_the_command_line_installs_lists_and_removes(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    done = kernel_cli("install", "--name", "cli-k", "--host", "127.0.0.1", "--port", "18821",
                      "--srp-user", "alice", "--password-env", "CLI_PW",
                      "--prefix", str(prefix))
    assert done.returncode == 0, done.stderr
    assert "installed kernelspec 'cli-k'" in done.stdout
    assert "--RemoteKernel.password_env=CLI_PW" in spec_of(prefix, "cli-k")["argv"]

    env = {"JUPYTER_PATH": str(prefix / "share" / "jupyter")}
    listing = kernel_cli("list", env=env)
    assert listing.returncode == 0, listing.stderr
    line = next(line for line in listing.stdout.splitlines() if line.startswith("cli-k "))
    assert "alice@127.0.0.1:18821" in line
    as_json = json.loads(kernel_cli("list", "--json", env=env).stdout)
    assert as_json["cli-k"]["spec"]["display_name"] == "Remote Python (alice@127.0.0.1:18821)"

    removed = kernel_cli("remove", "cli-k", "--prefix", str(prefix))
    assert removed.returncode == 0, removed.stderr
    assert not (prefix / "share" / "jupyter" / "kernels" / "cli-k").exists()
    again = kernel_cli("remove", "cli-k", "--prefix", str(prefix))
    assert again.returncode == 1 and "no kernelspec named 'cli-k'" in again.stderr


def test_the_command_line_refuses_a_password_and_explains(tmp_path: Path) -> None:
    done = kernel_cli("install", "--name", "k", "--host", "127.0.0.1", "--srp-user", "a",
                      "--password", "hunter2", "--prefix", str(tmp_path))
    assert done.returncode == 2
    assert "passwords are never written into kernel.json" in done.stderr
    assert "--password-env" in done.stderr and "--credentials-file" in done.stderr
    assert not (tmp_path / "share").exists()
    bad = kernel_cli("install", "--name", "k", "--host", "10.9.9.9", "--prefix", str(tmp_path))
    assert bad.returncode == 1
    assert bad.stderr.startswith("python -m rpyc_ipy.kernel: error: 10.9.9.9 is not this")


def test_without_an_action_it_explains_itself() -> None:
    done = kernel_cli()
    assert done.returncode == 2
    assert "install" in done.stderr and "starts the kernel" in done.stderr
    helped = kernel_cli("--help")
    assert helped.returncode == 0 and "install" in helped.stdout


def test_remove_leaves_other_kernels_alone(tmp_path: Path) -> None:
    other = tmp_path / "share" / "jupyter" / "kernels" / "python3"
    other.mkdir(parents=True)
    (other / "kernel.json").write_text(json.dumps(
        {"argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
         "display_name": "Python 3", "language": "python"}))
    with pytest.raises(UsageError, match="not an rpyc_ipy kernel"):
        remove_kernel_spec("python3", prefix=str(tmp_path))
    assert other.exists()
    remove_kernel_spec("python3", prefix=str(tmp_path), force=True)
    assert not other.exists()


def test_list_finds_remote_kernels_and_the_extension_kernel(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    install_kernel_spec("mine", host="127.0.0.1", prefix=str(tmp_path))
    ksm = KernelSpecManager(kernel_dirs=[str(tmp_path / "share" / "jupyter" / "kernels"),
                                         str(REPO / "jupyter-data" / "kernels")])
    found = rpyc_kernel_specs(ksm)
    assert {"mine", "rpyc_ipy"} <= set(found)
    assert "python3" not in found


def test_add_arguments_and_run_plug_into_another_parser(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    """What ``rpyc-ipy kernel ...`` does with them."""
    parser = argparse.ArgumentParser(prog="rpyc-ipy kernel")
    add_arguments(parser)
    args = parser.parse_args(["install", "--name", "via-cli", "--host", "127.0.0.1",
                              "--prefix", str(tmp_path)])
    assert run(args) == 0
    assert "installed kernelspec 'via-cli'" in capsys.readouterr().out
    assert spec_of(tmp_path, "via-cli")["argv"][2] == "rpyc_ipy.kernel"
    with pytest.raises(UsageError, match="say what to do"):
        run(parser.parse_args([]))


def test_rpyc_ipy_kernel_subcommand(tmp_path: Path) -> None:
    from rpyc_ipy import cli

    assert "kernel" in cli.build_parser().format_help()
    done = subprocess.run(
        [sys.executable, "-m", "rpyc_ipy", "kernel", "install", "--name", "k", "--host",
         "127.0.0.1", "--prefix", str(tmp_path)], capture_output=True, text=True, timeout=60,
        env=child_env())
    assert done.returncode == 0, done.stderr
    assert spec_of(tmp_path, "k")["argv"][2] == "rpyc_ipy.kernel"
    bad = subprocess.run(
        [sys.executable, "-m", "rpyc_ipy", "kernel", "install", "--name", "k", "--host",
         "10.9.9.9", "--prefix", str(tmp_path)], capture_output=True, text=True, timeout=60,
        env=child_env())
    assert bad.returncode == 1 and "is not this machine" in bad.stderr


def test_the_default_location_is_the_users_data_dir(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    done = kernel_cli("install", "--name", "mine", "--host", "127.0.0.1",
                      env={"JUPYTER_DATA_DIR": str(tmp_path / "data")})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "data" / "kernels" / "mine" / "kernel.json").is_file()
    removed = kernel_cli("remove", "mine", "--user",
                         env={"JUPYTER_DATA_DIR": str(tmp_path / "data")})
    assert removed.returncode == 0, removed.stderr
    assert not (tmp_path / "data" / "kernels" / "mine").exists()
    assert os.listdir(tmp_path / "data" / "kernels") == []
