"""The remote kernel at message level (jupyter_client against a real kernel and a real
TLS-SRP server): execute with live output, display by value, remote tracebacks, %%local,
completion and inspection answered remotely."""

from __future__ import annotations

from pathlib import Path

import pytest
from kernelkit import Cell, KernelRig, NotebookServer, parent_of, plain, start_kernel

pytestmark = pytest.mark.timeout(120)


def test_kernel_info_names_the_remote_kernel(kernel: KernelRig, server: NotebookServer) -> None:
    info = kernel.request("kernel_info")
    assert info["implementation"] == "rpyc_ipy"
    assert info["language_info"]["name"] == "python"
    assert f"cells run on alice@127.0.0.1:{server.port}" in info["banner"]
    assert "%%local" in info["banner"]


def test_output_streams_while_the_remote_cell_runs(kernel: KernelRig, server: NotebookServer,
                                                   tmp_path: Path) -> None:
    # the cell waits for a file that the test writes only once it has seen "tick 0":
    # output held back until the end would leave the cell waiting until the run times out
    go = tmp_path / "seen tick 0"
    seen: list[bool] = []

    def release(cell: Cell) -> bool:
        if "tick 0" not in cell.stream():
            return False
        go.touch()
        seen.append(True)
        return True

    cell = kernel.run("import os, time\n"
                      "print('pid', os.getpid(), flush=True)\n"
                      "print('tick 0', flush=True)\n"
                      "for _ in range(1200):  # up to 60 s\n"
                      f"    if os.path.exists({str(go)!r}):\n"
                      "        break\n"
                      "    time.sleep(0.05)\n"
                      f"print('released' if os.path.exists({str(go)!r}) else 'never released')\n"
                      "for i in range(1, 4):\n"
                      "    print('tick', i, flush=True)\n"
                      "6 * 7", during=release)
    assert cell.status == "ok", cell.text
    assert seen, "tick 0 never arrived while the cell ran"
    pid = int(cell.stream().split("pid ", 1)[1].split("\n", 1)[0])
    assert parent_of(pid) == server.pid  # it ran in a worker process of the server
    assert "tick 0\nreleased\ntick 1\ntick 2\ntick 3\n" in cell.stream()
    assert cell.result == {"text/plain": "42"}
    result = cell.of("execute_result")[0]
    assert result["execution_count"] == cell.reply["execution_count"]


def test_stderr_is_its_own_stream(kernel: KernelRig) -> None:
    cell = kernel.run("import sys\nprint('to stderr', file=sys.stderr)\nprint('to stdout')")
    assert cell.stream("stderr") == "to stderr\n"
    assert cell.stream("stdout") == "to stdout\n"


def test_display_comes_by_value_and_follows_the_policy(kernel: KernelRig) -> None:
    define = ("class Card:\n"
              "    def _repr_html_(self):\n"
              "        return '<b onmouseover=\"x()\">remote card</b>'\n"
              "    def __repr__(self):\n"
              "        return 'Card()'\n"
              "display(Card())\n"
              "Card()")
    cell = kernel.run(define)
    assert cell.status == "ok", cell.text
    shown = cell.of("display_data")
    sanitized = {"text/plain": "Card()", "text/html": "<b>remote card</b>"}  # not trusted
    assert [d["data"] for d in shown] == [sanitized]
    assert cell.result == sanitized

    trust = kernel.run("%%local\n%config RPyCPolicy.trust_remote_display = True")
    assert trust.status == "ok", trust.text
    try:
        cell = kernel.run("display(Card())\nCard()")
        sent = '<b onmouseover="x()">remote card</b>'
        assert cell.of("display_data")[0]["data"]["text/html"] == sent
        assert cell.result is not None and cell.result["text/html"] == sent
    finally:
        kernel.run("%%local\n%config RPyCPolicy.trust_remote_display = False")


def test_a_remote_exception_is_an_error_reply_with_the_remote_traceback(
        kernel: KernelRig) -> None:
    cell = kernel.run("def check(value):\n"
                      "    raise ValueError(f'bad value {value}')\n"
                      "check(42)")
    assert cell.status == "error"
    assert cell.reply["ename"] == "ValueError"
    assert cell.reply["evalue"] == "bad value 42"
    text = plain("\n".join(cell.reply["traceback"]))
    assert "Remote error on session 'remote'" in text
    assert "in check" in text and "ValueError: bad value 42" in text
    errors = cell.of("error")
    assert len(errors) == 1 and errors[0]["traceback"] == cell.reply["traceback"]


def test_a_syntax_error_is_reported_from_the_remote_side(kernel: KernelRig) -> None:
    cell = kernel.run("def broken(:\n    pass")
    assert cell.status == "error"
    assert cell.reply["ename"] == "SyntaxError"


