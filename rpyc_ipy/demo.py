"""The demo: a throwaway server and the quickstart notebook, run headless (``make demo``).

::

    python -m rpyc_ipy.demo            # server + notebooks/quickstart.ipynb, outputs printed
    python -m rpyc_ipy.demo --serve    # only the server; prints how to reach it
    python -m rpyc_ipy.demo --lab      # the server, and JupyterLab on the quickstart

The server is an :class:`~rpyc_ipy.remote.ExecutionService` on 127.0.0.1 (a free
port) behind TLS-SRP, with one throwaway user ``demo`` in a temporary user
database and a random password. Notebooks find it through environment
variables (the password travels only in the environment, never in a cell)::

    RPYC_IPY_DEMO_HOST, RPYC_IPY_DEMO_PORT, RPYC_IPY_DEMO_USER, RPYC_IPY_DEMO_PASSWORD

In a notebook, :func:`demo_server` reads them, or starts a private demo server
when they are not set (so the notebooks also work when opened on their own)::

    from rpyc_ipy.demo import demo_server
    server = demo_server()
    %rpyc_connect demo={server.host}:{server.port} --srp-user {server.user} \\
        --password-env {server.password_env}     # (one line in a cell)
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ENV_HOST",
    "ENV_PASSWORD",
    "ENV_PORT",
    "ENV_USER",
    "DemoServer",
    "EmbeddedServer",
    "classic_server",
    "demo_server",
    "main",
    "run_notebook",
]

ENV_HOST = "RPYC_IPY_DEMO_HOST"
ENV_PORT = "RPYC_IPY_DEMO_PORT"
ENV_USER = "RPYC_IPY_DEMO_USER"
ENV_PASSWORD = "RPYC_IPY_DEMO_PASSWORD"
DEMO_USER = "demo"
HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_SERVING = re.compile(r"serving \S+ on (?P<host>[^\s:\[]+|\[[^\]]+\]):(?P<port>\d+)")


# -- servers -------------------------------------------------------------------------------------


class EmbeddedServer:
    """An execution service behind TLS-SRP in this process, on a background thread.

    ``with EmbeddedServer() as server: ...``; :meth:`env` gives the environment
    variables a notebook needs (the password included: pass them to the kernel
    process only).
    """

    def __init__(self, host: str = HOST, port: int = 0, user: str = DEMO_USER,
                 password: str | None = None, capture_fd: bool = True) -> None:
        from rpyc_ipy.auth import SRPAuthenticator, UserDB
        from rpyc_ipy.remote import ExecutionService, RuntimeSettings, SessionRegistry
        from rpyc_ipy.servers import ThreadedServer

        self.user = user
        self.password = password or secrets.token_urlsafe(18)
        self._dir = tempfile.mkdtemp(prefix="rpyc_ipy-demo-")
        try:
            db = UserDB.create(os.path.join(self._dir, "users.json"))
            db.add(user, self.password)
            self.sessions = SessionRegistry(RuntimeSettings(capture_fd=capture_fd))
            service = ExecutionService.configured(registry=self.sessions)
            self.server = ThreadedServer(service, hostname=host, port=port,
                                         authenticator=SRPAuthenticator(db),
                                         channel_handler=service.channel_handler())
        except BaseException:
            shutil.rmtree(self._dir, ignore_errors=True)
            raise
        self.host = host
        self.port: int = self.server.port
        self.server.start_in_background()

    def env(self) -> dict[str, str]:
        """``RPYC_IPY_DEMO_*`` for a notebook's kernel (the password is one of them)."""
        return {ENV_HOST: self.host, ENV_PORT: str(self.port), ENV_USER: self.user,
                ENV_PASSWORD: self.password}

    def close(self) -> None:
        """Stop serving, end the sessions' workers, remove the temporary user database."""
        with contextlib.suppress(Exception):
            self.server.close()
        self.sessions.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedServer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


@dataclass
class DemoServer:
    """How a notebook reaches the demo server (no password here: it is in
    ``os.environ[password_env]``)."""

    host: str
    port: int
    user: str = DEMO_USER
    password_env: str = ENV_PASSWORD
    started_here: bool = False
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        how = "started by this notebook" if self.started_here else "from the environment"
        return (f"demo server {self.host}:{self.port} ({how}): TLS-SRP, user "
                f"{self.user!r}, password in ${self.password_env}")

    def stop(self) -> None:
        """Stop the server if this notebook started it (an outside server keeps running)."""
        process, self._process = self._process, None
        if process is not None:
            _stop_process(process)
            for key in (ENV_HOST, ENV_PORT, ENV_USER, ENV_PASSWORD):
                os.environ.pop(key, None)


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra or {})
    if (REPO / "rpyc_ipy" / "__init__.py").is_file():  # a checkout: use this rpyc_ipy
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def _spawn_and_wait(argv: list[str], env: dict[str, str], pattern: re.Pattern[str],
                    timeout: float, what: str) -> tuple[subprocess.Popen[bytes], re.Match[str],
                                                        Path]:
    """Start a server process (its own session: the stop button must not kill it); wait
    for the line that gives its address. Output goes to a log file, never a pipe."""
    log = Path(tempfile.mkdtemp(prefix="rpyc_ipy-demo-")) / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + timeout
    while True:
        text = log.read_text(errors="replace")
        found = pattern.search(text)
        if found:
            return process, found, log
        if process.poll() is not None or time.monotonic() > deadline:
            _stop_process(process)
            raise RuntimeError(f"the {what} did not start:\n{text.strip()[-2000:]}")
        time.sleep(0.05)


