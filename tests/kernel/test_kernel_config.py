"""What installs with the wheel: the "Python 3 (rpyc_ipy)" kernelspec (an IPython kernel
with the extension loaded) and the example ipython_kernel_config.py that documents every
setting."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from kernelkit import REPO, KernelRig, child_env, plain
from traitlets.config import PyFileConfigLoader

from rpyc_ipy.ipython.magics import RPyCMagics
from rpyc_ipy.ipython.registry import SessionRegistry
from rpyc_ipy.ipython.settings import MagicsSettings, RPyCPolicy
from rpyc_ipy.kernel.mixin import RemoteKernelMixin

pytestmark = pytest.mark.timeout(120)

EXAMPLE = REPO / "jupyter-config" / "rpyc_ipy" / "ipython_kernel_config.py"
STATIC_SPECS = REPO / "jupyter-data" / "kernels"
KERNELSPEC_DATA = '"jupyter-data/kernels/rpyc_ipy" = "share/jupyter/kernels/rpyc_ipy"'


def _assignments(source: str) -> dict[str, set[str]]:
    """``{"RPyCPolicy": {"allow_pickle", ...}}`` from ``c.Class.trait = ...`` lines."""
    found: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Attribute) and \
                        isinstance(target.value, ast.Attribute) and \
                        isinstance(target.value.value, ast.Name) and target.value.value.id == "c":
                    found.setdefault(target.value.attr, set()).add(target.attr)
    return found


def test_the_example_config_sets_every_setting_of_the_extension() -> None:
    assigned = _assignments(EXAMPLE.read_text())
    assert assigned["RPyCPolicy"] == set(RPyCPolicy.class_traits(config=True))
    assert assigned["RPyCMagics"] == set(MagicsSettings.class_traits(config=True))


def test_the_example_config_documents_every_remote_kernel_setting() -> None:
    text = EXAMPLE.read_text()
    commented = _assignments("\n".join(line.lstrip("# ") for line in text.splitlines()
                                       if line.startswith("# c.RemoteKernel.")))
    assert commented["RemoteKernel"] == set(RemoteKernelMixin.class_traits(config=True))
    assert "password =" not in text  # there is no password setting, on purpose


def test_the_example_config_loads_and_every_value_is_the_default() -> None:
    config = PyFileConfigLoader(EXAMPLE.name, path=str(EXAMPLE.parent)).load_config()
    policy = RPyCPolicy(config=config)
    for name, trait in RPyCPolicy.class_traits(config=True).items():
        assert getattr(policy, name) == trait.default(), name
    magics = RPyCMagics(None, policy, SessionRegistry(), config=config)
    for name, trait in MagicsSettings.class_traits(config=True).items():
        assert getattr(magics, name) == trait.default(), name


def test_the_static_kernelspec_starts_ipython_with_the_extension() -> None:
    spec = json.loads((STATIC_SPECS / "rpyc_ipy" / "kernel.json").read_text())
    assert spec["display_name"] == "Python 3 (rpyc_ipy)"
    assert spec["argv"] == ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}",
                            "--ext=rpyc_ipy"]
    assert spec["language"] == "python"


def test_the_static_kernel_has_the_magics_loaded(tmp_path: Path) -> None:
    rig = KernelRig(tmp_path, "rpyc_ipy", kernel_dirs=[STATIC_SPECS]).start(timeout=60)
    try:
        cell = rig.run("ip = get_ipython()\n"
                       "print('rpyc_ipy' in ip.extension_manager.loaded)\n"
                       "print(sorted(m for m in ip.magics_manager.magics['line'] "
                       "if m.startswith('rpyc_')))")
        assert cell.status == "ok", cell.text
        assert cell.stream().startswith("True\n")
        assert "'rpyc_connect'" in cell.stream() and "'rpyc_policy'" in cell.stream()
        cell = rig.run("%config RPyCPolicy")
        assert "trust_remote_display" in plain(cell.text)
    finally:
        rig.shutdown()


def _pyproject_maps_the_kernelspec() -> bool:
    return KERNELSPEC_DATA in (REPO / "pyproject.toml").read_text()


@pytest.mark.slow
def test_the_wheel_installs_the_kernelspec_and_the_example_config(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w",
         str(tmp_path / "dist"), str(REPO)], capture_output=True, text=True, timeout=300)
    if built.returncode != 0:
        if "hatchling" in built.stderr and ("No matching distribution" in built.stderr or
                                            "connection" in built.stderr.lower()):
            pytest.skip(f"cannot get hatchling to build the wheel: {built.stderr[-300:]}")
        pytest.fail(f"pip wheel failed:\n{built.stderr}")
    wheel = next((tmp_path / "dist").glob("rpyc_ipy-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    data = f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.data/data"
    assert f"{data}/etc/jupyter/rpyc_ipy/ipython_kernel_config.py" in names
    assert "rpyc_ipy/kernel/__main__.py" in names and "rpyc_ipy/demo.py" in names
    assert _pyproject_maps_the_kernelspec()
    assert f"{data}/share/jupyter/kernels/rpyc_ipy/kernel.json" in names
    for logo in ("logo-32x32.png", "logo-64x64.png"):  # the static spec's and install's
        assert f"{data}/share/jupyter/kernels/rpyc_ipy/{logo}" in names
        assert f"rpyc_ipy/kernel/resources/{logo}" in names

    # a fresh environment sees it (jupyter_client is borrowed from this one)
    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(fresh)], check=True,
                   timeout=120)
    python = fresh / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                    "--no-deps", "--quiet", str(wheel)], check=True, timeout=300)
    env = child_env()
    env["PYTHONPATH"] = sysconfig.get_paths()["purelib"]
    for key in ("JUPYTER_PATH", "JUPYTER_DATA_DIR"):
        env.pop(key, None)
    listed = subprocess.run([str(python), "-m", "jupyter_client.kernelspecapp", "list",
                             "--json"], capture_output=True, text=True, timeout=120, env=env)
    assert listed.returncode == 0, listed.stderr
    specs = json.loads(listed.stdout)["kernelspecs"]
    assert "rpyc_ipy" in specs
    assert specs["rpyc_ipy"]["spec"]["display_name"] == "Python 3 (rpyc_ipy)"
    assert {"logo-32x32.png", "logo-64x64.png"} <= set(os.listdir(
        specs["rpyc_ipy"]["resource_dir"]))
    assert os.path.realpath(specs["rpyc_ipy"]["resource_dir"]).startswith(
        os.path.realpath(fresh))
