"""The Markdown report of ``make bench``: the machine, then every table of the benchmark
issue with rpyc 6.0.2, Pyro5 (marshal), rpyc_ipy and the floor side by side, ratios,
targets and whether each is met.

The scripts write their figures as JSON (``--json PATH``, see ``_common.write_json``):
a flat mapping of ``measure.peer`` keys to numbers in base units (seconds, bytes per
second, bytes, operations per second; load latencies in microseconds). :func:`render`
turns the merged mapping into Markdown; a missing figure shows as "n/a".
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata

Values = Mapping[str, float]
KiB, MiB = 1 << 10, 1 << 20
PEERS = ("rpyc", "pyro5", "ours", "floor")
#: kinds whose smaller figure is better (times, memory, latencies, CPU)
LOWER_IS_BETTER = {"time", "mem", "lat", "cpu", "count", "seconds"}


def _fmt(kind: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    if kind == "time" or kind == "cpu":
        for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
            if abs(value) >= scale:
                return f"{value / scale:.3g} {unit}"
        return f"{value / 1e-9:.3g} ns"
    if kind == "rate":
        return f"{value / 1e6:,.0f} MB/s"
    if kind == "mem":
        return f"{value / KiB:,.1f} KiB" if value < 10 * MiB else f"{value / MiB:,.0f} MiB"
    if kind == "ops":
        return f"{value:,.0f} ops/s"
    if kind == "lat":
        return f"{value / 1e3:.2f} ms"
    if kind == "seconds":
        return f"{value:.2f} s"
    return f"{value:,.0f}"


@dataclass(frozen=True)
class Measure:
    """One row: ``key.rpyc``, ``key.pyro5``, ``key.ours``, ``key.floor`` in the values."""

    label: str
    key: str
    kind: str
    target: str = "-"
    check: Callable[[Values], bool | None] | None = None
    #: extra figures shown in a peer's cell: peer -> (caption, full key)
    extra: tuple[tuple[str, str, str], ...] = ()
    floor_label: str = ""


def _get(values: Values, key: str) -> float | None:
    value = values.get(key)
    return None if value is None else float(value)


def _at_most(key: str, limit: float) -> Callable[[Values], bool | None]:
    def check(values: Values) -> bool | None:
        ours = _get(values, f"{key}.ours")
        return None if ours is None else ours <= limit
    return check


def _versus_rpyc(key: str, factor: float, higher: bool) -> Callable[[Values], bool | None]:
    """ours >= factor x rpyc (higher) or ours <= rpyc / factor (lower)."""
    def check(values: Values) -> bool | None:
        ours, theirs = _get(values, f"{key}.ours"), _get(values, f"{key}.rpyc")
        if ours is None or theirs is None:
            return None
        return ours >= factor * theirs if higher else ours * factor <= theirs
    return check


def _relative(key: str, other: str, factor: float, higher: bool
              ) -> Callable[[Values], bool | None]:
    """ours >= factor x ``other`` (higher) or ours <= factor x ``other`` (lower), where
    ``other`` is a full key (another peer, the floor or another of our figures)."""
    def check(values: Values) -> bool | None:
        ours, base = _get(values, f"{key}.ours"), _get(values, other)
        if ours is None or base is None:
            return None
        return ours >= factor * base if higher else ours <= factor * base
    return check


def _at_least(key: str, limit: float) -> Callable[[Values], bool | None]:
    def check(values: Values) -> bool | None:
        ours = _get(values, f"{key}.ours")
        return None if ours is None else ours >= limit
    return check


def _many_ok(values: Values) -> bool | None:
    rss, held, wanted = (_get(values, k) for k in ("many.rss_after", "many.held", "many.wanted"))
    fresh = _get(values, "many.rt_fresh")
    if rss is None or held is None or wanted is None:
        return None
    return rss < 200 * MiB and held >= wanted and fresh is not None and fresh > 0


def _kernel_ok(values: Values) -> bool | None:
    ours, seconds = _get(values, "kernel_idle.ours"), _get(values, "kernel_idle.seconds")
    if ours is None or seconds is None:
        return None
    return ours <= 0.01 * seconds


def issue_measures() -> list[Measure]:
    """Every row of the issue's table, in its order, then the CPU rows of part 7."""
    return [
        Measure("`conn.root.add1(i)`", "add1", "time", floor_label="raw TCP ping-pong"),
        Measure("cached method `add1(i)` (one round trip)", "add1_cached", "time",
                floor_label="raw TCP ping-pong"),
        Measure("callback `m(cb, i)` (server calls the client back)", "callback", "time",
                "<= 1.5x our add1", _relative("callback", "add1.ours", 1.5, False),
                extra=(("ours", "our add1 x", "add1.ours"),)),
        Measure("classic `conn.modules.os.getpid()`", "getpid", "time",
                "<= 1.5x our add1", _relative("getpid", "add1.ours", 1.5, False),
                extra=(("ours", "our add1 x", "add1.ours"),)),
        Measure("1 MiB echo", "echo1", "rate", ">= Pyro5",
                _relative("echo1", "echo1.pyro5", 1.0, True),
                extra=(("rpyc", "zlib off + NODELAY", "echo1.rpyc_tuned"),),
                floor_label="raw TCP echo"),
        Measure("16 MiB echo", "echo16", "rate", ">= 60% of the floor",
                _relative("echo16", "echo16.floor", 0.6, True),
                extra=(("rpyc", "zlib off + NODELAY", "echo16.rpyc_tuned"),),
                floor_label="raw TCP echo"),
        Measure("TLS round trip (stdlib ssl)", "tls_rt", "time", "<= 1.3x plain",
                _relative("tls_rt", "tls_rt.plain", 1.3, False),
                extra=(("ours", "plain", "tls_rt.plain"),), floor_label="raw ssl ping-pong"),
        Measure("TLS 16 MiB echo", "tls_echo16", "rate", ">= 60% of the floor",
                _relative("tls_echo16", "tls_echo16.floor", 0.6, True),
                floor_label="raw ssl echo"),
        Measure("TLS-SRP 16 MiB echo", "srp_echo16", "rate", ">= 150 MB/s",
                _at_least("srp_echo16", 150e6), floor_label="TLS-SRP transport, one way"),
        Measure("TLS-SRP cached call", "srp_rt", "time", "<= 2x plain",
                _relative("srp_rt", "tls_rt.plain", 2.0, False),
                floor_label="raw ssl ping-pong"),
        Measure("128 MiB echo: client peak memory beyond the reply", "echo128_client", "mem",
                "<= 16 MiB", _at_most("echo128_client", 16 * MiB), floor_label="raw TCP echo"),
        Measure("128 MiB echo: server peak memory beyond the request", "echo128_server", "mem",
                "<= 16 MiB", _at_most("echo128_server", 16 * MiB), floor_label="raw TCP echo"),
        Measure("idle connection, server memory (plain)", "idle_plain", "mem",
                "<= 16 KiB", _at_most("idle_plain", 16 * KiB),
                floor_label="bare socket server"),
        Measure("idle connection, server memory (TLS)", "idle_tls", "mem",
                "<= 16 KiB", _at_most("idle_tls", 16 * KiB), floor_label="bare ssl server"),
        Measure("10,000 idle connections on one ThreadedServer: server RSS", "many", "mem",
                "< 200 MiB, all held, a fresh client served", _many_ok),
        Measure("64 clients, small calls: throughput", "load_throughput", "ops",
                ">= 2x rpyc", _versus_rpyc("load_throughput", 2.0, True),
                floor_label="threaded raw + marshal"),
        Measure("64 clients, small calls: p99 latency", "load_p99", "lat",
                "<= rpyc / 2", _versus_rpyc("load_p99", 2.0, False),
                floor_label="threaded raw + marshal"),
        Measure("64 clients, small calls: errors", "load_errors", "count", "0",
                _at_most("load_errors", 0)),
        Measure("CPU per call, client (add1)", "cpu.client", "cpu",
                floor_label="raw TCP ping-pong"),
        Measure("CPU per call, server (add1)", "cpu.server", "cpu",
                floor_label="raw TCP ping-pong"),
        Measure("connected idle notebook kernel: CPU over the idle window", "kernel_idle",
                "seconds", "~0 (<= 1% of a CPU)", _kernel_ok, floor_label="plain kernel"),
    ]


