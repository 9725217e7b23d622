"""The notebook experience in round trips and milliseconds, rpyc_ipy beside rpyc 6.0.2.

Run:  .venv/bin/python bench/bench_notebook.py [--repeat 200]

Both servers run in subprocesses on 127.0.0.1 (port 0): rpyc_ipy's
ExecutionService (loopback demo mode) and rpyc 6.0.2's classic SlaveService.
One real IPython InteractiveShell with ``%load_ext rpyc_ipy`` drives both, so
IPython's own machinery is what touches the rpyc netrefs.

1. Requests to display a netref at the prompt (an object with ``_repr_html_``),
   through the shell's display formatter, as the ``Out[]`` display hook does.
2. Requests for TAB on a chained attribute (``sess.ns.os.path.jo`` and
   ``conn.modules.os.path.jo``): the first TAB and the next one.
3. The cost of ``%%remote print(1)`` over a bare round trip (ping), medians over
   ``--repeat`` runs; rpyc's classic ``conn.execute("print(1)")`` (which
   captures nothing) for reference.

Requests are counted by wrapping each connection's request method (releases of
netrefs are not counted on either side). This is a benchmark: it prints
medians and ratios and asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time
from collections.abc import Callable
from typing import Any

from _common import notebook_server, rpyc_classic_server, server_process
from IPython.core.completer import provisionalcompleter
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

OURS_SERVER = notebook_server()
RPYC_SERVER = rpyc_classic_server()
THING = ("class Thing:\n    def _repr_html_(self):\n        return '<b>thing</b>'\n"
         "    def __repr__(self):\n        return 'Thing()'\nthing = Thing()\nimport os\n")
DEL = 15  # HANDLE_DEL, the same id in both libraries


class Counter:
    """Counts the requests a connection sends, by wrapping its request method."""

    def __init__(self, conn: Any, method: str) -> None:
        self.count = 0
        original = getattr(conn, method)

        def counting(handler: int, *args: Any) -> Any:
            if handler != DEL:
                self.count += 1
            return original(handler, *args)

        setattr(conn, method, counting)

    def measure(self, action: Callable[[], object]) -> int:
        before = self.count
        action()
        return self.count - before


def median_seconds(action: Callable[[], object], repeat: int) -> float:
    for _ in range(min(20, repeat)):  # warm up
        action()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"


def completion_texts(shell: InteractiveShell, text: str) -> list[str]:
    with provisionalcompleter():
        return [c.text for c in shell.Completer.completions(text, len(text))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()

    import rpyc

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "rpyc_ipy")
    with server_process(OURS_SERVER) as our_server, \
            server_process(RPYC_SERVER) as their_server:
        ours_port, rpyc_port = our_server.port, their_server.port
        with capture_output():
            shell.run_line_magic("rpyc_connect", f"sess=127.0.0.1:{ours_port}")
        sess = shell.user_ns["sess"]
        sess.execute(THING)
        conn = rpyc.classic.connect("127.0.0.1", rpyc_port)
        conn.execute(THING)
        shell.user_ns["conn"] = conn
        ours = Counter(sess.conn, "async_request")
        theirs = Counter(conn, "_async_request")

        # 1. display at the prompt
        ours_obj = sess.ns.thing
        theirs_obj = conn.namespace["thing"]
        assert shell.display_formatter is not None
        fmt = shell.display_formatter.format
        shell.user_ns.update(ours_obj=ours_obj, theirs_obj=theirs_obj)

        def prompt(name: str) -> None:
            with capture_output():
                shell.run_cell(name)  # Out[]: the display hook, history, _ and __

        rows = [("display a netref, first time", ours.measure(lambda: fmt(ours_obj)),
                 theirs.measure(lambda: fmt(theirs_obj))),
                ("display a netref, again", ours.measure(lambda: fmt(ours_obj)),
                 theirs.measure(lambda: fmt(theirs_obj))),
                ("a netref as a cell's Out[]", ours.measure(lambda: prompt("ours_obj")),
                 theirs.measure(lambda: prompt("theirs_obj")))]
        shell.run_line_magic("config", "RPyCPolicy.trust_remote_display = True")
        rows.append(("display, remote _repr_html_ trusted", ours.measure(lambda: fmt(ours_obj)),
                     theirs.measure(lambda: fmt(theirs_obj))))
        shell.run_line_magic("config", "RPyCPolicy.trust_remote_display = False")
        shown = "<b>thing</b>" in fmt(theirs_obj)[0].get("text/html", "")
        # 2. TAB on a chained attribute
        found: dict[str, list[str]] = {}
        tabs: dict[str, tuple[int, int]] = {}
        for label, counter, text in (("ours", ours, "sess.ns.os.path.jo"),
                                     ("theirs", theirs, "conn.modules.os.path.jo")):
            def tab(label: str = label, text: str = text) -> None:
                found[label] = completion_texts(shell, text)

            tabs[label] = (counter.measure(tab), counter.measure(tab))
        rows.append(("TAB on a.b.c.d.jo, first TAB", tabs["ours"][0], tabs["theirs"][0]))
        rows.append(("TAB on a.b.c.d.jo, next TAB", tabs["ours"][1], tabs["theirs"][1]))

        import IPython

        print(f"Round trips (requests), IPython {IPython.__version__}, rpyc {rpyc.__version__}")
        width = max(len(r[0]) for r in rows)
        print(f"{'case':<{width}}  {'rpyc_ipy':>8}  {'rpyc':>8}  fewer by")
        for name, a, b in rows:
            ratio = f"{b / a:.1f}x" if a else ("-" if not b else "all")
            print(f"{name:<{width}}  {a:>8}  {b:>8}  {ratio:>8}")
        print(f"  (rpyc shows the remote _repr_html_ at the prompt: {shown}; rpyc_ipy shows "
              "a bounded repr unless RPyCPolicy.trust_remote_display)")
        print(f"  (completions: rpyc_ipy {found['ours']}, rpyc+IPython {found['theirs'][:5]})")

        # 3. %%remote print(1) over a bare round trip
        def magic() -> None:
            with contextlib.redirect_stdout(io.StringIO()):
                shell.run_cell_magic("remote", "", "print(1)")

        timings = [
            ("rpyc_ipy: ping (bare round trip)", median_seconds(sess.ping, args.repeat)),
            ("rpyc_ipy: session.execute('print(1)')",
             median_seconds(lambda: sess.execute("print(1)"), args.repeat)),
            ("rpyc_ipy: %%remote print(1)", median_seconds(magic, args.repeat)),
            ("rpyc: ping (bare round trip)", median_seconds(conn.ping, args.repeat)),
            ("rpyc: conn.execute('print(1)'), nothing captured",
             median_seconds(lambda: conn.execute("print(1)"), args.repeat)),
        ]
        print(f"\nTime, medians of {args.repeat} runs, loopback TCP")
        width = max(len(t[0]) for t in timings)
        base = {"rpyc_ipy": timings[0][1], "rpyc": timings[3][1]}
        print(f"{'case':<{width}}  {'median':>10}  {'vs ping':>8}  {'added':>10}")
        for name, seconds in timings:
            ping = base[name.split(":")[0]]
            print(f"{name:<{width}}  {ms(seconds):>10}  {seconds / ping:>7.1f}x  "
                  f"{ms(seconds - ping):>10}")
        conn.close()
    shell.run_line_magic("unload_ext", "rpyc_ipy")


if __name__ == "__main__":
    main()
