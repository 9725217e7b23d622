"""ConnectionTarget: one frozen value for where a session connects and how it logs in,
checked once; what the kernelspec installer writes is what the remote kernel reads back."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from traitlets.config.loader import KVArgParseConfigLoader

from rpyc_ipy.errors import ConfigError, TargetError, UsageError
from rpyc_ipy.kernel.install import install_kernel_spec, kernel_argv
from rpyc_ipy.kernel.mixin import RemoteKernelMixin
from rpyc_ipy.target import DEFAULT_SESSION_NAME, DEFAULT_TIMEOUT, ConnectionTarget

LOOPBACK = "127.0.0.1"
FAR = "192.0.2.1"  # TEST-NET-1: never this machine


class RemoteKernel(RemoteKernelMixin):
    """The mixin under the class name the kernelspec's ``--RemoteKernel.x=...`` address."""


def kernel_target(argv: list[str]) -> ConnectionTarget:
    """The target a remote kernel started with ``argv`` builds from its traits."""
    settings = [arg for arg in argv if arg.startswith("--RemoteKernel.")]
    config = KVArgParseConfigLoader(settings).load_config()
    return RemoteKernel(config=config).connection_target()


# -- what is refused ---------------------------------------------------------------------------


@pytest.mark.parametrize(("settings", "message"), [
    ({"host": ""}, "bad host ''"),
    ({"host": "two words"}, "bad host"),
    ({"port": 0}, "port must be 1-65535, not 0"),
    ({"port": 65536}, "port must be 1-65535"),
    ({"port": "18821"}, "port must be 1-65535, not '18821'"),
    ({"session_name": "not-a-name"}, "'not-a-name' is not a Python name"),
    ({"timeout": 0}, "timeout must be > 0"),
    ({"timeout": -1.5}, "timeout must be > 0"),
    ({"srp_user": "alice", "cert": "me.pem"}, "choose SRP .* not both"),
    ({"srp_user": "alice", "ca": "ca.pem"}, "not both"),
    ({"srp_user": "alice", "fingerprint": "AB:CD"}, "not both"),
    ({"srp_user": "alice", "tls": True}, "not both"),
    ({"password_env": "PW"}, "go with --srp-user"),
    ({"credentials_file": "/pw"}, "go with --srp-user"),
    ({"srp_user": "a", "password_env": "PW", "credentials_file": "/pw"},
     "--password-env or --credentials-file, not both"),
    ({"srp_user": "a", "password_env": "not a name"}, "NAME of an environment variable"),
    ({"key": "me.key"}, "--key needs --cert"),
    ({"host": FAR}, f"{FAR} is not this machine: .* --insecure"),
    ({"host": FAR, "classic": True}, "is not this machine"),
])
def test_each_combination_that_cannot_work_has_its_error(settings: dict[str, Any],
                                                         message: str) -> None:
    values: dict[str, Any] = {"host": LOOPBACK, "port": 18821}
    values.update(settings)
    with pytest.raises(TargetError, match=message) as info:
        ConnectionTarget(**values)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, UsageError)
    assert str(info.value).count("\n") == 0  # one line: what is wrong, what to do


@pytest.mark.parametrize(("settings", "auth"), [
    ({}, "none"),
    ({"host": FAR, "insecure": True}, "none"),
    ({"host": FAR, "srp_user": "alice"}, "srp"),
    ({"host": FAR, "ca": "ca.pem"}, "tls"),
    ({"host": FAR, "cert": "me.pem", "key": "me.key"}, "tls"),
    ({"host": FAR, "fingerprint": "AB:CD"}, "tls"),
    ({"host": FAR, "tls": True}, "tls"),
])
def test_what_works_and_how_it_authenticates(settings: dict[str, Any], auth: str) -> None:
    values: dict[str, Any] = {"host": LOOPBACK, "port": 18821}
    values.update(settings)
    target = ConnectionTarget(**values)
    assert target.auth == auth
    assert target.plaintext_beyond_loopback == (auth == "none" and target.host == FAR)


def test_facts_for_people() -> None:
    target = ConnectionTarget("::1", 18861, srp_user="alice")
    assert target.address == "[::1]:18861"
    assert target.label == "alice@[::1]:18861"
    assert ConnectionTarget(LOOPBACK, 1).label == "127.0.0.1:1"


def test_a_password_is_never_stored_only_its_source() -> None:
    names = {field.name for field in dataclasses.fields(ConnectionTarget)}
    assert "password" not in names
    with pytest.raises(TypeError):
        ConnectionTarget(LOOPBACK, 1, srp_user="a", password="hunter2")  # type: ignore[call-arg]
    assert ConnectionTarget(LOOPBACK, 1).password_source is None
    assert ConnectionTarget(LOOPBACK, 1, srp_user="a").password_source == "prompt"
    assert ConnectionTarget(LOOPBACK, 1, srp_user="a", password_env="PW").password_source == \
        "env"
    assert ConnectionTarget(LOOPBACK, 1, srp_user="a",
                            credentials_file="/pw").password_source == "file"


