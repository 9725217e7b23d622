"""CPU honesty: what a connected but idle notebook kernel costs, and what busy polling does.

Two real kernels are started with jupyter_client (``python3``, this interpreter): one
loads the extension and connects with ``%rpyc_connect`` to a local rpyc_ipy server
(``ExecutionService``, loopback demo mode); the other is a plain kernel, the floor.
Over the same ``--seconds`` (60 by default) the CPU time of both kernel processes and
of the server is read from ``/proc/<pid>/stat``. Then the same is done for an rpyc
6.0.2 classic connection held in a kernel (``rpyc.classic.connect``), the peer.

Busy polling (rpyc_ipy/transports/spin.py) is described from its own constants; its
cost per call is measured by bench_core.py (``busy_poll_window`` on and off).

    .venv/bin/python bench/bench_kernel_idle.py [--seconds 60] [--quick] [--json PATH]

A benchmark, not a test: it prints figures and asserts nothing on time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _common import (  # noqa: E402
    ROOT,
    cpu_seconds,
    notebook_server,
    rpyc_classic_server,
    server_process,
    write_json,
)

sys.path.insert(0, ROOT)

WAIT = 120.0
OURS_SERVER = notebook_server()
RPYC_SERVER = rpyc_classic_server()


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its children (a server and its session workers)."""
    total = cpu_seconds(pid)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rpartition(")")[2].split()[1])
                if parent == pid:
                    total += cpu_seconds(int(entry))
            except (OSError, ValueError):
                continue  # gone meanwhile
    return total


@contextlib.contextmanager
def kernel(cells: list[str]) -> Iterator[int]:
    """A real kernel that has run ``cells`` (each must succeed); yields its pid."""
    from jupyter_client.manager import start_new_kernel
    from jupyter_client.provisioning import LocalProvisioner

    env = dict(os.environ, PYTHONPATH=ROOT)
    km, kc = start_new_kernel(startup_timeout=WAIT, kernel_name="python3", env=env,
                              stderr=subprocess.DEVNULL)
    try:
        for cell in cells:
            outputs: list[str] = []

            def collect(msg: dict[str, Any], outputs: list[str] = outputs) -> None:
                content = msg["content"]
                outputs.append(str(content.get("text") or content.get("evalue") or ""))

            reply = kc.execute_interactive(cell, timeout=WAIT, output_hook=collect)
            if reply["content"]["status"] != "ok":
                raise RuntimeError(f"the kernel failed {cell!r}: {' '.join(outputs)[-500:]}")
        if not isinstance(km.provisioner, LocalProvisioner) or km.provisioner.pid is None:
            raise RuntimeError("no kernel pid: the kernel is not a local process")
        yield km.provisioner.pid
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="idle seconds measured")
    parser.add_argument("--quick", action="store_true", help="10 idle seconds (smoke run)")
    parser.add_argument("--json", help="also write the figures to this file for bench/run.py")
    options = parser.parse_args()
    seconds = 10.0 if options.quick else options.seconds

    from rpyc_ipy.transports import spin

    values: dict[str, float] = {"kernel_idle.seconds": seconds}
    with server_process(OURS_SERVER) as ours, server_process(RPYC_SERVER) as theirs, \
            kernel(["%load_ext rpyc_ipy", f"%rpyc_connect sess=127.0.0.1:{ours.port}",
                    "assert sess.execute('40 + 2') is not None"]) as ours_pid, \
            kernel(["import rpyc", f"conn = rpyc.classic.connect('127.0.0.1', {theirs.port})",
                    "assert conn.eval('40 + 2') == 42"]) as rpyc_pid, \
            kernel(["x = 1"]) as plain_pid:
        time.sleep(2.0)  # let the start-up settle (imports, the first replies)
        pids = {"ours": ours_pid, "rpyc": rpyc_pid, "floor": plain_pid,
                "ours_server": ours.pid, "rpyc_server": theirs.pid}
        before = {name: tree_cpu(pid) for name, pid in pids.items()}
        time.sleep(seconds)
        for name, pid in pids.items():
            values[f"kernel_idle.{name}"] = tree_cpu(pid) - before[name]
    print(f"CPU seconds over {seconds:g} idle seconds (the same window for all; a process "
          "with its children, so the server with its session worker):")
    for name in ("ours", "rpyc", "floor", "ours_server", "rpyc_server"):
        print(f"  {name:<12} {values[f'kernel_idle.{name}']:.2f} s")
    values["spin.max_window"] = spin.DEFAULT_MAX_SPIN
    values["spin.solo"] = spin.SOLO
    print(f"busy polling: up to {spin.DEFAULT_MAX_SPIN * 1e6:.0f} us per read (busy_poll_window;"
          f" 0 turns it off), only while one conversation has been the process's only one "
          f"for {spin.SOLO * 1e3:.0f} ms and the CPUs are not all busy")
    write_json(options.json, values)
    return 0


if __name__ == "__main__":
    sys.exit(main())
