"""Every notebook in notebooks/ runs with nbclient against a real TLS-SRP server, and its
outputs say what the notebook promises (content, not only the absence of errors)."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from kernelkit import PASSWORD, REPO, USER, NotebookServer, child_env, parent_of, plain
from waitkit import wait_until

from rpyc_ipy.demo import ENV_HOST, ENV_PASSWORD, ENV_PORT, ENV_USER, run_notebook

pytestmark = pytest.mark.timeout(180)

NOTEBOOKS = REPO / "notebooks"
BUDGET = 30.0  # seconds one notebook may take


def demo_env(server: NotebookServer) -> dict[str, str]:
    return {ENV_HOST: "127.0.0.1", ENV_PORT: str(server.port), ENV_USER: USER,
            ENV_PASSWORD: PASSWORD}


class Executed:
    """An executed notebook: its code cells' outputs, by a snippet of their source."""

    def __init__(self, nb: Any) -> None:
        self.nb = nb
        self.cells = [c for c in nb.cells if c.cell_type == "code"]

    def cell(self, snippet: str, nth: int = 0) -> Any:
        found = [c for c in self.cells if snippet in c.source]
        assert len(found) > nth, f"no code cell with {snippet!r}"
        return found[nth]

    def outputs(self, snippet: str, nth: int = 0) -> list[dict[str, Any]]:
        return list(self.cell(snippet, nth).outputs)

    def stream(self, snippet: str, name: str = "stdout", nth: int = 0) -> str:
        return plain("".join(o["text"] for o in self.outputs(snippet, nth)
                             if o["output_type"] == "stream" and o["name"] == name))

    def data(self, snippet: str, nth: int = 0) -> list[dict[str, Any]]:
        return [dict(o["data"]) for o in self.outputs(snippet, nth)
                if o["output_type"] in ("execute_result", "display_data")]

    def plain(self, snippet: str, nth: int = 0) -> str:
        return plain("\n".join(d.get("text/plain", "") for d in self.data(snippet, nth)))

    def everything(self) -> str:
        return json.dumps([c.outputs for c in self.cells])


