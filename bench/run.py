"""Run every benchmark, each beside rpyc 6.0.2 (and Pyro5, and the raw floors) in the same
run, and write ONE Markdown report: ``make bench`` (``make bench-quick``: ``--quick``).

The report (default ``build/bench-report.md``, printed at the end too) has the machine,
every table of the benchmark issue with ratios and targets, and each script's own
output. The machines are shared and noisy: compare ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from report import load_results, machine_info, render  # noqa: E402

#: scripts whose figures go into the report's tables (each takes --quick and --json)
REPORTED = ["bench_core.py", "bench_tls.py", "bench_connections.py", "bench_load.py",
            "bench_kernel_idle.py"]
#: further comparisons with rpyc, whose printed output goes into the report as it is
PRINTED = ["bench_codecs.py", "bench_notebook.py", "bench_runtime.py", "bench_flood.py",
           "bench_files.py", "bench_data.py"]
#: arguments for a printed script: 256 MiB uploads keep a full run within a quarter hour
PRINTED_ARGS = {"bench_files.py": ["--size-mib", "256"]}


def run_script(args: list[str]) -> tuple[int, str]:
    """Run one script, echoing its output as it comes; returns (exit code, output)."""
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    return proc.wait(), "".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="short durations, the report's tables only (a few minutes)")
    parser.add_argument("--out", default=os.path.join(ROOT, "build", "bench-report.md"),
                        help="where to write the report (default build/bench-report.md)")
    parser.add_argument("--results", default=os.path.join(ROOT, "build", "bench"),
                        help="where the scripts' figures and output go (default build/bench)")
    parser.add_argument("--render-only", action="store_true",
                        help="run nothing: write the report again from --results")
    options = parser.parse_args()
    os.makedirs(options.results, exist_ok=True)
    state_path = os.path.join(options.results, "run.json")
    paths = [os.path.join(options.results, script.replace(".py", ".json"))
             for script in REPORTED]
    if options.render_only:
        with open(state_path, encoding="utf-8") as source:
            state = json.load(source)
    else:
        state = run_all(options.quick, paths)
        with open(state_path, "w", encoding="utf-8") as out:
            json.dump(state, out, indent=1)
    values, notes = load_results(paths)
    if state["failed"]:
        notes.append("These scripts failed (their figures are missing or partial; see their "
                     "output below): " + ", ".join(state["failed"]))
    text = render(values, state["start"], state["end"], notes, quick=state["quick"],
                  outputs=state["outputs"])
    os.makedirs(os.path.dirname(os.path.abspath(options.out)), exist_ok=True)
    with open(options.out, "w", encoding="utf-8") as out:
        out.write(text)
    print("\n" + text)
    print(f"report written to {options.out}")
    return 1 if state["failed"] else 0


def run_all(quick: bool, paths: list[str]) -> dict[str, Any]:
    """Run the scripts (their figures to ``paths``); the machine before and after, the
    scripts' output and which failed."""
    start = machine_info()
    outputs: dict[str, str] = {}
    failed: list[str] = []
    for script, path in zip(REPORTED, paths, strict=True):
        if os.path.exists(path):
            os.remove(path)  # a failed script must not leave an older run's figures
        args = [os.path.join(HERE, script), "--json", path] + (["--quick"] if quick else [])
        print(f"\n=== {script} ===", flush=True)
        code, outputs[script] = run_script(args)
        if code:
            failed.append(script)
    for script in [] if quick else PRINTED:  # full runs only
        print(f"\n=== {script} ===", flush=True)
        code, outputs[script] = run_script([os.path.join(HERE, script),
                                            *PRINTED_ARGS.get(script, [])])
        if code:
            failed.append(script)
    return {"start": start, "end": machine_info(), "outputs": outputs, "failed": failed,
            "quick": quick}


if __name__ == "__main__":
    sys.exit(main())
