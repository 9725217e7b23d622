"""The benchmark report (bench/report.py) assembled from canned figures: every section and
every row of the benchmark issue is there, ratios and verdicts follow the figures, and a
missing figure shows as "n/a". Nothing here measures or asserts on time."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
KiB, MiB = 1024, 1 << 20


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}_under_test", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


report = _load("report")
common = _load("_common")


def canned() -> dict[str, float]:
    """A full set of figures, in the units the scripts write."""
    values: dict[str, float] = {}
    for key, (rpyc, pyro5, ours, floor) in {
        "add1": (224e-6, 66e-6, 38e-6, 38e-6),
        "echo1": (15e6, 1744e6, 652e6, 2356e6),
        "echo16": (23e6, 613e6, 634e6, 2140e6),
        "cpu.client": (40e-6, 20e-6, 28e-6, 25e-6),
        "cpu.server": (40e-6, 20e-6, 30e-6, 20e-6),
    }.items():
        values.update({f"{key}.rpyc": rpyc, f"{key}.pyro5": pyro5, f"{key}.ours": ours,
                       f"{key}.floor": floor})
    values.update({
        "add1_cached.ours": 37e-6, "add1_cached.rpyc": 75e-6, "add1.ours_nospin": 70e-6,
        "callback.ours": 80e-6, "callback.rpyc": 174e-6,
        "getpid.ours": 119e-6, "getpid.rpyc": 204e-6,
        "echo1.rpyc_tuned": 1068e6, "echo16.rpyc_tuned": 300e6,
        "tls_rt.ours": 81e-6, "tls_rt.plain": 36e-6, "tls_rt.rpyc": 82e-6,
        "tls_rt.floor": 46e-6, "tls_rt.srp": 185e-6,
        "tls_echo16.ours": 367e6, "tls_echo16.rpyc": 71e6, "tls_echo16.floor": 901e6,
        "tls_echo16.srp": 79e6, "transport16.TLS-SRP": 180e6, "transport16.plain TCP": 2900e6,
        "echo128_client.ours": 0, "echo128_client.rpyc": 272 * MiB,
        "echo128_client.pyro5": 256 * MiB, "echo128_client.floor": 0,
        "echo128_server.ours": 0, "echo128_server.rpyc": 527 * MiB,
        "echo128_server.pyro5": 256 * MiB, "echo128_server.floor": 0,
        "idle_plain.ours": 15 * KiB, "idle_plain.rpyc": 24 * KiB,
        "idle_plain.floor": 0.2 * KiB, "idle_tls.floor": 15 * KiB,
        "idle_tls.ours": 17 * KiB, "idle_tls.rpyc": 95 * KiB,
        "idle_plain.ours_held": 1000, "idle_plain.rpyc_held": 1000,
        "idle_tls.ours_held": 1000, "idle_tls.rpyc_held": 1000,
        "many.held": 10_000, "many.wanted": 10_000, "many.rss_before": 20 * MiB,
        "many.rss_after": 150 * MiB, "many.rt_fresh": 60e-6, "many.rt_before": 55e-6,
        "many.idle_cpu_s": 0.0, "many.idle_s": 10.0, "many.open_s": 12.0,
        "load.clients": 64, "load.seconds": 30,
        "load_throughput.ours": 30_000, "load_throughput.rpyc": 14_800,
        "load_throughput.floor": 40_800,
        "load_p50.ours": 900, "load_p50.rpyc": 3000, "load_p50.floor": 800,
        "load_p99.ours": 9000, "load_p99.rpyc": 15_900, "load_p99.floor": 6800,
        "load_errors.ours": 0, "load_errors.rpyc": 0, "load_errors.floor": 0,
        "load_server_cpu_us.ours": 30, "load_server_cpu_us.rpyc": 35,
        "load_server_cpu_us.floor": 12, "load_client_cpu_us.ours": 40,
        "load_client_cpu_us.rpyc": 55, "load_client_cpu_us.floor": 13,
        "cpu.client.ours_nospin": 38e-6, "cpu.server.ours_nospin": 25e-6,
        "kernel_idle.seconds": 60, "kernel_idle.ours": 0.02, "kernel_idle.rpyc": 0.01,
        "kernel_idle.floor": 0.01, "kernel_idle.ours_server": 0.0,
        "kernel_idle.rpyc_server": 0.0,
        "spin.max_window": 200e-6, "spin.solo": 0.05,
        "reconcile.raw_prealloc": 1100e6, "reconcile.raw_naive": 350e6,
        "reconcile.raw_one_way": 2900e6,
        "reconcile.ours_same": 634e6, "reconcile.ours_fresh": 300e6,
        "reconcile.ours_zeros": 600e6, "reconcile.rpyc_tuned_zeros": 80e6,
        "reconcile.fresh_copy_s": 0.01,
    })
    return values


MACHINE = {"CPU": "Test CPU, 2 cores", "load average": "0.10 0.20 0.30", "Python": "3.11",
           "OS": "Linux", "rpyc_ipy": "0.1.0", "rpyc": "6.0.2", "Pyro5": "5.17"}
SECTIONS = ["## Machine", "## The issue's table", "## 16 MiB echo: 30% or 59% of raw?",
            "## CPU honesty: busy polling", "## Connected idle notebook kernel",
            "## Idle connections", "## Load", "## Notes"]


def issue_row(text: str, label: str) -> list[str]:
    """The cells of the issue table's row that starts with ``label``."""
    rows = [line for line in text.splitlines() if line.startswith(f"| {label} |")]
    assert len(rows) == 1, f"{label!r}: {len(rows)} rows"
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def test_every_section_and_issue_row_is_in_the_report() -> None:
    text = report.render(canned(), MACHINE, MACHINE, ["a note from a script"])
    for heading in SECTIONS:
        assert heading in text
    for measure in report.issue_measures():
        cells = issue_row(text, measure.label)
        assert len(cells) == 10
        assert "n/a" not in cells
    for what in ("Test CPU, 2 cores", "6.0.2", "5.17", "load average at start",
                 "load average at end", "a note from a script"):
        assert what in text
    assert "<details>" not in text  # no script output was given


