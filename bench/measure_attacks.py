"""Measure what issue 13 asks of the notebook side, once (not part of ``make bench``):

* TAB and ``?`` against a server object that sleeps 25 s in ``__dir__``/``__getattr__``
  (default ``completion_timeout`` 2 s, ``display_timeout`` 5 s);
* the notebook's peak RSS while a server floods a ``%%remote`` cell with 1 GiB of
  output (``python bench/measure_attacks.py [tab|flood] [MiB] [escapes|plain]``).

It prints figures and asserts nothing.
"""

from __future__ import annotations

import contextlib
import io
import sys
import time
from pathlib import Path
from typing import Any

from _common import server_process

SLEEP = 25.0
#: what the server prints: escapes and controls (sanitized away), or plain text (all shown)
KINDS = {"escapes": "\x1b]0;t\x07\x01ab\x1b[2J", "plain": "0123456789abcdef"}
EXEC_SERVER = """
import rpyc_ipy
from rpyc_ipy.remote import ExecutionService
service = ExecutionService.configured(allow_loopback_plaintext=True)
server = rpyc_ipy.ThreadedServer(service, hostname="127.0.0.1", port=0,
                                 channel_handler=service.channel_handler())
print(server.port, flush=True)
server.start()
"""


def _shell() -> Any:
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "rpyc_ipy")
    return ip


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(key)


def tab() -> None:
    from IPython.core.completer import provisionalcompleter

    import rpyc_ipy

    class Slow:
        def __dir__(self) -> list[str]:
            time.sleep(SLEEP)
            return ["name"]

        def __getattr__(self, name: str) -> Any:
            time.sleep(SLEEP)
            raise AttributeError(name)

    class SlowService(rpyc_ipy.Service):
        def on_connect(self, conn: Any) -> None:
            super().on_connect(conn)
            conn.update_policy(allow_public_attrs=True)

        def exposed_slow(self) -> Slow:
            return Slow()

    server = rpyc_ipy.ThreadedServer(SlowService, hostname="127.0.0.1", port=0)
    server.start_in_background()
    ip = _shell()
    with contextlib.redirect_stdout(io.StringIO()):
        ip.run_line_magic("rpyc_connect", f"s=127.0.0.1:{server.port}")
    ip.user_ns["slow"] = ip.user_ns["s"].conn.root.slow()
    for text in ("slow.na", "slow.", "slow(", "slow[0].", "slow.attr.x"):
        started = time.perf_counter()
        with provisionalcompleter():
            found = [c.text for c in ip.Completer.completions(text, len(text))]
        print(f"TAB {text!r:14} {time.perf_counter() - started:6.2f} s  "
              f"({len(found)} completions)", flush=True)
    for name in ("slow", "slow.attr"):
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            ip.run_cell(f"{name}?")
        print(f"?   {name!r:14} {time.perf_counter() - started:6.2f} s", flush=True)


def flood(mib: int, kind: str) -> None:
    with server_process(EXEC_SERVER) as server:
        ip = _shell()
        with contextlib.redirect_stdout(io.StringIO()):
            ip.run_line_magic("rpyc_connect", f"f=127.0.0.1:{server.port}")
        ip.run_cell("%%remote\n1")  # warm up: worker, channel, first cell
        sink = _Sink()
        code = (f"import sys\nchunk = ({KINDS[kind]!r} * 65536)[:1 << 20]\n"
                f"for _ in range({mib}):\n    sys.stdout.write(chunk)\n")
        Path("/proc/self/clear_refs").write_text("5")
        before = _status("VmHWM")
        started = time.perf_counter()
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            ip.run_cell("%%remote\n" + code)
        took = time.perf_counter() - started
        grown = (_status("VmHWM") - before) / 1024
        backlog = ip.magics_manager.registry["RPyCMagics"].backlog
        print(f"flood {mib} MiB of {kind} in {took:.1f} s ({mib / took:.0f} MiB/s): "
              f"notebook peak RSS +{grown:.0f} MiB; "
              f"shown {sink.chars / (1 << 20):.0f} Mi characters, "
              f"dropped {backlog.dropped / (1 << 20):.0f} Mi, held at most "
              f"{backlog.peak / (1 << 20):.1f} Mi (bound {backlog.limit / (1 << 20):.0f} Mi); "
              f"notes: {sink.notes}", flush=True)
        ip.run_line_magic("rpyc_disconnect", "f --end")


class _Sink(io.TextIOBase):
    """A screen that shows nothing and counts."""

    def __init__(self) -> None:
        self.chars = 0
        self.notes = 0

    def write(self, text: str) -> int:
        self.chars += len(text)
        self.notes += text.count("of output dropped here") + text.count("not shown")
        return len(text)


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "tab"
    if what == "tab":
        tab()
    else:
        flood(int(sys.argv[2]) if len(sys.argv) > 2 else 1024,
              sys.argv[3] if len(sys.argv) > 3 else "escapes")