def execute(name: str, server: NotebookServer, tmp_path: Path) -> Executed:
    """Run the notebook on a thread and wait for it at most BUDGET seconds."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(run_notebook(NOTEBOOKS / name, demo_env(server),
                                        output=tmp_path / name, timeout=BUDGET))
        except BaseException as exc:  # raised again on the test's thread
            outcome.append(exc)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(BUDGET)
    assert not runner.is_alive(), f"{name} did not finish within {BUDGET} s"
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    result = Executed(outcome[0])
    assert PASSWORD not in result.everything()  # never shown, whatever the cell
    return result


def test_every_notebook_has_a_test() -> None:
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")
                  if not p.name.endswith(".executed.ipynb")) == [
        "quickstart.ipynb", "remote_kernel.ipynb", "security.ipynb"]


def test_quickstart(server: NotebookServer, tmp_path: Path) -> None:
    run = execute("quickstart.ipynb", server, tmp_path)
    assert run.plain("server = demo_server()") == (
        f"demo server 127.0.0.1:{server.port} (from the environment): TLS-SRP, user "
        f"'{USER}', password in ${ENV_PASSWORD}")
    card = run.plain("%rpyc_connect demo=")
    assert "RemoteSession 'demo' (execution)" in card
    assert "TLS-SRP" in card and f"user               {USER}" in card
    assert any("text/html" in d for d in run.data("%rpyc_connect demo="))

    hello = run.stream("print(f\"hello from the server")
    found = re.search(r"hello from the server, pid (\d+)\n", hello)
    assert found and parent_of(int(found.group(1))) == server.pid  # the session's worker
    assert "step 0\nstep 1\nstep 2\n" in hello
    assert run.plain("print(f\"hello from the server") == "45"
    streams = [o for o in run.outputs("print(f\"hello from the server")
               if o["output_type"] == "stream"]
    assert len(streams) >= 2  # it arrived in pieces, while the cell ran

    chart, table = run.data("chart, table = Bars(")  # not trusted: made inert
    assert chart["text/plain"] == "Bars([3, 7, 2, 9, 5])" and "image/svg+xml" not in chart
    image = re.fullmatch(r'<img src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)" alt="[^"]*">',
                         chart["text/html"])
    assert image and base64.b64decode(image.group(1)).decode().count("<rect") == 5
    assert table["text/plain"] == "Table([3, 7, 2, 9, 5])" and "<td>9</td>" in table["text/html"]
    trusted = run.data("display(chart, table)   # trusted")
    assert len(trusted) == 2
    assert trusted[0]["image/svg+xml"].count("<rect") == 5
    assert "<td>9</td>" in trusted[1]["text/html"]

    assert re.match(r"pushed to demo: measurements \(\d+ B\)", run.stream("%rpyc_push"))
    assert "computed on the server: {'n': 5, 'mean': 13.28, 'max': 14.2}" in \
        run.stream('"mean": round(')
    assert run.stream("%rpyc_pull demo summary").startswith("pulled from demo: summary (")
    assert run.plain("%rpyc_pull demo summary") == "{'n': 5, 'mean': 13.28, 'max': 14.2}"
    assert " ".join(run.plain("ns = demo.ns").split()).startswith(
        "(13.28, ['Bars', 'Table', 'chart', 'measurements'")

    browse = run.data("%rpyc_browse")[0]["text/html"]
    assert "summary" in browse and "measurements" in browse
    policy = run.plain("%rpyc_policy demo")
    assert "the server grants us:" in policy and "allow_pickle                        False" \
        in policy

    timed_out = run.cell("%%remote --timeout 1")
    errors = [o for o in timed_out.outputs if o["output_type"] == "error"]
    assert errors and errors[0]["ename"] == "RemoteTimeoutError"
    shown = plain("\n".join(errors[0]["traceback"]))  # one line, none of our frames
    assert shown == "RemoteTimeoutError: the cell ran longer than 1 s on demo; it was cancelled"
    assert "sleeping for 30 s" in run.stream("%%remote --timeout 1")
    assert "timed out after 1 s: interrupting the cell on demo" in \
        run.stream("%%remote --timeout 1", "stderr")
    assert run.stream("answers again") == "the session answers again right away\n"


def test_security(server: NotebookServer, tmp_path: Path) -> None:
    run = execute("security.ipynb", server, tmp_path)
    policy = run.plain("%rpyc_policy demo")
    assert "allow_public_attrs                  True" in policy
    assert "we grant the server" in policy

    netref = run.stream("account = demo.ns.account")
    assert "owner: alice balance: 100\n" in netref
    assert "denied: cannot access '_pin'\n" in netref

    refusals = run.stream("import pickle")
    assert "copy.deepcopy: refused: PickleDisabledError: copy.deepcopy of a netref needs " \
           "allow_pickle in the local config" in refusals
    assert "pickle.dumps: refused: PickleDisabledError: pickling a netref needs " \
           "allow_pickle" in refusals
    pulled = run.stream("demo.pull([\"account\"])")
    assert "pull refused: cannot pull 'account'" in pulled and "not plain data" in pulled
    assert "plain data travels: balance = 100" in pulled

    prompt = run.data("demo.ns.hostile")
    assert prompt[0]["text/plain"] == "Hostile()"
    assert "&lt;script&gt;" not in prompt[0].get("text/html", "")  # only the repr, escaped
    assert run.plain("%remote Hostile.calls") == "0"  # its _repr_html_ never ran
    assert run.data("display(hostile)") == [{"text/plain": "Hostile()"}]
    assert "<script>" not in run.everything()

    assert "FULL CONTROL" in run.stream("classic = classic_server()")
    assert "classic mode: the server runs any code sent to it" in \
        run.stream("%rpyc_connect full=", "stderr")
    assert "RemoteSession 'full' (classic)" in run.plain("%rpyc_connect full=")
    assert "a classic server runs anything it is sent; its pid is" in \
        run.stream("%%remote -s full")


def test_remote_kernel(server: NotebookServer, tmp_path: Path) -> None:
    run = execute("remote_kernel.ipynb", server, tmp_path)
    spec = json.loads(run.stream("install_kernel_spec("))
    assert spec["argv"][1:5] == ["-m", "rpyc_ipy.kernel", "-f", "{connection_file}"]
    assert f"--RemoteKernel.port={server.port}" in spec["argv"]
    assert "--RemoteKernel.password_env=RPYC_IPY_DEMO_PASSWORD" in spec["argv"]
    assert re.search(rf"rpyc-demo\s+{USER}@127\.0\.0\.1:{server.port}\s",
                     run.stream("rpyc_ipy.kernel\", \"list\""))

    first = run.stream('run("""\nimport os')
    assert "RemoteSession 'remote' (execution)" in first  # the card of the first cell
    found = re.search(r"running on the server, pid (\d+)\n", first)
    assert found and parent_of(int(found.group(1))) == server.pid  # the session's worker
    assert "tick 0\ntick 1\ntick 2\n42\n" in first
    local = run.stream('run("""%%local')
    local_match = re.search(r"runs in the kernel itself, pid (\d+)", local)
    assert local_match, local
    local_pid = int(local_match.group(1))
    assert local_pid != server.pid

    assert "completions: ['remote_answer']\nfound: True\n" in run.stream("kc.complete(")
    remote_error = run.stream('run("1 / 0")')
    assert "Remote error on session 'remote'" in remote_error
    assert "ZeroDivisionError: division by zero" in remote_error

    stopped = run.stream("km.interrupt_kernel()")
    found = re.search(r"interrupted: error KeyboardInterrupt after ([\d.]+) s", stopped)
    assert found and float(found.group(1)) < 5, stopped
    assert "the kernel answers again\n" in stopped