def demo_server(timeout: float = 30.0) -> DemoServer:
    """The demo server a notebook should use.

    With ``RPYC_IPY_DEMO_HOST``/``_PORT`` set (``make demo``, ``make lab``, the
    tests): that server. Otherwise this starts one in a subprocess on 127.0.0.1
    with a random password, puts the ``RPYC_IPY_DEMO_*`` variables into
    ``os.environ`` (so ``--password-env`` finds the password) and stops it when
    the kernel exits (or at :meth:`DemoServer.stop`).
    """
    host, port = os.environ.get(ENV_HOST), os.environ.get(ENV_PORT)
    if host and port:
        if not os.environ.get(ENV_PASSWORD):
            raise RuntimeError(f"{ENV_HOST}/{ENV_PORT} are set but {ENV_PASSWORD} is not")
        return DemoServer(host, int(port), os.environ.get(ENV_USER) or DEMO_USER)
    password = secrets.token_urlsafe(18)
    env = _child_env({ENV_PASSWORD: password})
    process, found, _ = _spawn_and_wait(
        [sys.executable, "-m", "rpyc_ipy.demo", "--serve", "--port", "0", "--exit-with-parent"],
        env,
        re.compile(r"demo server on (?P<host>\S+):(?P<port>\d+) "), timeout, "demo server")
    atexit.register(_stop_process, process)
    os.environ.update({ENV_HOST: found.group("host"), ENV_PORT: found.group("port"),
                       ENV_USER: DEMO_USER, ENV_PASSWORD: password})
    return DemoServer(found.group("host"), int(found.group("port")), DEMO_USER,
                      started_here=True, _process=process)


@dataclass
class ClassicServer:
    """A classic RPyC server (``rpyc-ipy serve --classic``) on 127.0.0.1, for demos."""

    host: str
    port: int
    warning: str
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            _stop_process(process)


def classic_server(timeout: float = 30.0) -> ClassicServer:
    """Start ``rpyc-ipy serve --classic --port 0`` (loopback only); ``.warning`` is the
    banner it printed. Stop it with ``.stop()``: whoever connects controls this machine."""
    process, found, log = _spawn_and_wait(
        [sys.executable, "-m", "rpyc_ipy.demo", "--classic-serve", "--exit-with-parent"],
        _child_env(),
        _SERVING, timeout, "classic server")
    atexit.register(_stop_process, process)
    banner = "\n".join(line for line in _ANSI.sub("", log.read_text(errors="replace"))
                       .splitlines() if line.startswith("!"))
    return ClassicServer(found.group("host").strip("[]"), int(found.group("port")), banner,
                         process)


# -- running a notebook ---------------------------------------------------------------------------


def run_notebook(path: str | os.PathLike[str], env: dict[str, str], *,
                 output: str | os.PathLike[str] | None = None, kernel_name: str = "python3",
                 timeout: float = 60.0, startup_timeout: float = 60.0,
                 kernel_log: Any = None) -> Any:
    """Execute a notebook with nbclient in a fresh kernel with ``env`` added to the
    environment; returns the executed notebook (also written to ``output``).

    The kernel's own stderr (its log) goes to ``kernel_log`` (a file object), or nowhere.

    Raises nbclient's ``CellExecutionError`` when a cell fails (the notebook with
    the outputs so far is still written to ``output``).
    """
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name=kernel_name, timeout=int(timeout),
                            startup_timeout=int(startup_timeout), allow_errors=False,
                            interrupt_on_timeout=True,
                            resources={"metadata": {"path": str(path.parent)}})
    kernel_log = kernel_log if kernel_log is not None else subprocess.DEVNULL
    try:
        client.execute(env=_child_env(env), stderr=kernel_log)
    finally:
        if output is not None:
            nbformat.write(nb, str(output))
    return nb