def test_frozen_hashable_and_empty_means_not_set() -> None:
    target = ConnectionTarget(LOOPBACK, 18821, srp_user="alice", password_env="PW")
    with pytest.raises(dataclasses.FrozenInstanceError):
        target.host = "elsewhere"  # type: ignore[misc]
    from_traits = ConnectionTarget(LOOPBACK, 18821, srp_user="alice", password_env="PW",
                                   cert="", key="", ca="", fingerprint="", credentials_file="")
    assert from_traits == target and hash(from_traits) == hash(target)
    assert from_traits.cert is None
    assert len({target, from_traits, ConnectionTarget(LOOPBACK, 18822)}) == 2
    assert ConnectionTarget(LOOPBACK, 1, timeout=5).timeout == 5.0


# -- settings, paths and the kernelspec round trip ------------------------------------------------


ROUND_TRIPS = [
    ConnectionTarget(LOOPBACK, 18821),
    ConnectionTarget("10.0.0.5", 18861, srp_user="alice", password_env="GPU_PW",
                     session_name="gpu", timeout=5.0),
    ConnectionTarget("gpu.example.org", 443, srp_user="bob", credentials_file="/home/b/pw"),
    ConnectionTarget("lab.example.org", 18821, cert="/pki/me.pem", key="/pki/me.key",
                     ca="/pki/ca.pem", fingerprint="AB:CD:EF", classic=True),
    ConnectionTarget("::1", 18821, tls=True),
    ConnectionTarget(FAR, 18812, insecure=True, classic=True, timeout=2.5),
]


@pytest.mark.parametrize("target", ROUND_TRIPS, ids=lambda t: t.label)
def test_settings_round_trip_through_the_kernel_traits(target: ConnectionTarget) -> None:
    settings = target.settings()
    assert list(settings)[:2] == ["host", "port"]
    # settings() types every value as the union of all field types
    assert ConnectionTarget(**settings) == target  # type: ignore[arg-type]
    assert kernel_target(kernel_argv(target)) == target


def test_settings_leave_out_the_defaults() -> None:
    assert ConnectionTarget(LOOPBACK, 18821, session_name=DEFAULT_SESSION_NAME,
                            timeout=DEFAULT_TIMEOUT).settings() == \
        {"host": LOOPBACK, "port": 18821}
    assert ConnectionTarget(LOOPBACK, 1, srp_user="a", tls=False, timeout=3).settings() == \
        {"host": LOOPBACK, "port": 1, "srp_user": "a", "timeout": 3.0}


def test_with_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "me.pem").write_text("cert")
    (tmp_path / "me.key").write_text("key")
    target = ConnectionTarget(FAR, 1, cert="me.pem", key="me.key").with_absolute_paths()
    assert target.cert == str(tmp_path / "me.pem") and target.key == str(tmp_path / "me.key")
    with pytest.raises(TargetError, match=r"--ca nope\.pem does not exist"):
        ConnectionTarget(FAR, 1, ca="nope.pem").with_absolute_paths()
    later = ConnectionTarget(LOOPBACK, 1, srp_user="a", credentials_file="pw")
    assert later.with_absolute_paths().credentials_file == str(tmp_path / "pw")


def test_what_the_installer_writes_the_kernel_reads_back(tmp_path: Path, pki: Any) -> None:
    install_kernel_spec("lab", host="lab.example.org", port=18862, cert=str(pki.client_cert),
                        key=str(pki.client_key), ca=str(pki.ca), fingerprint="AB:CD",
                        classic=True, timeout=4, session_name="lab", prefix=str(tmp_path))
    spec = json.loads((tmp_path / "share" / "jupyter" / "kernels" / "lab" / "kernel.json"
                       ).read_text())
    assert kernel_target(spec["argv"]) == ConnectionTarget(
        "lab.example.org", 18862, cert=str(pki.client_cert), key=str(pki.client_key),
        ca=str(pki.ca), fingerprint="AB:CD", classic=True, timeout=4.0, session_name="lab")


def test_the_installer_and_the_kernel_refuse_with_the_same_words(tmp_path: Path) -> None:
    with pytest.raises(TargetError) as installing:
        install_kernel_spec("k", host=FAR, prefix=str(tmp_path))
    with pytest.raises(TargetError) as running:
        RemoteKernel(host=FAR).connection_target()
    assert str(installing.value) == str(running.value)
    assert not (tmp_path / "share").exists()