def derive(values: Mapping[str, float]) -> dict[str, float]:
    """Keys the tables read that are other names for measured figures."""
    out = dict(values)
    aliases = {"srp_echo16.ours": "tls_echo16.srp", "srp_rt.ours": "tls_rt.srp",
               "srp_rt.floor": "tls_rt.floor", "srp_echo16.floor": "transport16.TLS-SRP",
               "many.ours": "many.rss_after", "add1_cached.floor": "add1.floor",
               "add1_cached.pyro5": "add1.pyro5"}
    for alias, key in aliases.items():
        if key in values and alias not in values:
            out[alias] = values[key]
    return out


def _ratio(kind: str, ours: float | None, other: float | None) -> str:
    """How many times better ours is (> 1: better), whichever way the unit goes."""
    if ours is None or other is None or kind == "count" or ours <= 0 or other <= 0:
        return "-"
    return f"{(other / ours if kind in LOWER_IS_BETTER else ours / other):.2f}x"


def _share(kind: str, ours: float | None, floor: float | None) -> str:
    """rpyc_ipy's speed as a share of the floor's."""
    if ours is None or floor is None or kind == "count" or ours <= 0 or floor <= 0:
        return "-"
    return f"{(floor / ours if kind in LOWER_IS_BETTER else ours / floor):.0%}"