def cell_outputs(cell: Any) -> list[str]:
    """The text of a code cell's outputs (no ANSI): streams, ``text/plain`` with the other
    MIME types named, ``ename: evalue`` for errors."""
    texts: list[str] = []
    for out in cell.get("outputs", []):
        kind = out.get("output_type")
        if kind == "stream":
            texts.append(out.get("text", ""))
        elif kind in ("execute_result", "display_data"):
            data = out.get("data", {})
            plain = data.get("text/plain", "")
            others = sorted(mime for mime in data if mime != "text/plain")
            if plain.startswith("<IPython.core.display."):
                plain = ""
            note = f"[{', '.join(others)}]" if others else ""
            texts.append(f"{plain}\n{note}" if plain and note else plain or note)
        elif kind == "error":
            texts.append(f"{out.get('ename')}: {out.get('evalue')}")
    return [_ANSI.sub("", text) for text in texts]


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters with a trailing ``…``, between words when it
    can: half a name ("RPYC_IPY_DEMO" of "RPYC_IPY_DEMO_PASSWORD") reads as a wrong one."""
    if len(text) <= width:
        return text
    head = text[:width - 2]  # room for " …"
    space = head.rfind(" ")
    if text[width - 2] != " " and space > width // 2:
        head = head[:space]
    return head.rstrip() + " …"


def summarize(nb: Any, lines_per_cell: int = 6, width: int = 120) -> str:
    """A few lines per code cell, each at most ``width`` characters: its first source
    line, then its outputs."""
    parts: list[str] = []
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        source = [line for line in cell.get("source", "").strip().splitlines()
                  if line.strip() and not line.lstrip().startswith("#")]
        if not source:
            continue
        count = cell.get("execution_count")
        prompt = f"In [{count if count is not None else ' '}]: "
        parts.append(prompt + clip(source[0], width - len(prompt)))
        lines = [line for text in cell_outputs(cell) for line in text.rstrip().splitlines()]
        lines = [line for line in lines if line.strip()]
        for line in lines[:lines_per_cell]:
            parts.append("      " + clip(line, width - 6))
        if len(lines) > lines_per_cell:
            parts.append(f"      … ({len(lines) - lines_per_cell} more lines)")
    return "\n".join(parts)


def _executed_path(notebook: Path) -> Path:
    target = notebook.with_name(notebook.stem + ".executed.ipynb")
    if os.access(target.parent, os.W_OK):
        return target
    return Path(tempfile.mkdtemp(prefix="rpyc_ipy-demo-")) / target.name


def run_demo(notebook: Path | None = None, output: Path | None = None,
             timeout: float = 60.0) -> int:
    """``make demo``: a server, the quickstart notebook, its key outputs. Exit status."""
    notebook = notebook or NOTEBOOKS / "quickstart.ipynb"
    if not notebook.is_file():
        print(f"rpyc_ipy demo: error: {notebook} not found (run the demo from a checkout of "
              "rpyc_ipy, or pass --notebook PATH)", file=sys.stderr)
        return 2
    try:
        import nbclient  # noqa: F401
        import nbformat  # noqa: F401
    except ImportError as exc:
        print(f"rpyc_ipy demo: error: the demo runs notebooks with nbclient and nbformat "
              f"({exc.name} is missing): pip install nbclient nbformat", file=sys.stderr)
        return 2
    output = output or _executed_path(notebook)
    print("rpyc_ipy demo: starting a notebook execution server (TLS-SRP) on 127.0.0.1 …",
          flush=True)
    started = time.monotonic()
    # capture_fd=False: the server shares this process; C-level output of cells would
    # otherwise capture this process's own stdout/stderr while a cell runs
    with EmbeddedServer(capture_fd=False) as server:
        print(f"  server: {server.host}:{server.port}, throwaway user {server.user!r}, random "
              f"password passed to the notebook in ${ENV_PASSWORD}", flush=True)
        print(f"  running {notebook.name} headless (nbclient, kernel python3) …", flush=True)
        with tempfile.TemporaryFile() as kernel_log:
            try:
                nb = run_notebook(notebook, server.env(), output=output, timeout=timeout,
                                  kernel_log=kernel_log)
            except Exception as exc:
                kernel_log.seek(0)
                log = kernel_log.read().decode("utf-8", "replace")
                return _report_failure(exc, output, log)
    print()
    print(summarize(nb))
    print()
    print(f"rpyc_ipy demo: ok: {sum(c.cell_type == 'code' for c in nb.cells)} code cells ran "
          f"in {time.monotonic() - started:.1f} s; the server is stopped")
    print(f"  executed notebook: {output}")
    return 0


def _report_failure(exc: BaseException, output: Path, kernel_log: str = "") -> int:
    name = type(exc).__name__
    text = _ANSI.sub("", str(exc)).strip()
    lines = text.splitlines()
    if len(lines) > 40:
        lines = [*lines[:10], "…", *lines[-25:]]
    print(f"\nrpyc_ipy demo: FAILED ({name})", file=sys.stderr)
    for line in lines:
        print(f"  {line}", file=sys.stderr)
    if output.exists():
        print(f"  the notebook as far as it ran: {output}", file=sys.stderr)
    log_lines = [line for line in kernel_log.splitlines()
                 if line.strip() and "running over TCP without encryption" not in line]
    if log_lines:
        print("  the kernel's log ends with:", file=sys.stderr)
        for line in log_lines[-15:]:
            print(f"    {line}", file=sys.stderr)
    if name == "NoSuchKernel":
        print("  the python3 kernel is missing: pip install ipykernel", file=sys.stderr)
    return 1


# -- serve / lab ----------------------------------------------------------------------------------


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(0)  # unwinds through the server's ``with``: a clean stop


def _watch_parent(parent: int) -> None:
    """Stop when the process that started us is gone (a notebook kernel killed hard)."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)