def test_local_cells_run_in_the_kernel_and_see_the_session(kernel: KernelRig,
                                                           server: NotebookServer) -> None:
    assert kernel.run("shared_value = 'from the server'").status == "ok"
    cell = kernel.run("%%local\nimport os\nos.getpid()")
    assert cell.status == "ok"
    assert cell.result is not None and int(cell.result["text/plain"]) != server.pid
    cell = kernel.run("%%local\nremote.ns.shared_value")
    assert cell.result == {"text/plain": "'from the server'"}
    cell = kernel.run("%%local\n%rpyc_pull remote shared_value\nprint(shared_value)")
    assert cell.status == "ok", cell.text
    assert "pulled from remote: shared_value" in cell.stream()
    assert cell.stream().endswith("from the server\n")


def test_only_a_first_line_of_percent_percent_local_makes_a_local_cell(
        kernel: KernelRig) -> None:
    cell = kernel.run("x = 1\n%%local\n")  # runs remotely, where %%local is no magic
    assert cell.status == "error" and cell.reply["ename"] == "UsageError"
    cell = kernel.run("\n  %%local  \nimport sys\n'ipykernel' in sys.modules")
    assert cell.result == {"text/plain": "True"}


def test_completion_comes_from_the_remote_namespace(kernel: KernelRig) -> None:
    assert kernel.run("remote_only_name_123 = 1").status == "ok"
    assert kernel.run("%%local\nlocal_only_name_456 = 1").status == "ok"
    reply = kernel.request("complete", "x = remote_only_na", 18)
    assert reply["status"] == "ok"
    assert reply["matches"] == ["remote_only_name_123"]
    assert (reply["cursor_start"], reply["cursor_end"]) == (4, 18)
    assert reply["metadata"]["_jupyter_types_experimental"][0]["text"] == "remote_only_name_123"
    assert kernel.request("complete", "local_only_na", 13)["matches"] == []
    local = kernel.request("complete", "%%local\nlocal_only_na", 21)
    assert "local_only_name_456" in local["matches"]


def test_inspection_comes_from_the_remote_namespace(kernel: KernelRig) -> None:
    cell = kernel.run("def documented(a, b=2):\n"
                      "    '''Adds things, remotely.'''\n"
                      "    return a + b")
    assert cell.status == "ok"
    reply = kernel.request("inspect", "documented(", 5, 0)
    assert reply["status"] == "ok" and reply["found"] is True
    text = plain(reply["data"]["text/plain"])
    assert "Adds things, remotely." in text
    assert "documented(a, b=2)" in text
    assert kernel.request("inspect", "no_such_name_anywhere", 5, 0)["found"] is False


def test_silent_cells_publish_nothing(kernel: KernelRig) -> None:
    msg_id = kernel.kc.execute("print('quiet')\n1 + 1", silent=True)
    assert kernel.shell_reply(msg_id)["status"] == "ok"
    cell = kernel.run("'next'")  # the silent cell's output never showed up here either
    assert all("quiet" not in str(content) for _, content in cell.messages)


def test_empty_cells_do_not_reach_the_server(kernel: KernelRig) -> None:
    cell = kernel.run("   \n")
    assert cell.status == "ok" and cell.messages == []


def test_the_kernelspec_argv_configures_the_extension(server: NotebookServer,
                                                      tmp_path: Path) -> None:
    rig = start_kernel(tmp_path / "prefix", server, name="trusting",
                       extra=["--RPyCPolicy.trust_remote_display=True",
                              "--RPyCMagics.show_card=False"])
    try:
        cell = rig.run("class T:\n"
                       "    def _repr_html_(self):\n"
                       "        return '<i>trusted</i>'\n"
                       "T()")
        assert cell.status == "ok", cell.text
        assert cell.of("display_data") == []  # no session card
        assert cell.result is not None and cell.result["text/html"] == "<i>trusted</i>"
    finally:
        rig.shutdown()


def test_user_expressions_are_evaluated_remotely(kernel: KernelRig,
                                                 server: NotebookServer) -> None:
    msg_id = kernel.kc.execute("import os", user_expressions={
        "pid": "os.getpid()", "bad": "1 / 0", "text": "'x' * 3"})
    expressions = kernel.shell_reply(msg_id)["user_expressions"]
    assert expressions["pid"]["status"] == "ok"
    assert parent_of(int(expressions["pid"]["data"]["text/plain"])) == server.pid
    assert expressions["text"]["data"] == {"text/plain": "'xxx'"}
    assert expressions["bad"]["status"] == "error"
    assert expressions["bad"]["ename"] == "ZeroDivisionError"