def _cell(measure: Measure, peer: str, values: Values) -> str:
    value = _get(values, f"{measure.key}.{peer}")
    text = _fmt(measure.kind, value) if value is not None else "-"
    for extra_peer, caption, key in measure.extra:
        other = _get(values, key)
        if extra_peer != peer or other is None:
            continue
        if caption.endswith(" x") and value is not None and other > 0:
            text += f" ({value / other:.1f}x our add1)"
        elif not caption.endswith(" x"):
            text += f" ({caption}: {_fmt(measure.kind, other)})"
    if peer == "floor" and value is not None and measure.floor_label:
        text += f" ({measure.floor_label})"
    return text


def _table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def issue_table(values: Values) -> list[str]:
    rows = []
    for m in issue_measures():
        ours = _get(values, f"{m.key}.ours")
        verdict = m.check(values) if m.check else None
        met = "-" if m.check is None else ("n/a" if verdict is None else
                                            ("yes" if verdict else "**no**"))
        rows.append([m.label, *(_cell(m, peer, values) for peer in PEERS),
                     _ratio(m.kind, ours, _get(values, f"{m.key}.rpyc")),
                     _ratio(m.kind, ours, _get(values, f"{m.key}.pyro5")),
                     _share(m.kind, ours, _get(values, f"{m.key}.floor")), m.target, met])
    return _table(["measure", "rpyc 6.0.2", "Pyro5 (marshal)", "rpyc_ipy", "floor",
                   "rpyc_ipy vs rpyc", "vs Pyro5", "rpyc_ipy / floor", "target", "met?"],
                  rows)


def reconcile_section(values: Values) -> list[str]:
    """The 16 MiB echo measured the ways the two earlier runs did, and why they differ."""
    size = 16 * MiB
    get = values.get
    rows: list[list[str]] = []
    for label, key in (("raw echo, preallocated buffer, `recv_into` (payload / round trip)",
                        "reconcile.raw_prealloc"),
                       ("raw echo, naive `recv` + `join` (payload / round trip)",
                        "reconcile.raw_naive"),
                       ("raw one-way: 16 MiB sent, its length answered",
                        "reconcile.raw_one_way"),
                       ("rpyc_ipy echo, the same payload object each call",
                        "reconcile.ours_same"),
                       ("rpyc_ipy echo, 16 MiB of zeros", "reconcile.ours_zeros"),
                       ("rpyc 6.0.2 zlib off + NODELAY, 16 MiB of zeros",
                        "reconcile.rpyc_tuned_zeros")):
        value = get(key)
        rows.append([label, _fmt("rate", value)])
    fresh, copy = get("reconcile.ours_fresh"), get("reconcile.fresh_copy_s")
    if fresh and copy is not None and size / fresh > copy:
        rows.append(["rpyc_ipy echo, a fresh `bytes` each call (its copy time subtracted)",
                     _fmt("rate", size / (size / fresh - copy))])
    lines = _table(["16 MiB echo, measured as", "MB/s"], rows)
    ours, raw = get("reconcile.ours_same"), get("reconcile.raw_prealloc")
    stream, naive = get("reconcile.raw_one_way"), get("reconcile.raw_naive")
    if ours and raw and stream:
        lines += ["", f"Here rpyc_ipy reaches **{ours / raw:.0%}** of a raw echo measured the "
                  f"same way (payload / round trip) and **{ours / stream:.0%}** of a raw "
                  "one-way transfer" + (f" ({ours / naive:.0%} of a naive raw echo)" if naive
                                        else "")
                  + f"; the one-way floor runs at {stream / raw:.1f}x the echo floor."]
        lines += ["", "The two earlier figures most likely divide the same kind of rpyc_ipy echo "
                  "by different floors: the project's bench (59%) by a raw echo timed the same "
                  "way, as the first share here; the independent run's floor (2,140 MB/s for "
                  "16 MiB against 634 MB/s for rpyc_ipy: 30%) is what a one-way transfer, or "
                  "counting the bytes of both directions, gives where a raw echo does about "
                  "1,100 MB/s: an echo moves every byte twice, one direction after the other."
                  + (f" This run agrees: one-way ran at {stream / raw:.1f}x the echo."
                     if stream / raw >= 1.5 else
                     f" This run does not show that factor by itself (one-way at "
                     f"{stream / raw:.1f}x the echo): on a contended machine the two ends of a "
                     "one-way transfer cannot run side by side either, so the explanation "
                     "stays likely rather than measured.")]
    if fresh and copy is not None and ours and size / fresh > copy:
        adjusted = size / (size / fresh - copy)
        lines += ["", f"A fresh payload each call (copy time subtracted) runs at "
                  f"{adjusted / ours:.0%} of the same-payload figure: new 16 MiB buffers are "
                  "fresh memory each time (page faults on first touch); a bench that reuses "
                  "one payload does not pay that."]
    return lines