def _serve(port: int, lab: bool, notebook: Path, exit_with_parent: bool = False) -> int:
    password = os.environ.get(ENV_PASSWORD) or None
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if exit_with_parent:
        threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    with EmbeddedServer(port=port, password=password) as server:
        env = server.env()
        print(f"rpyc_ipy demo server on {server.host}:{server.port} (TLS-SRP, user "
              f"{server.user!r}); Ctrl-C stops it", flush=True)
        print(f"  connect:  %rpyc_connect demo={server.host}:{server.port} --srp-user "
              f"{server.user} --password-env {ENV_PASSWORD}")
        print("  the notebooks read these environment variables:")
        for key in (ENV_HOST, ENV_PORT, ENV_USER):
            print(f"    export {key}={env[key]}")
        if password:
            print(f"    ({ENV_PASSWORD} is already set in your environment)")
        elif lab:
            print(f"    ({ENV_PASSWORD}: a random password, in JupyterLab's environment)")
        else:
            print(f"    export {ENV_PASSWORD}={server.password}   # throwaway, this server only")
        sys.stdout.flush()
        try:
            if lab:
                return _lab(env, notebook)
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("\nrpyc_ipy demo server: stopped", flush=True)
            return 0


def _have_jupyterlab() -> bool:
    import importlib.util

    return importlib.util.find_spec("jupyterlab") is not None


def _lab(env: dict[str, str], notebook: Path) -> int:
    argv = [sys.executable, "-m", "jupyterlab", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.root_dir={notebook.parent}", str(notebook)]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # a container: Jupyter refuses root
        argv.append("--allow-root")
    process = subprocess.Popen(argv, env=_child_env(env))
    try:
        while True:
            try:
                return process.wait()
            except KeyboardInterrupt:  # JupyterLab got the Ctrl-C too: it asks, or stops
                continue
    finally:  # we were stopped (SIGTERM): JupyterLab goes with us
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rpyc_ipy.demo [--serve | --lab]``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m rpyc_ipy.demo",
        description="Run notebooks/quickstart.ipynb headless against a throwaway TLS-SRP "
                    "server (make demo), or only start that server (--serve), or start it "
                    "and JupyterLab (--lab).")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--serve", action="store_true",
                      help="only start the server and print how to reach it")
    mode.add_argument("--lab", action="store_true",
                      help="start the server and JupyterLab on the quickstart notebook")
    parser.add_argument("--port", type=int, default=0,
                        help="port for --serve/--lab (default: a free one)")
    parser.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--classic-serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--notebook", type=Path, default=None,
                        help="the notebook to run (default notebooks/quickstart.ipynb)")
    parser.add_argument("--output", type=Path, default=None,
                        help="where to write the executed notebook (default "
                             "notebooks/quickstart.executed.ipynb)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds one cell may take (default 60)")
    args = parser.parse_args(argv)
    if args.classic_serve:  # classic_server(): `rpyc-ipy serve --classic` that ends with us
        from rpyc_ipy.cli import main as cli_main

        if args.exit_with_parent:
            threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
        return cli_main(["serve", "--classic", "--host", HOST, "--port", str(args.port)])
    if args.lab and not _have_jupyterlab():
        print("rpyc_ipy demo: error: JupyterLab is not installed: pip install 'rpyc_ipy[lab]' "
              "(make lab does it)", file=sys.stderr)
        return 2
    if args.serve or args.lab:
        return _serve(args.port, args.lab, args.notebook or NOTEBOOKS / "quickstart.ipynb",
                      args.exit_with_parent)
    try:
        return run_demo(args.notebook, args.output, args.timeout)
    except KeyboardInterrupt:
        print("\nrpyc_ipy demo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
