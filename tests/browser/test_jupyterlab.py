"""The notebooks in JupyterLab, in a real Chromium: what a person sees when running them.

Each test opens a copy of a notebook (outputs cleared), runs every cell as a person
does (Shift+Enter, or Run All Cells), and checks what shows on the page: the session
card, output streaming in while a cell still runs, rendered results, the browse tree
opening on a click, the stop button ending remote work, the remote kernel's output,
and the "Python 3 (rpyc_ipy)" kernelspec of jupyter-data/ with the magics loaded.
The ``page`` fixture fails a test whose page logged an error. A few cells are added
to the quickstart's copy, each marked "added by the browser test": one whose output
waits for the test (to see streaming before the cell ends, whatever the machine's
speed) and one that runs until the stop button ends it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from labkit import REMOTE_KERNEL, REPO, Lab, copy_notebook
from pagekit import RUNNING, SECOND, ConsoleWatch, NotebookPage, Screenshots
from playwright.sync_api import Browser, Page, expect

NOTEBOOKS = REPO / "notebooks"
DOCS_IMAGES = REPO / "docs" / "images"
PYTHON_KERNEL = "Python 3 (ipykernel)"
# step name -> the README's picture it becomes (RPYC_IPY_UPDATE_SCREENSHOTS=1)
README_PICTURES = {"session-card": "session-card.png", "streaming": "streaming.png",
                   "browse": "browse.png", "policy": "policy.png"}

GATE_CELL = '''%%remote
# added by the browser test: wait_for_the_test() returns once the test saw the output so far
import os as _os, time as _time

def wait_for_the_test(gate={gate!r}):
    for _ in range(1200):  # two minutes at most
        if _os.path.exists(gate):
            return
        _time.sleep(0.1)'''

STREAMING_CELL = '''%%remote
print("step 1 of 2: reading the data …", flush=True)
wait_for_the_test()  # a slow step (added by the browser test)
print("step 2 of 2: done", flush=True)'''

STOP_CELL = '''%%remote
# added by the browser test: works until the stop button ends it
import time
print("working until stopped", flush=True)
time.sleep(300)'''

AFTER_STOP_CELL = '''%%remote
print("the session answers after the stop button")'''


def _code_index(cells: list[Any], piece: str) -> int:
    found = [i for i, cell in enumerate(cells) if cell.cell_type == "code" and piece in cell.source]
    assert len(found) == 1, f"expected one code cell with {piece!r}, found {found}"
    return found[0]


def _error_cells(notebook: Any) -> list[int]:
    return [i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"
            and any(out.output_type == "error" for out in cell.outputs)]


def _open(page: Page, lab: Lab, name: str, cells: list[Any], kernel: str) -> NotebookPage:
    page.goto(lab.open_url(name))
    notebook = NotebookPage(page)
    notebook.wait_loaded(len(cells), kernel)
    return notebook


@pytest.mark.timeout(300)
def test_quickstart_in_jupyterlab(page: Page, lab: Lab, shots: Screenshots,
                                  publish_screenshots: bool, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    cells = copy_notebook(NOTEBOOKS / "quickstart.ipynb", lab.notebooks / "quickstart.ipynb",
                          insert={"and this notebook's kernel is pid":
                                  [GATE_CELL.format(gate=str(gate)), STREAMING_CELL],
                                  "%%remote --timeout": [STOP_CELL, AFTER_STOP_CELL]})
    connect = _code_index(cells, "%rpyc_connect demo=")
    hello = _code_index(cells, "hello from the server")
    streaming = _code_index(cells, "step 1 of 2")
    rich = _code_index(cells, "display(chart, table)   # safe by default")
    trusted = _code_index(cells, "display(chart, table)   # trusted")
    pull = _code_index(cells, "%rpyc_pull demo summary")
    netref = _code_index(cells, "ns = demo.ns")
    browse = _code_index(cells, "%rpyc_browse")
    policy = _code_index(cells, "%rpyc_policy demo")
    stop = _code_index(cells, "works until the stop button")
    after_stop = _code_index(cells, "answers after the stop button")
    timeout = _code_index(cells, "%%remote --timeout")
    nb = _open(page, lab, "quickstart.ipynb", cells, PYTHON_KERNEL)
    shots.take("quickstart-opened", page)

    for index, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        if index == streaming:
            # the first line is on the page while the cell still runs
            nb.start(index)
            expect(nb.output(index)).to_contain_text("step 1 of 2: reading the data",
                                                     timeout=30 * SECOND)
            expect(nb.prompt(index)).to_have_text(RUNNING)
            expect(nb.output(index)).not_to_contain_text("step 2 of 2")
            shots.take("streaming", nb.cell(index))
            gate.touch()
            nb.wait_done(index)
            expect(nb.output(index)).to_contain_text("step 2 of 2: done")
        elif index == stop:
            nb.start(index)
            expect(nb.output(index)).to_contain_text("working until stopped",
                                                     timeout=30 * SECOND)
            expect(nb.prompt(index)).to_have_text(RUNNING)
            shots.take("stop-running", nb.cell(index))
            nb.stop_button().click()
            nb.wait_done(index, timeout=30)  # well before the remote sleep's 300 s
            # one line a person can act on, not our traceback
            expect(nb.output(index)).to_contain_text("the session is ready for the next cell")
            expect(nb.output(index)).not_to_contain_text("Traceback")
            expect(nb.output(index)).not_to_contain_text("rpyc_ipy/")
            shots.take("stopped", nb.cell(index))
        elif index == timeout:  # ends at its 1 s timeout, long before the 30 s sleep
            nb.run(index, timeout=20)
        else:
            nb.run(index)

        output = nb.output(index)
        if index == connect:
            card = output.locator(".rpyc-ipy-session table")
            expect(card).to_be_visible()
            expect(card).to_contain_text("TLS")
            expect(card).to_contain_text(lab.env["RPYC_IPY_DEMO_USER"])
            expect(card).to_contain_text(f"127.0.0.1:{lab.env['RPYC_IPY_DEMO_PORT']}")
            shots.take("session-card", nb.cell(index))
        elif index == hello:
            expect(output).to_contain_text("hello from the server, pid")
            expect(output).to_contain_text("step 2")
            expect(output.locator(".jp-OutputArea-executeResult")).to_contain_text("45")
            shots.take("remote-cell", nb.cell(index))
        elif index == rich:  # an untrusted server: the chart as an image, the table sanitized
            chart = output.locator('img[src^="data:image/svg+xml;base64,"]')
            expect(chart).to_be_visible()
            expect(output.locator("table tr")).to_have_count(6)
            shots.take("safe-display", nb.cell(index))
        elif index == trusted:
            table = output.locator("table")
            expect(table.locator("tr")).to_have_count(6)
            expect(table).to_contain_text("value")
            shots.take("trusted-display", nb.cell(index))
        elif index == pull:
            expect(output).to_contain_text("'mean': 13.28")
        elif index == netref:
            expect(output).to_contain_text("13.28")
            expect(output).to_contain_text("'measurements'")
        elif index == browse:
            tree = output.locator(".rpyc-ipy-browse")
            # the namespace is open; "summary" (a dict) opens on a click and shows its keys
            node = tree.locator("details details", has=page.locator(
                "summary", has_text=re.compile(r"^summary\b"))).first
            children = node.locator(":scope > div")
            expect(node).not_to_have_attribute("open", "")
            expect(children).to_be_hidden()
            node.locator(":scope > summary").click()
            expect(node).to_have_attribute("open", "")
            expect(children).to_be_visible()
            expect(children).to_contain_text("'mean'")
            shots.take("browse", nb.cell(index))
        elif index == policy:
            expect(output.locator(".rpyc-ipy-policy")).to_be_visible()
            # the answers first, visible; the details collapsed under them
            expect(output.locator(".rpyc-ipy-policy-summary")).to_contain_text(
                "Encrypted (TLS-SRP)")
            expect(output.locator(".rpyc-ipy-policy-summary")).to_contain_text(
                "nothing it sends runs here")
            expect(output).to_contain_text("trust_remote_display")
            shots.take("policy", nb.cell(index), max_height=560)
        elif index == after_stop:
            expect(output).to_contain_text("the session answers after the stop button")
        elif index == timeout:
            expect(output).to_contain_text("sleeping for 30 s")
            expect(output).not_to_contain_text("Traceback")
            expect(output).not_to_contain_text("rpyc_ipy/")
            shots.take("timeout", nb.cell(index))
    shots.take("quickstart-done", page)

    nb.save()
    saved = lab.saved("quickstart.ipynb")
    # errors only where the notebook expects them: the stop button and the timeout
    assert set(_error_cells(saved)) <= {stop, timeout}, _error_cells(saved)
    # every cell ran (Shift+Enter on the last cell adds an empty one below it)
    assert all(cell.execution_count for cell in saved.cells
               if cell.cell_type == "code" and cell.source)
    if publish_screenshots:
        copied = shots.publish(README_PICTURES, DOCS_IMAGES)
        assert len(copied) == len(README_PICTURES), copied


@pytest.mark.timeout(300)
def test_remote_kernel_notebook_in_jupyterlab(page: Page, lab: Lab,
                                              shots: Screenshots) -> None:
    cells = copy_notebook(NOTEBOOKS / "remote_kernel.ipynb",
                          lab.notebooks / "remote_kernel.ipynb")
    last = max(i for i, cell in enumerate(cells) if cell.cell_type == "code")
    nb = _open(page, lab, "remote_kernel.ipynb", cells, PYTHON_KERNEL)
    nb.run_all()
    nb.wait_done(last, timeout=180)
    expected = {
        "install_kernel_spec(": ["rpyc_ipy.kernel", "--RemoteKernel.srp_user=demo"],
        '"rpyc_ipy.kernel", "list"': ["rpyc-demo"],
        "6 * 7": ["running on the server, pid", "tick 2", "42"],
        "%%local": ["a %%local cell runs in the kernel itself, pid"],
        'kc.complete("remote_an"': ["completions: ['remote_answer']", "found: True"],
        'run("1 / 0")': ["ZeroDivisionError"],
        "km.interrupt_kernel()": ["interrupted: error", "the kernel answers again"],
    }
    for piece, texts in expected.items():
        index = _code_index(cells, piece)
        for text in texts:
            expect(nb.output(index)).to_contain_text(text)
    shots.take("remote-kernel-cells", nb.cell(_code_index(cells, "6 * 7")))
    shots.take("remote-kernel-stop", nb.cell(_code_index(cells, "km.interrupt_kernel()")))
    nb.save()
    assert _error_cells(lab.saved("remote_kernel.ipynb")) == []


@pytest.mark.timeout(300)
def test_remote_kernel_in_jupyterlab(page: Page, lab: Lab, shots: Screenshots,
                                     tmp_path: Path) -> None:
    """A notebook on the remote kernel itself (the kernelspec a user installs)."""
    gate = tmp_path / "gate"
    sources = [
        'import os\nprint("running on the server, pid", os.getpid())\n'
        'for i in range(3):\n    print("tick", i, flush=True)\n6 * 7',
        '%%local\nimport os\nprint("a %%local cell runs in the kernel itself, pid", '
        'os.getpid())',
        GATE_CELL.removeprefix("%%remote\n").format(gate=str(gate)),
        STREAMING_CELL.removeprefix("%%remote\n"),
        STOP_CELL.removeprefix("%%remote\n"),
        'print("the kernel answers after the stop button")',
        "1 / 0",
    ]
    nb_file = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb_file.metadata["kernelspec"] = {"name": REMOTE_KERNEL, "language": "python",
                                      "display_name": "Remote Python (demo)"}
    nbformat.write(nb_file, lab.notebooks / "remote.ipynb")
    nb = _open(page, lab, "remote.ipynb", nb_file.cells, "Remote Python (demo)")

    nb.run(0)
    expect(nb.output(0)).to_contain_text("running on the server, pid")
    expect(nb.output(0)).to_contain_text("tick 2")
    expect(nb.output(0).locator(".jp-OutputArea-executeResult")).to_contain_text("42")
    nb.run(1)
    expect(nb.output(1)).to_contain_text("a %%local cell runs in the kernel itself, pid")
    shots.take("remote-kernel", nb.panel)

    nb.run(2)
    nb.start(3)  # its first line shows while it runs
    expect(nb.output(3)).to_contain_text("step 1 of 2: reading the data", timeout=30 * SECOND)
    expect(nb.prompt(3)).to_have_text(RUNNING)
    expect(nb.output(3)).not_to_contain_text("step 2 of 2")
    shots.take("remote-kernel-streaming", nb.cell(3))
    gate.touch()
    nb.wait_done(3)
    expect(nb.output(3)).to_contain_text("step 2 of 2: done")

    nb.start(4)
    expect(nb.output(4)).to_contain_text("working until stopped", timeout=30 * SECOND)
    expect(nb.prompt(4)).to_have_text(RUNNING)
    nb.stop_button().click()
    nb.wait_done(4, timeout=30)  # well before the remote sleep's 300 s
    expect(nb.output(4)).to_contain_text("KeyboardInterrupt")
    expect(nb.output(4)).not_to_contain_text("rpyc_ipy/")  # no frames of ours
    nb.run(5)
    expect(nb.output(5)).to_contain_text("the kernel answers after the stop button")
    nb.run(6)
    expect(nb.output(6)).to_contain_text("ZeroDivisionError")
    expect(nb.output(6)).not_to_contain_text("rpyc_ipy/")
    shots.take("remote-kernel-stop-and-error", nb.panel)
    nb.save()
    assert _error_cells(lab.saved("remote.ipynb")) == [4, 6]


@pytest.mark.timeout(300)
def test_extension_kernelspec_in_jupyterlab(page: Page, lab: Lab, shots: Screenshots) -> None:
    """The "Python 3 (rpyc_ipy)" kernel of jupyter-data/ has the magics without %load_ext."""
    sources = [
        "import os\nhost, port = os.environ['RPYC_IPY_DEMO_HOST'], "
        "os.environ['RPYC_IPY_DEMO_PORT']",
        "%rpyc_connect ext={host}:{port} --srp-user demo --password-env "
        "RPYC_IPY_DEMO_PASSWORD",
        "%remote 6 * 7",
    ]
    nb_file = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb_file.metadata["kernelspec"] = {"name": "rpyc_ipy", "language": "python",
                                      "display_name": "Python 3 (rpyc_ipy)"}
    nbformat.write(nb_file, lab.notebooks / "extension.ipynb")
    nb = _open(page, lab, "extension.ipynb", nb_file.cells, "Python 3 (rpyc_ipy)")
    for index in range(len(sources)):
        nb.run(index)
    card = nb.output(1).locator(".rpyc-ipy-session table")
    expect(card).to_contain_text("TLS-SRP")
    expect(card).to_contain_text("started fresh")  # its own session, not the quickstart's
    expect(nb.output(2).locator(".jp-OutputArea-executeResult")).to_contain_text("42")
    shots.take("extension-kernel", nb.panel)
    nb.save()
    assert _error_cells(lab.saved("extension.ipynb")) == []


def test_the_console_watch_sees_errors(browser: Browser) -> None:
    """The check every page above passes: an error logged or thrown is seen."""
    context = browser.new_context()
    try:
        page = context.new_page()
        console = ConsoleWatch(page)
        page.set_content("<p>console check</p>")
        page.evaluate("console.error('logged on purpose')")
        page.evaluate("setTimeout(() => { throw new Error('thrown on purpose'); }, 0)")
        expect(page.locator("p")).to_have_text("console check")
        page.wait_for_function("() => new Promise(done => setTimeout(() => done(true), 0))",
                               timeout=10 * SECOND)
    finally:
        context.close()
    assert [p.split(":")[0] for p in console.problems] == ["console error", "uncaught"]
    assert "logged on purpose" in console.problems[0]
    assert "thrown on purpose" in console.problems[1]
