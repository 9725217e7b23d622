"""Run every benchmark, each beside rpyc 6.0.2 in the same run: ``make bench``.

Pass ``--quick`` for a short smoke run. Each script prints medians and ratios;
the machines are shared and noisy, so compare ratios, not absolute times.
"""

from __future__ import annotations

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = ["bench_codecs.py", "bench_core.py", "bench_tls.py", "bench_notebook.py",
           "bench_load.py", "bench_runtime.py", "bench_flood.py", "bench_files.py",
           "bench_data.py"]


def main() -> int:
    extra = sys.argv[1:]
    failed = 0
    for script in SCRIPTS:
        path = os.path.join(HERE, script)
        if not os.path.exists(path):
            continue
        print(f"\n=== {script} ===", flush=True)
        args = [sys.executable, path]
        if "--quick" in extra and script in ("bench_core.py", "bench_runtime.py", "bench_data.py"):
            args.append("--quick")
        failed |= subprocess.call(args) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