def test_ratios_and_verdicts_follow_the_figures() -> None:
    text = report.render(canned(), MACHINE, MACHINE)
    add1 = issue_row(text, "`conn.root.add1(i)`")
    assert add1[1:5] == ["224 us", "66 us", "38 us", "38 us (raw TCP ping-pong)"]
    assert add1[5:8] == ["5.89x", "1.74x", "100%"]  # time: theirs / ours; floor share
    echo = issue_row(text, "16 MiB echo")
    assert echo[1] == "23 MB/s (zlib off + NODELAY: 300 MB/s)"
    assert echo[6] == "1.03x" and echo[7] == "30%"  # rate: ours / theirs
    assert echo[-2:] == [">= 60% of the floor", "**no**"]  # 30% of the floor
    assert issue_row(text, "1 MiB echo")[-2:] == [">= Pyro5", "**no**"]  # 652 < 1,744
    callback = issue_row(text, "callback `m(cb, i)` (server calls the client back)")
    assert callback[-2:] == ["<= 1.5x our add1", "**no**"]  # 80 us = 2.1x 38 us
    assert issue_row(text, "TLS-SRP 16 MiB echo")[-2:] == [">= 150 MB/s", "**no**"]  # 79
    assert issue_row(text, "idle connection, server memory (plain)")[-1] == "yes"
    assert issue_row(text, "idle connection, server memory (TLS)")[-1] == "**no**"
    assert issue_row(text, "64 clients, small calls: throughput")[-1] == "yes"
    assert issue_row(text, "64 clients, small calls: p99 latency")[-1] == "**no**"
    assert issue_row(text, "64 clients, small calls: errors")[-1] == "yes"
    assert issue_row(text, "10,000 idle connections on one ThreadedServer: server RSS"
                     )[-1] == "yes"
    assert issue_row(text, "connected idle notebook kernel: CPU over the idle window"
                     )[-1] == "yes"
    assert "**58%** of a raw echo" in text and "**22%** of a raw one-way transfer" in text


@pytest.mark.parametrize("missing, label", [
    ("many.held", "10,000 idle connections on one ThreadedServer: server RSS"),
    ("kernel_idle.ours", "connected idle notebook kernel: CPU over the idle window"),
])
def test_a_missing_figure_shows_as_not_available(missing: str, label: str) -> None:
    values = canned()
    del values[missing]
    if missing == "kernel_idle.ours":
        assert issue_row(report.render(values, MACHINE, MACHINE), label)[3] == "-"
    assert issue_row(report.render(values, MACHINE, MACHINE), label)[-1] == "n/a"


def test_fewer_idle_connections_than_wanted_is_not_met() -> None:
    values = canned()
    values["many.held"] = 4_000
    row = issue_row(report.render(values, MACHINE, MACHINE),
                    "10,000 idle connections on one ThreadedServer: server RSS")
    assert row[-1] == "**no**"


def test_the_scripts_json_files_merge_into_one_report(tmp_path: Path) -> None:
    first, second = tmp_path / "core.json", tmp_path / "load.json"
    common.write_json(str(first), {"add1.ours": 40e-6, "add1.rpyc": 200e-6}, ["core note"])
    common.write_json(str(second), {"load_throughput.ours": 20_000.0}, ["load note"])
    values, notes = report.load_results([str(first), str(tmp_path / "absent.json"),
                                         str(second)])
    assert values == {"add1.ours": 40e-6, "add1.rpyc": 200e-6, "load_throughput.ours": 20_000}
    assert notes == ["core note", "load note"]
    text = report.render(values, MACHINE, MACHINE, notes, quick=True,
                         outputs={"bench_core.py": "printed lines"})
    assert "**Quick run**" in text
    assert "<summary>bench_core.py</summary>" in text and "printed lines" in text
    assert issue_row(text, "`conn.root.add1(i)`")[1:4] == ["200 us", "-", "40 us"]


def test_run_py_writes_the_report_again_from_saved_results(tmp_path: Path) -> None:
    """``bench/run.py --render-only``: the report from a run's saved figures and output."""
    import json
    import subprocess

    results = tmp_path / "results"
    results.mkdir()
    common.write_json(str(results / "bench_core.json"), canned(), ["saved note"])
    (results / "run.json").write_text(json.dumps({
        "start": MACHINE, "end": MACHINE, "outputs": {"bench_core.py": "saved output"},
        "failed": ["bench_connections.py"], "quick": False}))
    out = tmp_path / "report.md"
    done = subprocess.run([sys.executable, str(BENCH / "run.py"), "--render-only",
                           "--results", str(results), "--out", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr  # a script of the saved run had failed
    text = out.read_text()
    for heading in SECTIONS:
        assert heading in text
    assert "saved note" in text and "saved output" in text
    assert "These scripts failed" in text and "bench_connections.py" in text
    assert f"report written to {out}" in done.stdout