def busy_poll_section(values: Values) -> list[str]:
    get = values.get
    rows = [["round trip, cached `add1`", _fmt("time", get("add1_cached.ours")),
             _fmt("time", get("add1.ours_nospin"))],
            ["client CPU per call", _fmt("cpu", get("cpu.client.ours")),
             _fmt("cpu", get("cpu.client.ours_nospin"))],
            ["server CPU per call", _fmt("cpu", get("cpu.server.ours")),
             _fmt("cpu", get("cpu.server.ours_nospin"))]]
    window, solo = get("spin.max_window"), get("spin.solo")
    lines = _table(["rpyc_ipy, one client", "busy polling on (default)",
                    "off (`busy_poll_window=0`)"], rows)
    if window is not None and solo is not None:
        lines += ["", f"Busy polling is kept (rpyc_ipy/transports/spin.py): a reader polls for "
                  f"at most {window * 1e6:.0f} us (`busy_poll_window`; 0 turns it off) before "
                  "it sleeps in the kernel. It turns itself off: the window shrinks to 0 when "
                  "waits are long anyway (an idle peer, a slow network); nobody polls unless "
                  f"one conversation has been the process's only one for {solo * 1e3:.0f} ms "
                  "(a server with many clients, a client with many connections block as "
                  "usual), nor while the machine has more runnable threads than CPUs in two "
                  "readings in a row, and at most one thread per process polls. The idle "
                  "kernel row above shows what it costs at rest."]
    return lines


def load_section(values: Values) -> list[str]:
    rows = []
    for key, label in (("ours", "rpyc_ipy server, rpyc_ipy clients"),
                       ("rpyc", "rpyc server, rpyc clients"),
                       ("floor", "threaded raw + marshal"),
                       ("ours_server_rpyc_clients", "rpyc_ipy server, rpyc clients"),
                       ("rpyc_server_rpyc_ipy_clients", "rpyc server, rpyc_ipy clients")):
        if f"load_throughput.{key}" not in values:
            continue
        get = values.get
        rows.append([label, _fmt("ops", get(f"load_throughput.{key}")),
                     _fmt("lat", get(f"load_p50.{key}")), _fmt("lat", get(f"load_p99.{key}")),
                     f"{get(f'load_server_cpu_us.{key}', float('nan')):.0f} us",
                     f"{get(f'load_client_cpu_us.{key}', float('nan')):.0f} us",
                     _fmt("count", get(f"load_errors.{key}"))])
    clients, seconds = values.get("load.clients"), values.get("load.seconds")
    head = [f"{clients:.0f} concurrent clients, {seconds:g} s per pairing:"
            if clients and seconds else "Load:", ""]
    return head + _table(["pairing", "throughput", "p50", "p99", "server CPU / req",
                          "client CPU / req", "errors"], rows)