def test_make_demo_runs_the_quickstart_and_prints_its_key_outputs(tmp_path: Path) -> None:
    output = tmp_path / "quickstart.executed.ipynb"
    done = subprocess.run([sys.executable, "-m", "rpyc_ipy.demo", "--output", str(output)],
                          capture_output=True, text=True, timeout=120, env=child_env(),
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "rpyc_ipy demo: starting a notebook execution server (TLS-SRP) on 127.0.0.1" in out
    assert "RemoteSession 'demo' (execution)" in out  # the card's text
    assert "step 2" in out and "hello from the server, pid" in out  # streamed output
    assert "{'n': 5, 'mean': 13.28, 'max': 14.2}" in out  # the pulled value
    assert "Bars([3, 7, 2, 9, 5])\n      [text/html]" in out  # the chart, safely
    assert "Bars([3, 7, 2, 9, 5])\n      [image/svg+xml]" in out  # trusted display
    assert "RemoteTimeoutError" in out
    assert "rpyc_ipy demo: ok:" in out and "the server is stopped" in out
    assert f"executed notebook: {output}" in out
    assert output.is_file()


def test_make_demo_fails_clearly(tmp_path: Path) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    broken = tmp_path / "broken.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("print('first')"),
                                       new_code_cell("raise RuntimeError('on purpose')")]),
                   broken)
    done = subprocess.run([sys.executable, "-m", "rpyc_ipy.demo", "--notebook", str(broken),
                           "--output", str(tmp_path / "out.ipynb")],
                          capture_output=True, text=True, timeout=120, env=child_env(),
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert "rpyc_ipy demo: FAILED (CellExecutionError)" in done.stderr
    assert "RuntimeError: on purpose" in done.stderr
    assert f"the notebook as far as it ran: {tmp_path / 'out.ipynb'}" in done.stderr
    missing = subprocess.run([sys.executable, "-m", "rpyc_ipy.demo", "--notebook",
                              str(tmp_path / "nope.ipynb")], capture_output=True, text=True,
                             timeout=60, env=child_env(), stdin=subprocess.DEVNULL)
    assert missing.returncode == 2 and "not found" in missing.stderr


def test_demo_serve_prints_how_to_connect_and_stops_cleanly(tmp_path: Path) -> None:
    import signal

    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "rpyc_ipy.demo", "--serve"],
                                stdout=out, stderr=subprocess.STDOUT, env=child_env(),
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: "export RPYC_IPY_DEMO_PASSWORD=" in log.read_text()
                   or proc.poll() is not None, timeout=30, step=0.05)
        text = log.read_text()
        assert proc.poll() is None and "export RPYC_IPY_DEMO_PASSWORD=" in text, text
        port_match = re.search(r"demo server on 127\.0\.0\.1:(\d+) \(TLS-SRP", text)
        assert port_match, text
        port = int(port_match.group(1))
        assert f"export RPYC_IPY_DEMO_PORT={port}" in text
        assert f"%rpyc_connect demo=127.0.0.1:{port} --srp-user demo --password-env " \
               "RPYC_IPY_DEMO_PASSWORD" in text
        password_match = re.search(r"export RPYC_IPY_DEMO_PASSWORD=(\S+)", text)
        assert password_match, text
        password = password_match.group(1)

        from rpyc_ipy.ipython.session import open_session
        from rpyc_ipy.target import ConnectionTarget

        target = ConnectionTarget("127.0.0.1", port, srp_user="demo", session_name="check")
        session = open_session(target, password=password)
        try:
            assert session.execute("6 * 7").data["text/plain"] == "42"
        finally:
            session.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_a_notebook_opened_on_its_own_starts_and_stops_a_private_server(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from rpyc_ipy.demo import demo_server
    from rpyc_ipy.ipython.session import open_session
    from rpyc_ipy.target import ConnectionTarget

    for key in (ENV_HOST, ENV_PORT, ENV_USER, ENV_PASSWORD):
        monkeypatch.delenv(key, raising=False)
    server = demo_server()
    try:
        assert server.started_here and server.host == "127.0.0.1"
        target = ConnectionTarget(server.host, server.port, srp_user=server.user,
                                  session_name="own")
        session = open_session(target, password=os.environ[ENV_PASSWORD])
        try:
            assert session.execute("1 + 1").data["text/plain"] == "2"
        finally:
            session.close()
    finally:
        server.stop()
    assert ENV_HOST not in os.environ and ENV_PASSWORD not in os.environ
    assert server._process is None


def test_demo_lab_without_jupyterlab_says_how_to_get_it() -> None:
    import importlib.util

    if importlib.util.find_spec("jupyterlab") is not None:
        pytest.skip("JupyterLab is installed here")
    done = subprocess.run([sys.executable, "-m", "rpyc_ipy.demo", "--lab"],
                          capture_output=True, text=True, timeout=60, env=child_env(),
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert "pip install 'rpyc_ipy[lab]'" in done.stderr
    assert "demo server on" not in done.stdout  # nothing was started
