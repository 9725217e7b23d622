"""Safe display of netrefs, ``?`` on netrefs and completion: counted in requests."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ipy_rig import RequestCounter, completions, connect, html_of, run
from ipy_servers import ServerProcess
from IPython.core.interactiveshell import InteractiveShell

from rpyc_ipy.ipython.display import filter_bundle
from rpyc_ipy.ipython.extension import extension_of
from rpyc_ipy.ipython.session import RemoteSession
from rpyc_ipy.ipython.text import sanitize_text
from rpyc_ipy.protocol import consts


@pytest.fixture
def session(ip: InteractiveShell, exec_server: ServerProcess) -> RemoteSession:
    sess = connect(ip, "s", exec_server)
    sess.execute("import os\nclass Thing:\n    '''A thing.'''\n    def _repr_html_(self):\n"
                 "        return '<i>thing</i>'\n    def __repr__(self):\n"
                 "        return 'Thing()'\nthing = Thing()\nitems = list(range(5))\n"
                 "def helper(x):\n    return x + 1")
    return sess


def test_a_netref_at_the_prompt_costs_at_most_three_requests(ip: InteractiveShell,
                                                             session: RemoteSession) -> None:
    ip.user_ns["thing"] = session.ns.thing
    counter = RequestCounter(session.conn)
    _, captured = run(ip, "thing")  # Out[]: the displayhook
    assert counter.count == 1, counter.handlers  # the engine's bounded repr
    assert captured.stdout.strip().endswith("Thing()")
    counter.reset()
    _, captured = run(ip, "display(thing)")
    assert counter.count <= 3, counter.handlers
    html = html_of(captured)
    assert "<i>thing</i>" not in html and "remote" in html and "Thing()" in html
    counter.remove()


def test_a_huge_repr_is_cut_by_the_server(ip: InteractiveShell, session: RemoteSession) -> None:
    session.execute("big = list(range(2_000_000))")
    ip.user_ns["big"] = session.ns.big
    ip.run_line_magic("config", "RPyCPolicy.max_repr_chars = 100")
    counter = RequestCounter(session.conn)
    _, captured = run(ip, "big")
    assert counter.count == 1 and len(captured.stdout) < 200
    assert "more)" in captured.stdout
    counter.remove()


def test_without_an_engine_a_netref_costs_one_repr(ip: InteractiveShell,
                                                   server_dir: Path,
                                                   request: pytest.FixtureRequest) -> None:
    from ipy_servers import spawn

    server = spawn("classic", server_dir)
    request.addfinalizer(server.stop)
    plain = connect(ip, "p", server)  # no --classic: a plain service, netrefs only
    ip.user_ns["mod"] = plain.conn.root.getmodule("os")
    counter = RequestCounter(plain.conn)
    _, captured = run(ip, "mod")
    assert counter.handlers == [consts.HANDLE_REPR] and "module 'os'" in captured.stdout
    counter.remove()


def test_trusted_display_fetches_one_bundle_by_value(ip: InteractiveShell,
                                                     session: RemoteSession) -> None:
    ip.user_ns["thing"] = session.ns.thing
    ip.run_line_magic("config", "RPyCPolicy.trust_remote_display = True")
    counter = RequestCounter(session.conn)
    _, captured = run(ip, "display(thing)")
    assert counter.count == 1
    assert html_of(captured) == "<i>thing</i>"
    counter.remove()


def test_nested_netrefs_are_bounded(ip: InteractiveShell, session: RemoteSession) -> None:
    ip.user_ns["many"] = [session.ns.thing for _ in range(100)]
    counter = RequestCounter(session.conn)
    _, captured = run(ip, "many")
    assert counter.count <= 20
    assert captured.stdout.count("Thing()") == counter.count
    assert "<remote" in captured.stdout
    ip.user_ns["items"] = session.ns.items
    counter.reset()
    _, captured = run(ip, "items")  # a remote list is not iterated item by item
    assert counter.count == 1 and "[0, 1, 2, 3, 4]" in captured.stdout
    counter.remove()


def test_question_mark_on_a_netref_is_bounded(ip: InteractiveShell, session: RemoteSession) -> None:
    ip.user_ns["thing"] = session.ns.thing
    counter = RequestCounter(session.conn)
    _, captured = run(ip, "thing?")
    assert counter.count == 1, counter.handlers  # the server's inspector, by value
    assert "A thing." in captured.stdout and "Thing" in captured.stdout
    counter.reset()
    _, captured = run(ip, "s.ns.helper??")  # plus the lookup of .helper
    assert counter.count <= 2, counter.handlers
    plain = re.sub(r"\x1b\[[0-9;]*m", "", captured.stdout)
    assert "return x + 1" in plain  # ?? shows the remote source
    assert "ipy_servers" not in captured.stdout
    counter.remove()


def test_question_mark_without_an_engine(ip: InteractiveShell, server_dir: Path,
                                         request: pytest.FixtureRequest) -> None:
    from ipy_servers import spawn

    server = spawn("classic", server_dir)
    request.addfinalizer(server.stop)
    plain = connect(ip, "p", server)  # no --classic: a plain service, netrefs only
    ip.user_ns["mod"] = plain.conn.root.getmodule("os")
    counter = RequestCounter(plain.conn)
    _, captured = run(ip, "mod?")
    assert counter.count <= 2 and "os" in captured.stdout
    counter.remove()


def test_chained_completion_is_cached(ip: InteractiveShell, session: RemoteSession) -> None:
    counter = RequestCounter(session.conn)
    texts = [c.text for c in completions(ip, "s.ns.os.path.jo")]
    # the first TAB builds proxy classes once: namespace, 2 GETATTR, 2 INSPECT, DIR
    assert texts == ["join"] and counter.count <= 8, counter.handlers
    counter.reset()
    assert [c.text for c in completions(ip, "s.ns.os.path.jo")] == ["join"]
    assert counter.count <= 2
    assert [c.text for c in completions(ip, "s.ns.os.path.is")][:2] == ["isabs", "isdir"]
    assert counter.count <= 2
    ip.run_line_magic("config", "RPyCMagics.completion = 'off'")
    extension = extension_of(ip)
    assert extension is not None
    completer = extension.completer
    before = completer.requests
    completions(ip, "s.ns.os.path.jo")  # IPython's own matchers may still look
    assert completer.requests == before
    counter.remove()


def test_completion_survives_the_user_replacing_policy_overrides(ip: InteractiveShell,
                                                                 session: RemoteSession) -> None:
    ip.Completer.policy_overrides = {}
    assert [c.text for c in completions(ip, "s.ns.os.path.jo")] == ["join"]


def test_completion_inside_remote_cells_asks_the_server_once(ip: InteractiveShell,
                                                            session: RemoteSession) -> None:
    session.execute("remote_only_variable = 1")
    ip.user_ns["local_only_variable"] = 2
    counter = RequestCounter(session.conn)
    cell = "%%remote\nx = 1\nremote_only"
    texts = [c.text for c in completions(ip, cell)]
    assert texts == ["remote_only_variable"] and counter.count == 1
    texts = [c.text for c in completions(ip, "%%remote -s s\nos.path.jo")]
    assert texts == ["join"]
    texts = [c.text for c in completions(ip, "%remote local_only")]
    assert "local_only_variable" not in texts
    texts = [c.text for c in completions(ip, "%remote remote_o")]
    assert texts == ["remote_only_variable"]
    counter.remove()


def test_sanitize_keeps_colours_and_drops_other_escapes() -> None:
    text = "a\x1b[31mred\x1b[0m\x1b]52;c;eA==\x07b\x1b]0;title\x1b\\c\x1b[2Jd\x00e\x9bf\x07g\n"
    assert sanitize_text(text) == "a\x1b[31mred\x1b[0mbcdefg\n"
    assert sanitize_text(123) == ""  # type: ignore[arg-type]


def test_filter_bundle_enforces_types_and_sizes() -> None:
    data = {"text/html": "<b>x</b>", "text/plain": "p\x1b]0;t\x07", "image/png": b"\x89PNG",
            "application/javascript": "alert(1)", "application/json": '{"a": 1}',
            "image/jpeg": b"x" * 100}
    out, _ = filter_bundle(data, {}, frozenset({"text/plain", "image/png", "image/jpeg"}), 50)
    assert set(out) == {"text/plain", "image/png"}
    assert out["text/plain"] == "p" and out["image/png"] == "iVBORw=="
    out, _ = filter_bundle(data, {}, frozenset({"text/html", "application/json"}), 1000)
    assert out["application/json"] == {"a": 1} and out["text/html"] == "<b>x</b>"


def test_remote_inspection_of_code_formats_like_ipython(ip: InteractiveShell,
                                                       session: RemoteSession) -> None:
    from rpyc_ipy.ipython.inspection import info_bundle

    info = session.inspect("helper(", 7)
    assert info is not None and info["type_name"] == "function"
    bundle = info_bundle(ip.inspector, info, "helper", 0)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", bundle["text/plain"])
    assert re.search(r"Signature: +helper\(x\)", plain) and "text/html" in bundle
    assert session.inspect("no_such_name", 3) is None