def idle_section(values: Values) -> list[str]:
    get = values.get
    rows = []
    for kind in ("plain", "tls"):
        for peer, label in (("ours", "rpyc_ipy"), ("rpyc", "rpyc 6.0.2"),
                            ("floor", "floor: a bare server that only holds the socket")):
            rows.append([f"{label}, {kind}", _fmt("mem", get(f"idle_{kind}.{peer}")),
                         _fmt("count", get(f"idle_{kind}.{peer}_held"))])
    lines = _table(["server", "memory per idle connection", "connections held"], rows)
    if "many.held" in values:
        lines += ["", f"{_fmt('count', get('many.held'))} of "
                  f"{_fmt('count', get('many.wanted'))} idle connections on one rpyc_ipy "
                  f"ThreadedServer: RSS {_fmt('mem', get('many.rss_before'))} -> "
                  f"{_fmt('mem', get('many.rss_after'))}; server CPU "
                  f"{_fmt('seconds', get('many.idle_cpu_s'))} over "
                  f"{_fmt('seconds', get('many.idle_s'))} idle; a fresh client served "
                  f"meanwhile, round trip {_fmt('time', get('many.rt_fresh'))} (before the "
                  f"connections: {_fmt('time', get('many.rt_before'))}); opening them took "
                  f"{_fmt('seconds', get('many.open_s'))}."]
    return lines


def kernel_section(values: Values) -> list[str]:
    get = values.get
    rows = [[label, _fmt("seconds", get(f"kernel_idle.{key}"))]
            for key, label in (("ours", "kernel with rpyc_ipy, `%rpyc_connect`ed"),
                               ("rpyc", "kernel holding an rpyc 6.0.2 classic connection"),
                               ("floor", "plain kernel"),
                               ("ours_server", "rpyc_ipy server (with its session worker)"),
                               ("rpyc_server", "rpyc 6.0.2 classic server"))]
    seconds = get("kernel_idle.seconds")
    head = f"CPU time over the same {seconds:g} idle seconds:" if seconds else ""
    return [head, "", *_table(["process", "CPU"], rows)]


def machine_info() -> dict[str, str]:
    """What the report says about the machine and the software it ran."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for package in ("rpyc_ipy", "rpyc", "Pyro5"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    load = os.getloadavg()
    return {"CPU": f"{model}, {os.cpu_count()} cores", "load average": " ".join(
        f"{x:.2f}" for x in load), "Python": platform.python_version(),
        "OS": platform.platform(), **{k: v for k, v in versions.items()}}


def render(values: Mapping[str, float], start: Mapping[str, str], end: Mapping[str, str],
           notes: Iterable[str] = (), quick: bool = False,
           outputs: Mapping[str, str] | None = None) -> str:
    """The whole report as Markdown (see the module docstring)."""
    values = derive(values)
    lines = ["# rpyc_ipy benchmark report", ""]
    if quick:
        lines += ["**Quick run** (`--quick`): short durations and few repetitions, a smoke "
                  "test of the report; quote a full `make bench` run.", ""]
    machine = [[key, value] for key, value in start.items() if key != "load average"]
    machine += [["load average at start (1, 5, 15 min)", start.get("load average", "?")],
                ["load average at end", end.get("load average", "?")]]
    lines += ["## Machine", "", *_table(["", ""], machine)]
    lines += ["", "## The issue's table", "",
              "Every peer in one run on 127.0.0.1, servers in their own processes; medians of "
              "several repetitions. Ratios: > 1x means rpyc_ipy is better (faster, smaller, "
              "more throughput); rpyc_ipy / floor is its speed as a share of the floor's.", ""]
    lines += issue_table(values)
    lines += ["", "## 16 MiB echo: 30% or 59% of raw?", "", *reconcile_section(values)]
    lines += ["", "## CPU honesty: busy polling", "", *busy_poll_section(values)]
    lines += ["", "## Connected idle notebook kernel", "", *kernel_section(values)]
    lines += ["", "## Idle connections", "", *idle_section(values)]
    lines += ["", "## Load", "", *load_section(values)]
    lines += ["", "## Notes", ""]
    lines += [f"- {note}" for note in notes]
    lines += ["- The machine is shared and noisy (see the load average): compare ratios within "
              "this run, not absolute figures across runs. No test asserts on any of these "
              "times."]
    if outputs:
        lines += ["", "## Each script's own output", ""]
        for name, text in outputs.items():
            lines += [f"<details><summary>{name}</summary>", "", "```", text.rstrip(), "```",
                      "", "</details>", ""]
    return "\n".join(lines).rstrip() + "\n"


def load_results(paths: Iterable[str]) -> tuple[dict[str, float], list[str]]:
    """Merge the scripts' JSON files (missing ones are skipped): values and notes."""
    values: dict[str, float] = {}
    notes: list[str] = []
    for path in paths:
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as source:
            doc = json.load(source)
        values.update(doc.get("values", {}))
        notes.extend(doc.get("notes", []))
    return values, notes
