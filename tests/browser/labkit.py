"""JupyterLab for the browser tests: a private server on 127.0.0.1 and notebook copies.

:class:`Lab` starts ``python -m jupyterlab`` with a random token on a free port, with
every Jupyter directory (config, data, runtime, settings, workspaces, IPython profile)
in a temporary folder, so the tests see neither your Jupyter set-up nor the network:
the news feed and the update check are switched off and notebooks attach every cell
to the page (no windowing), as a person scrolling through would see them.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import nbformat
from waitkit import wait_until

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
REMOTE_KERNEL = "rpyc-demo"  # the remote kernel's kernelspec, installed for the run

# User settings (JUPYTERLAB_SETTINGS_DIR) that keep the test local and the page whole.
SETTINGS: dict[str, dict[str, Any]] = {
    # no news toast, no request to the outside world for news or a newer version
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false",
                                                    "checkForUpdates": False},
    # every cell in the DOM: cells off screen are still there to be checked
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}


def _write_settings(settings_dir: Path) -> None:
    for plugin, values in SETTINGS.items():
        path = settings_dir / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def copy_notebook(source: Path, target: Path, insert: dict[str, list[str]] | None = None,
                  ) -> list[Any]:
    """Copy ``source`` to ``target`` without outputs; ``insert`` maps a piece of a code
    cell's source to cells (sources) put in front of that cell. Returns the cells."""
    nb = nbformat.read(source, as_version=4)
    cells: list[Any] = []
    pending = dict(insert or {})
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            for marker in [m for m in pending if m in cell.source]:
                cells.extend(nbformat.v4.new_code_cell(src) for src in pending.pop(marker))
        cells.append(cell)
    assert not pending, f"{source.name} has no cell with {sorted(pending)}"
    nb.cells = cells
    nbformat.write(nb, target)
    return cells


class Lab:
    """``python -m jupyterlab`` on 127.0.0.1 with a token; stop with :meth:`stop`."""

    def __init__(self, root: Path, env: dict[str, str], jupyter_path: list[Path]) -> None:
        self.root = root
        self.notebooks = root / "notebooks"
        self.notebooks.mkdir()
        home = root / "jupyter"
        dirs = {"JUPYTER_CONFIG_DIR": home / "config", "JUPYTER_DATA_DIR": home / "data",
                "JUPYTER_RUNTIME_DIR": home / "runtime", "IPYTHONDIR": home / "ipython",
                "JUPYTERLAB_SETTINGS_DIR": home / "lab-settings",
                "JUPYTERLAB_WORKSPACES_DIR": home / "lab-workspaces"}
        for path in dirs.values():
            path.mkdir(parents=True)
        _write_settings(dirs["JUPYTERLAB_SETTINGS_DIR"])
        self.runtime = dirs["JUPYTER_RUNTIME_DIR"]
        self.token = secrets.token_hex(16)
        self.log_path = root / "jupyterlab.log"
        child_env = dict(os.environ)
        child_env.update(env)
        child_env.update({key: str(path) for key, path in dirs.items()})
        child_env["JUPYTER_PATH"] = os.pathsep.join(str(p) for p in jupyter_path)
        child_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        child_env.pop("JUPYTER_TOKEN", None)
        self.env = child_env
        argv = [sys.executable, "-m", "jupyterlab", "--no-browser",
                f"--ServerApp.ip={HOST}", "--ServerApp.port=0",
                f"--ServerApp.root_dir={self.notebooks}",
                f"--IdentityProvider.token={self.token}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # a container: Jupyter refuses root
            argv.append("--allow-root")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, env=child_env)
        try:
            url = wait_until(self._server_url, timeout=90,
                             what=f"JupyterLab to start (log: {self.log_path})")
            assert url is not None
            self.url: str = url
            # the page is served once the server answers its API
            wait_until(self._answers, timeout=60, what="JupyterLab's API")
        except BaseException:  # no JupyterLab left running when it did not come up
            self.stop()
            raise

    def _server_url(self) -> str | None:
        if self.process.poll() is not None:
            raise AssertionError(f"JupyterLab exited:\n{self.log()[-3000:]}")
        for info in self.runtime.glob("jpserver-*.json"):
            try:
                data = json.loads(info.read_text())
            except ValueError:  # being written
                continue
            if data.get("pid") == self.process.pid and data.get("port"):
                return f"http://{HOST}:{data['port']}"
        return None

    def _answers(self) -> bool:
        try:
            return self.api("GET", "/api/status") is not None
        except OSError:  # not listening yet (the runtime file is written first)
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def api(self, method: str, path: str) -> Any:
        """One REST call with the token; the decoded JSON answer (None when empty)."""
        request = urllib.request.Request(self.url + path, method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            body = answer.read()
        return json.loads(body) if body else None

    def delete_sessions(self) -> None:
        """End every kernel session, so a notebook opened next starts afresh."""
        for session in self.api("GET", "/api/sessions"):
            self.api("DELETE", f"/api/sessions/{session['id']}")
        wait_until(lambda: self.api("GET", "/api/sessions") == [], timeout=30,
                   what="the sessions to end")

    def open_url(self, notebook: str) -> str:
        """The address a person opens: ``?reset`` so no saved workspace interferes."""
        return f"{self.url}/lab/tree/{notebook}?reset&token={self.token}"

    def saved(self, notebook: str) -> Any:
        """The notebook as saved on disk (outputs included)."""
        return nbformat.read(self.notebooks / notebook, as_version=4)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.root / "jupyter", ignore_errors=True)
