"""%rpyc_push / %rpyc_pull (by value, pickle only where both sides allow it, size guards),
%rpyc_policy, live policy changes, and %rpyc_browse."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ipy_rig import RequestCounter, connect, html_of, run
from ipy_servers import ServerProcess, spawn
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from rpyc_ipy.ipython.browse import Browser, TreeView, render_html


class Point:
    """Not plain data: only pickle can move it."""

    def __init__(self, x: int) -> None:
        self.x = x


@pytest.fixture(scope="module")
def classic_server(server_dir: Path) -> Iterator[ServerProcess]:
    server = spawn("classic", server_dir)
    yield server
    server.stop()


def test_push_and_pull_plain_data_by_value(ip: InteractiveShell,
                                           exec_server: ServerProcess) -> None:
    session = connect(ip, "s", exec_server)
    ip.user_ns.update(a=[1, 2, {"k": (3.5, b"x")}], b="text")
    with capture_output() as captured:
        ip.run_line_magic("rpyc_push", "s a remote_b=b")
    assert "pushed to s: a (" in captured.stdout and "remote_b (" in captured.stdout
    assert session.execute("a[2]['k'][0] + len(remote_b)").data["text/plain"] == "7.5"
    session.execute("c = {'nested': [set([1, 2]), frozenset([3])], 'r': range(3)}\n"
                    "d = bytearray(b'ab')")
    with capture_output():
        ip.run_line_magic("rpyc_pull", "s c d first=a[0]")
    assert ip.user_ns["c"] == {"nested": [{1, 2}, frozenset({3})], "r": range(3)}
    assert ip.user_ns["d"] == bytearray(b"ab") and ip.user_ns["first"] == 1


def test_pickle_needs_both_sides(ip: InteractiveShell, exec_server: ServerProcess,
                                 classic_server: ServerProcess) -> None:
    session = connect(ip, "s", exec_server)  # this server does not allow pickle
    ip.user_ns["p"] = Point(1)
    with pytest.raises(UsageError, match="not plain data"):
        ip.run_line_magic("rpyc_push", "s p")
    ip.run_line_magic("config", "RPyCPolicy.allow_pickle = True")
    assert session.conn.policy.allow_pickle  # applied live to the open connection
    with pytest.raises(UsageError, match="allow_pickle on both sides"):
        ip.run_line_magic("rpyc_push", "s p --pickle")
    session.execute("import fractions\nf = fractions.Fraction(1, 3)")
    with pytest.raises(UsageError, match="not plain data"):
        ip.run_line_magic("rpyc_pull", "s f --pickle")
    # a classic server allows pickle: now both sides agree
    classic = connect(ip, "c", classic_server, "--classic")
    assert classic.pickle_allowed
    classic.execute("import fractions\nf = fractions.Fraction(1, 3)")
    with capture_output():
        ip.run_line_magic("rpyc_pull", "c f --pickle")
    from fractions import Fraction

    assert ip.user_ns["f"] == Fraction(1, 3)
    ip.run_line_magic("config", "RPyCPolicy.allow_pickle = False")
    assert not classic.conn.policy.allow_pickle and not classic.pickle_allowed


def test_size_guards(ip: InteractiveShell, exec_server: ServerProcess) -> None:
    session = connect(ip, "s", exec_server)
    ip.run_line_magic("config", "RPyCPolicy.max_push_bytes = 1000")
    ip.run_line_magic("config", "RPyCPolicy.max_pull_bytes = 1000")
    ip.user_ns["big"] = "x" * 5000
    with pytest.raises(UsageError, match="size guard"):
        ip.run_line_magic("rpyc_push", "s big")
    session.execute("huge = list(range(10_000))")
    with pytest.raises(UsageError, match="size guard"):
        ip.run_line_magic("rpyc_pull", "s huge")
    with pytest.raises(UsageError, match="not defined"):
        ip.run_line_magic("rpyc_pull", "s nothing_here")


def test_policy_report_shows_both_directions(ip: InteractiveShell,
                                             exec_server: ServerProcess) -> None:
    connect(ip, "s", exec_server)
    ip.run_line_magic("config", "RPyCPolicy.trust_remote_display = True")
    with capture_output() as captured:
        ip.run_line_magic("rpyc_policy", "s")
    html = captured.outputs[0].data["text/html"]
    for needle in ("the server grants us", "allow_public_attrs", "we grant the server",
                   "RPyCPolicy", "trust_remote_display", "TCP, plaintext (loopback)",
                   "push/pull by pickle"):
        assert needle in html, needle
    text = captured.outputs[0].data["text/plain"]
    assert "trust_remote_display" in text and "True" in text
    # the answers come first, in plain words; the details are collapsed below them
    summary = text.split("In detail:")[0]
    for sentence in ("Not encrypted, on this machine only (loopback).",
                     "The server can reach only the callbacks you hand it",
                     "shown as it is, scripts included (trust_remote_display is on)",
                     "Values come by value without pickle",
                     "You can run cells there, in a worker process of its own."):
        assert sentence in summary, sentence
    assert html.index("rpyc-ipy-policy-summary") < html.index("<details>")
    ip.run_line_magic("config", "RPyCPolicy.trust_remote_display = False")
    with capture_output() as captured:
        ip.run_line_magic("rpyc_policy", "s")
    assert "shown sanitized; nothing it sends runs here" in \
        captured.outputs[0].data["text/plain"]


def test_browse_the_namespace_one_request_per_level(ip: InteractiveShell,
                                                    exec_server: ServerProcess) -> None:
    session = connect(ip, "s", exec_server)
    session.execute("config = {'name': 'run1', 'sizes': [1, 2, 3], 'nested': {'deep': 1}}\n"
                    "import os")
    browser = Browser(session)
    html = render_html(browser, depth=2)
    assert browser.requests == 2
    assert "config" in html and "sizes" in html and "&#x27;run1&#x27;" in html
    nodes = browser.fetch(["config['nested']", "os.path", "missing_name"])
    assert browser.requests == 3
    assert nodes[0].children[0].label == "'deep'" and nodes[1].kind == "module"
    assert nodes[2].error and "not defined" in nodes[2].error
    result, captured = run(ip, "%rpyc_browse --html config")
    assert result.error_in_exec is None and "sizes" in html_of(captured)


def test_browse_a_local_netref(ip: InteractiveShell, exec_server: ServerProcess) -> None:
    session = connect(ip, "s", exec_server)
    session.execute("class Box:\n    def __init__(self): self.items = [1, 2]; self.label = 'b'\n"
                    "box = Box()")
    ip.user_ns["box"] = session.ns.box
    counter = RequestCounter(session.conn)
    result, captured = run(ip, "%rpyc_browse --html --depth 1 box")
    assert result.error_in_exec is None and counter.count == 1
    html = html_of(captured)
    assert "items" in html and "label" in html
    counter.remove()
    with pytest.raises(UsageError, match="not a remote object"):
        ip.user_ns["local"] = 5
        ip.run_line_magic("rpyc_browse", "local")


def test_browse_without_an_engine_goes_through_netrefs(ip: InteractiveShell,
                                                       classic_server: ServerProcess) -> None:
    plain = connect(ip, "p", classic_server)  # a plain service: no engine
    ip.user_ns["mod"] = plain.conn.root.getmodule("os")
    result, captured = run(ip, "%rpyc_browse --html --depth 1 mod")
    assert result.error_in_exec is None
    assert "F_OK" in html_of(captured)


def test_browse_widget_when_ipywidgets_is_installed(ip: InteractiveShell,
                                                    exec_server: ServerProcess) -> None:
    pytest.importorskip("ipywidgets")
    from rpyc_ipy.ipython.browse import widget

    session = connect(ip, "s", exec_server, "--new")  # a namespace of its own
    session.execute("tree = {'a': {'b': 1}}\nbox = [1, 2]")
    names = int(session.execute("len([n for n in globals() if not n.startswith('_')])")
                .data["text/plain"])
    browser = Browser(session)
    root = widget(browser)
    assert browser.requests == 1  # the root only: its type, repr and children
    button = root.children[0].children[0]
    assert button.description == f"▸ namespace of s ({names} names)"
    button.click()
    assert browser.requests == 1  # its children came with it
    rows = {row.children[0].children[0].description: row for row in root.children[1].children
            if isinstance(row, type(root))}
    tree = rows["▸ tree"]
    # each node says what it is and how it looks, before it is opened
    assert tree.children[0].children[1].value == (
        '<b></b> <span style="opacity:.6">dict</span> = <code>{&#x27;a&#x27;: {&#x27;b&#x27;: '
        "1}}</code>")
    tree.children[0].children[0].click()
    assert browser.requests == 2 and len(tree.children[1].children) == 1
    netref_root = widget(Browser(session, session.ns.box), title="box")
    box_button, box_info = netref_root.children[0].children
    assert box_button.description == "▸ box" and "list" in box_info.value
    assert "[1, 2]" in box_info.value


def test_browse_shows_text_in_a_terminal(ip: InteractiveShell, exec_server: ServerProcess) -> None:
    session = connect(ip, "s", exec_server)
    session.execute("config = {'name': 'run1', 'sizes': [1, 2, 3]}")
    view = TreeView(Browser(session), "config", depth=2)
    text = repr(view)  # what a terminal's display() prints: the tree, not an HTML object
    assert "<IPython" not in text and "<details" not in text
    lines = text.splitlines()
    assert lines[0].startswith("config (dict)")
    assert any(line.startswith("  'sizes'") and "[1, 2, 3]" in line for line in lines)
    assert "sizes" in view._repr_html_()  # the same fetch, as HTML in a notebook
    result, captured = run(ip, "%rpyc_browse --html config")
    assert result.error_in_exec is None
    assert "'name'" in captured.outputs[0].data["text/plain"]


def test_browse_looks_in_the_session_first(ip: InteractiveShell,
                                           exec_server: ServerProcess) -> None:
    """A name both here and there is the remote one; a local netref is used when the
    session has no such name; -l asks for the local one."""
    session = connect(ip, "s", exec_server, "--new")
    session.execute("b = {'remote_key': 1}\ndata = {'inner_key': 2}\nshadow = {'there': 3}")
    ip.user_ns.update(b=5, only_here=3, cols=session.ns.data, shadow=session.ns.data)
    result, captured = run(ip, "%rpyc_browse --html b")
    assert result.error_in_exec is None and "remote_key" in html_of(captured)
    with pytest.raises(UsageError, match="'b' is a local int, not a remote object"):
        ip.run_line_magic("rpyc_browse", "-l b")
    # not in the session: the local netref
    counter = RequestCounter(session.conn)
    result, captured = run(ip, "%rpyc_browse --html --depth 1 cols")
    assert result.error_in_exec is None and "inner_key" in html_of(captured)
    assert counter.count == 2  # the name asked there once, then the netref browsed
    counter.remove()
    with pytest.raises(UsageError, match="session 's' has no such name"):
        ip.run_line_magic("rpyc_browse", "only_here")
    # both: the session's, unless -l
    result, captured = run(ip, "%rpyc_browse --html shadow")
    assert "there" in html_of(captured) and "inner_key" not in html_of(captured)
    result, captured = run(ip, "%rpyc_browse --html -l shadow")
    assert "inner_key" in html_of(captured) and "there" not in html_of(captured)
    with pytest.raises(UsageError, match="-l: no local variable"):
        ip.run_line_magic("rpyc_browse", "-l nothing_here")


def test_every_node_shows_its_type_and_repr(ip: InteractiveShell,
                                            exec_server: ServerProcess) -> None:
    session = connect(ip, "s", exec_server, "--new")  # a namespace of its own
    session.execute("config = {'name': 'run1', 'sizes': [1, 2, 3]}")
    names = int(session.execute("len([n for n in globals() if not n.startswith('_')])")
                .data["text/plain"])
    text = repr(TreeView(Browser(session), depth=2))
    lines = text.splitlines()
    assert lines[0] == f"namespace of s ({names} names)"
    assert any(line.startswith("  config (dict) = {'name': 'run1'") for line in lines)
    assert any(line.startswith("    'sizes' (list) = [1, 2, 3]") for line in lines)
    view = TreeView(Browser(session, session.ns.config), depth=1, title="cfg")
    assert repr(view).splitlines()[0] == "cfg (dict) = {'name': 'run1', 'sizes': [1, 2, 3]}"
    assert "<b>cfg</b>" in view._repr_html_()
