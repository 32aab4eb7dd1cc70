"""The report of a run: markdown tables, PNG plots, targets met or not, from a `RunRecord`.

Derives every ratio and verdict from the raw records, so `python -m benchmarks.report RUN.json`
regenerates the markdown and plots of a saved run. matplotlib is optional (`pip install
'.[bench]'`): without it the markdown is still written and says why there is no plot.
Nothing here measures or starts anything.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.contenders import (
    BRIDGE,
    BY_KEY,
    DIRECT,
    HTTPS,
    IDEAL,
    NOBATCH,
    RELEASE,
    SDK,
    ideal_ops_per_s,
)
from benchmarks.records import REDIS_BENCHMARK, REDIS_PY, Measurement, ProfileFigures, RunRecord

#: The issue's targets (issue 14, "fast path"): ratios measured in one run.
TARGET_LATENCY_MS = 2.0
TARGET_CLIENTS = 50
TARGET_MANY_CLIENTS = 200
TARGET_P50_VS_PIPELINE = 1.3
TARGET_CPU_VS_RELEASE_1_CLIENT = 0.25
TARGET_CPU_VS_RELEASE_P16 = 0.5
TARGET_IDEAL_SHARE = 0.6
TARGET_IDEAL_SHARE_MANY = 0.4
TARGET_HTTPS_VS_PLAIN = 1.3
TARGET_RSS_BYTES = 100_000_000
TARGET_RSS_IDLE_CLIENTS = 1000

COLOURS = {
    DIRECT.key: "#555555",
    BRIDGE.key: "#1f77b4",
    NOBATCH.key: "#d62728",
    SDK.key: "#2ca02c",
    IDEAL.key: "#9467bd",
    RELEASE.key: "#ff7f0e",
    HTTPS.key: "#17becf",
}


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    measured: str
    #: True met, False not met, None not measured in this run.
    met: bool | None

    @property
    def verdict(self) -> str:
        return {True: "**met**", False: "**not met**", None: "not measured"}[self.met]


@dataclass
class Written:
    files: list[Path] = field(default_factory=list)
    #: Why there is no plot, when there is none.
    note: str = ""


# -- small formatters -------------------------------------------------------------------------


def fmt_ops(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}"


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def fmt_ratio(num: float | None, den: float | None) -> str:
    if num is None or not den:
        return "-"
    return f"{num / den:.2f}x"


def fmt_float(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def ops(m: Measurement | None) -> float | None:
    return None if m is None else m.ops_per_s


def lat_pair(m: Measurement | None) -> str:
    return "-" if m is None else f"{fmt_ms(m.p50_ms)} / {fmt_ms(m.p99_ms)}"


def mib(kb: int | None) -> str:
    return "-" if kb is None else f"{kb / 1024:.1f}"


# -- targets ----------------------------------------------------------------------------------


def evaluate_targets(record: RunRecord) -> list[Target]:
    """Issue 14's targets, each a ratio of two measurements of this run."""
    lat, clients = TARGET_LATENCY_MS, TARGET_CLIENTS
    release = release_label(record)
    zero = min((m.latency_ms for m in record.measurements), default=0.0)
    targets: list[Target] = []

    name = (
        f"1 client, 0 ms: bridge p50 ≤ {TARGET_P50_VS_PIPELINE}x a direct keep-alive HTTP/1.1 "
        "one-command /pipeline (overhead probe)"
    )
    probe = record.probe
    if probe is not None and probe.direct_pipeline_p50_ms:
        ratio = probe.via_bridge_p50_ms / probe.direct_pipeline_p50_ms
        measured = (
            f"{ratio:.2f}x ({probe.via_bridge_p50_ms * 1000:.0f} vs "
            f"{probe.direct_pipeline_p50_ms * 1000:.0f} µs)"
        )
        targets.append(Target(name, measured, ratio <= TARGET_P50_VS_PIPELINE))
    else:
        targets.append(Target(name, "-", None))

    targets.append(
        _cpu_vs_release(
            record,
            f"bridge CPU per command, 1 client, {zero:g} ms, -P 1: ≤ ¼ of release {release}'s",
            (zero, 1, 1),
            TARGET_CPU_VS_RELEASE_1_CLIENT,
        )
    )
    for n, share in ((clients, TARGET_IDEAL_SHARE), (TARGET_MANY_CLIENTS, TARGET_IDEAL_SHARE_MANY)):
        name = f"{n} clients, {lat:g} ms, -P 1: bridge ≥ {share:.0%} of the ideal"
        bridge = record.find(REDIS_BENCHMARK, BRIDGE.key, lat, n, 1)
        ideal = ideal_ops_per_s(n, 1, lat)
        if bridge and ideal:
            got = bridge.ops_per_s / ideal
            measured = f"{got:.0%} ({fmt_ops(bridge.ops_per_s)} of {fmt_ops(ideal)} ops/s)"
            old = record.find(REDIS_BENCHMARK, RELEASE.key, lat, n, 1)
            if old:
                measured += f"; release {release}: {old.ops_per_s / ideal:.0%}"
            targets.append(Target(name, measured, got >= share))
        else:
            targets.append(Target(name, "-", None))
    targets.append(
        _cpu_vs_release(
            record,
            f"bridge CPU per command, {clients} clients, {lat:g} ms, -P 16: ≤ ½ of release "
            f"{release}'s",
            (lat, clients, 16),
            TARGET_CPU_VS_RELEASE_P16,
        )
    )
    targets += _https_targets(record, zero)

    name = "bridge RSS ≤ 100 MB with 1,000 idle clients (peak, VmHWM)"
    idle = record.idle
    if idle is not None:
        peak = idle.hwm_kb * 1024
        measured = f"{peak / 1e6:.1f} MB peak ({idle.rss_with_idle_kb * 1024 / 1e6:.1f} MB idle)"
        if idle.idle_clients < TARGET_RSS_IDLE_CLIENTS:
            measured += f", only {idle.idle_clients} idle clients in this run"
            targets.append(Target(name, measured, None))
        else:
            targets.append(Target(name, measured, peak <= TARGET_RSS_BYTES))
    else:
        targets.append(Target(name, "-", None))
    return targets


def release_label(record: RunRecord) -> str:
    return str(record.settings.get("release") or "8208cb6")


def _cpu_vs_release(
    record: RunRecord, name: str, point: tuple[float, int, int], limit: float
) -> Target:
    lat, clients, pipeline = point
    new = record.find(REDIS_BENCHMARK, BRIDGE.key, lat, clients, pipeline)
    old = record.find(REDIS_BENCHMARK, RELEASE.key, lat, clients, pipeline)
    new_cpu = new.bridge_cpu_us_per_command if new else None
    old_cpu = old.bridge_cpu_us_per_command if old else None
    if new_cpu is None or not old_cpu:
        ran = any(m.contender == RELEASE.key for m in record.measurements)
        why = "point not in this run" if ran else "no release in this run (--make-release)"
        return Target(name, why if new_cpu is None else f"{new_cpu:.0f} µs; {why}", None)
    ratio = new_cpu / old_cpu
    return Target(name, f"{ratio:.2f} ({new_cpu:.0f} vs {old_cpu:.0f} µs)", ratio <= limit)


def _https_targets(record: RunRecord, zero: float) -> list[Target]:
    """HTTPS within 1.3x of plain HTTP at the 1-client and the 50-client points."""
    targets = []
    limit = TARGET_HTTPS_VS_PLAIN
    points = (
        (f"HTTPS upstream, 1 client, {zero:g} ms: p50 ≤ {limit}x plain HTTP's", (zero, 1), True),
        (
            f"HTTPS upstream, {TARGET_CLIENTS} clients, {TARGET_LATENCY_MS:g} ms, -P 1: ops/s "
            f"≥ plain HTTP's ÷ {limit}",
            (TARGET_LATENCY_MS, TARGET_CLIENTS),
            False,
        ),
    )
    ran = any(m.contender == HTTPS.key for m in record.measurements)
    for name, (lat, clients), latency in points:
        plain = record.find(REDIS_BENCHMARK, BRIDGE.key, lat, clients, 1)
        tls = record.find(REDIS_BENCHMARK, HTTPS.key, lat, clients, 1)
        if plain is None or tls is None or not plain.p50_ms or not tls.ops_per_s:
            why = "point not in this run" if ran else "not run (--https)"
            targets.append(Target(name, why, None))
            continue
        if latency:
            ratio = tls.p50_ms / plain.p50_ms
            measured = f"{ratio:.2f}x ({tls.p50_ms:.2f} vs {plain.p50_ms:.2f} ms)"
        else:
            ratio = plain.ops_per_s / tls.ops_per_s
            measured = (
                f"{ratio:.2f}x ({fmt_ops(tls.ops_per_s)} vs {fmt_ops(plain.ops_per_s)} ops/s)"
            )
        targets.append(Target(name, measured, ratio <= limit))
    return targets


# -- markdown ---------------------------------------------------------------------------------


def render_markdown(record: RunRecord, plots: Sequence[str], plot_note: str) -> str:
    meta, settings = record.meta, record.settings
    machine = meta.get("machine", {})
    versions = meta.get("versions", {})
    lines = [f"# resp-bridge benchmark, {str(meta.get('started', ''))[:10]}", ""]
    if meta.get("interrupted"):
        lines += ["> **Interrupted run**: the figures below are partial.", ""]
    if settings.get("quick"):
        lines += ["> Quick (CI-sized) run: tiny request counts, figures are noisy.", ""]
    lines += [
        f"- Command: `{meta.get('command', '')}` ({meta.get('duration_s', '?')} s), "
        f"revision {meta.get('git', '?')}",
        f"- Machine: {machine.get('cpu', '?')}, {machine.get('cpus', '?')} CPUs, "
        f"{machine.get('memory_gib', '?')} GiB, {machine.get('platform', '?')}; load average "
        f"{_load(machine.get('load_average_start'))} at start, "
        f"{_load(meta.get('load_average_end'))} at end",
        f"- {meta.get('python', '')}; "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + f"; {meta.get('redis_server', '')}; {meta.get('redis_benchmark', '')}",
        f"- Settings: injected round trips {_join(settings.get('latencies_ms'))} ms; clients "
        f"{_join(settings.get('clients'))}; redis-benchmark `-P` {_join(settings.get('pipelines'))}"
        f", `-t {settings.get('tests')}`, at most `-n {settings.get('requests')}` per test "
        f"(fewer for slow contenders, about {settings.get('test_budget_s')} s per test); "
        f"thread workload: {settings.get('thread_workload')}, {settings.get('duration_s')} s "
        f"per point; bridge defaults {settings.get('bridge_defaults')}",
        "- Everything runs on this one machine over loopback: the clients (redis-benchmark, the "
        "Python threads), the bridge, the devserver and redis-server share its CPUs, so figures "
        "are lower bounds and ratios between neighbouring measurements are what to compare.",
        "",
        "## Targets",
        "",
    ]
    lines += table(
        ["target", "measured", "result"],
        ([t.name, t.measured, t.verdict] for t in evaluate_targets(record)),
    )
    lines += ["", "## Contenders", ""]
    lines += [f"- **{c.label}** (`{c.key}`): {c.description}." for c in BY_KEY.values()]
    lines += ["", "## Plots", ""]
    if plots:
        lines += [f"![{name}]({name})" for name in plots]
    else:
        lines += [f"No plot: {plot_note}"]
    lines += ["", *_redis_benchmark_section(record), "", *_thread_section(record)]
    lines += ["", *_idle_section(record), "", *_probe_section(record)]
    lines += ["", *_profile_section(record)]
    lines += ["", *_detail_section(record)]
    if record.failures:
        lines += ["", "## Failed steps", ""] + [f"- {f}" for f in record.failures]
    problems = [
        f"- {m.workload} {m.contender} {m.latency_ms:g} ms -c {m.clients} -P {m.pipeline}: "
        + "; ".join(m.problems)
        for m in record.measurements
        if m.problems
    ]
    if problems:
        lines += ["", "## Problems reported by the clients", "", *problems]
    return "\n".join(lines) + "\n"


def _load(values: object) -> str:
    if isinstance(values, list) and values:
        return "/".join(f"{v:.2f}" for v in values)
    return "?"


def _join(values: object) -> str:
    if isinstance(values, list | tuple):
        return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)
    return str(values)


def _latencies(record: RunRecord, workload: str) -> list[float]:
    return sorted({m.latency_ms for m in record.measurements if m.workload == workload})


def _points(record: RunRecord, workload: str, latency: float) -> list[tuple[int, int]]:
    return sorted(
        {
            (m.clients, m.pipeline)
            for m in record.measurements
            if m.workload == workload and m.latency_ms == latency
        },
        key=lambda p: (p[1], p[0]),
    )


def _redis_benchmark_section(record: RunRecord) -> list[str]:
    lines = [
        "## redis-benchmark (unmodified)",
        "",
        "ops/s = all requests of the forwarded tests (every test but PING, which the bridge "
        "answers itself) / their total time; p50 and p99 = median over those tests (ms). "
        "HTTP/cmd and batch come from the devserver's counters; CPU is the bridge's "
        "utime + stime per client command (all tests), RSS its peak so far.",
    ]
    extra = [c for c in (RELEASE, HTTPS) if any(m.contender == c.key for m in record.measurements)]
    names = {RELEASE.key: f"release {release_label(record)}", HTTPS.key: "HTTPS"}
    if extra:
        lines += [
            "",
            "Extra columns: "
            + "; ".join(f"{names[c.key]} = {c.description}" for c in extra)
            + ". Their ratios compare with the bridge at the same point.",
        ]
    for lat in _latencies(record, REDIS_BENCHMARK):
        lines += ["", f"### {lat:g} ms injected round trip", ""]
        rows = []
        cost_rows = []
        for clients, pipeline in _points(record, REDIS_BENCHMARK, lat):
            d, b, n = (
                record.find(REDIS_BENCHMARK, key, lat, clients, pipeline)
                for key in (DIRECT.key, BRIDGE.key, NOBATCH.key)
            )
            more = [record.find(REDIS_BENCHMARK, c.key, lat, clients, pipeline) for c in extra]
            ideal = ideal_ops_per_s(clients, pipeline, lat)
            rows.append(
                [
                    str(clients), str(pipeline), fmt_ops(ops(d)), fmt_ops(ops(b)),
                    fmt_ops(ops(n)), fmt_ops(ideal), fmt_ratio(ops(b), ops(n)),
                    fmt_ratio(ops(b), ideal), fmt_ratio(ops(b), ops(d)), lat_pair(d),
                    lat_pair(b), lat_pair(n),
                ]
                + [x for m in more
                   for x in (fmt_ops(ops(m)), fmt_ratio(ops(b), ops(m)), lat_pair(m))]
            )  # fmt: skip
            cost_rows.append(
                [
                    str(clients), str(pipeline),
                    fmt_float(b.http_per_command if b else None, 3),
                    fmt_float(b.avg_batch if b else None),
                    fmt_float(b.bridge_cpu_us_per_command if b else None),
                    fmt_float(b.devserver_cpu_us_per_command if b else None),
                    mib(b.bridge_hwm_kb if b else None),
                    fmt_float(n.http_per_command if n else None, 3),
                    fmt_float(n.bridge_cpu_us_per_command if n else None),
                    fmt_float(n.devserver_cpu_us_per_command if n else None),
                ]
                + [
                    x
                    for m in more
                    for x in (
                        fmt_float(m.bridge_cpu_us_per_command if m else None),
                        fmt_ratio(
                            b.bridge_cpu_us_per_command if b else None,
                            m.bridge_cpu_us_per_command if m else None,
                        ),
                    )
                ]
            )  # fmt: skip
        lines += table(
            ["clients", "-P", "direct ops/s", "bridge ops/s", "no-batch ops/s", "ideal ops/s",
             "bridge ÷ no-batch", "bridge ÷ ideal", "bridge ÷ direct", "direct p50/p99",
             "bridge p50/p99", "no-batch p50/p99"]
            + [h for c in extra for h in (f"{names[c.key]} ops/s", f"bridge ÷ {names[c.key]}",
                                          f"{names[c.key]} p50/p99")],
            rows,
        )  # fmt: skip
        lines += [""]
        lines += table(
            ["clients", "-P", "bridge HTTP/cmd", "bridge batch", "bridge CPU µs/cmd",
             "devserver CPU µs/cmd", "bridge peak RSS MiB", "no-batch HTTP/cmd",
             "no-batch CPU µs/cmd", "devserver CPU µs/cmd (no-batch)"]
            + [h for c in extra for h in (f"{names[c.key]} CPU µs/cmd",
                                          f"bridge ÷ {names[c.key]} CPU")],
            cost_rows,
        )  # fmt: skip
    return lines


def _thread_section(record: RunRecord) -> list[str]:
    lines = [
        "## redis-py threads and the upstash-redis SDK (80% GET / 20% SET, 100-byte values)",
        "",
        "One thread per client, each with its own connection (redis-py, defaults) or its own "
        "SDK client; p50/p99 in ms over every operation, timed around the library call. The "
        "threads run in the harness's Python process, so at high client counts the GIL of "
        "the client side limits every contender.",
    ]
    for lat in _latencies(record, REDIS_PY):
        lines += ["", f"### {lat:g} ms injected round trip", ""]
        rows = []
        cost_rows = []
        for clients, _ in _points(record, REDIS_PY, lat):
            d, b, n, s = (
                record.find(REDIS_PY, key, lat, clients)
                for key in (DIRECT.key, BRIDGE.key, NOBATCH.key, SDK.key)
            )
            ideal = ideal_ops_per_s(clients, 1, lat)
            rows.append(
                [
                    str(clients), fmt_ops(ops(d)), fmt_ops(ops(b)), fmt_ops(ops(n)),
                    fmt_ops(ops(s)), fmt_ops(ideal), fmt_ratio(ops(b), ops(n)),
                    fmt_ratio(ops(b), ops(s)), fmt_ratio(ops(b), ideal), lat_pair(d),
                    lat_pair(b), lat_pair(n), lat_pair(s),
                ]
            )  # fmt: skip
            cost_rows.append(
                [
                    str(clients),
                    fmt_float(b.http_per_command if b else None, 3),
                    fmt_float(b.avg_batch if b else None),
                    fmt_float(b.bridge_cpu_us_per_command if b else None),
                    fmt_float(n.http_per_command if n else None, 3),
                    fmt_float(n.bridge_cpu_us_per_command if n else None),
                    fmt_float(s.http_per_command if s else None, 3),
                    fmt_float(s.devserver_cpu_us_per_command if s else None),
                    fmt_float(b.devserver_cpu_us_per_command if b else None),
                ]
            )  # fmt: skip
        lines += table(
            ["clients", "direct ops/s", "bridge ops/s", "no-batch ops/s", "SDK ops/s",
             "ideal ops/s", "bridge ÷ no-batch", "bridge ÷ SDK", "bridge ÷ ideal",
             "direct p50/p99", "bridge p50/p99", "no-batch p50/p99", "SDK p50/p99"],
            rows,
        )  # fmt: skip
        lines += [""]
        lines += table(
            ["clients", "bridge HTTP/cmd", "bridge batch", "bridge CPU µs/cmd",
             "no-batch HTTP/cmd", "no-batch CPU µs/cmd", "SDK HTTP/cmd",
             "devserver CPU µs/cmd (SDK)", "devserver CPU µs/cmd (bridge)"],
            cost_rows,
        )  # fmt: skip
    return lines


def _idle_section(record: RunRecord) -> list[str]:
    idle = record.idle
    lines = ["## The bridge with idle clients", ""]
    if idle is None:
        return [*lines, "Not measured in this run."]
    b, w = idle.before, idle.with_idle
    lines += [
        f"A fresh bridge (defaults, {idle.latency_ms:g} ms injected): the redis-py workload "
        f"with {b.clients} threads, then {idle.idle_clients:,} more clients connect (one PING "
        f"each) and stay idle, then the same workload again.",
        "",
    ]
    lines += table(
        ["", "ops/s", "p50 / p99 ms", "bridge CPU µs/cmd", "HTTP/cmd"],
        [
            ["without idle clients", fmt_ops(b.ops_per_s), lat_pair(b),
             fmt_float(b.bridge_cpu_us_per_command), fmt_float(b.http_per_command, 3)],
            [f"with {idle.idle_clients:,} idle clients", fmt_ops(w.ops_per_s), lat_pair(w),
             fmt_float(w.bridge_cpu_us_per_command), fmt_float(w.http_per_command, 3)],
        ],
    )  # fmt: skip
    idle_cpu = idle.idle_cpu_s / idle.idle_window_s * 100 if idle.idle_window_s else 0.0
    lines += [
        "",
        f"- RSS after start {mib(idle.rss_started_kb)} MiB; with {idle.idle_clients:,} idle "
        f"clients {mib(idle.rss_with_idle_kb)} MiB; peak over the whole test (VmHWM) "
        f"{mib(idle.hwm_kb)} MiB.",
        f"- CPU while the {idle.idle_clients:,} clients sit idle: {idle_cpu:.1f}% of one core "
        f"({idle.idle_cpu_s:.2f} s over {idle.idle_window_s:g} s).",
    ]
    return lines


def _probe_section(record: RunRecord) -> list[str]:
    probe = record.probe
    lines = ["## Per-command overhead (0 ms injected, 1 client)", ""]
    if probe is None:
        return [*lines, "Not measured (needs 0 among --latency-ms)."]
    lines += [
        f"{probe.iterations:,} GETs of a 100-byte value through each path, interleaved (bridge, "
        "then one-command `/pipeline` with `Upstash-Response-Format: resp2`, then redis-server "
        "itself, then a PING the bridge answers without the upstream), with minimal raw-socket "
        "clients so no client library is measured.",
        "",
    ]
    rows = [
        ["redis-server directly", f"{probe.direct_redis_p50_ms * 1000:.0f}"],
        ["devserver `/pipeline`, one command", f"{probe.direct_pipeline_p50_ms * 1000:.0f}"],
        ["through the bridge", f"{probe.via_bridge_p50_ms * 1000:.0f}"],
        ["added by the bridge", f"{probe.added_p50_us:+.0f}"],
    ]
    if probe.bridge_ping_p50_ms:
        rows.append(["PING answered by the bridge (the hop alone)",
                     f"{probe.bridge_ping_p50_ms * 1000:.0f}"])  # fmt: skip
    lines += table(["path", "p50 µs"], rows)
    if probe.bridge_ping_p50_ms:
        hop = (probe.bridge_ping_p50_ms - probe.direct_redis_p50_ms) * 1000
        lines += [
            "",
            f"Of the {probe.added_p50_us:.0f} µs added, about {hop:.0f} µs is the extra hop "
            "(the PING through the bridge against redis-server's own round trip); the rest "
            "is the upstream half: the bridge's work for the HTTP exchange (batching, sending, "
            "reading, splitting the answer) and its wake-up when the answer arrives.",
        ]
    return lines


def _profile_section(record: RunRecord) -> list[str]:
    lines = ["## Where the bridge's CPU goes (py-spy)", ""]
    profiles = [p for p in (record.profile, record.profile_one_client) if p is not None]
    if not profiles:
        return [*lines, f"No profile: {record.profile_note or 'not measured'}."]
    for prof in profiles:
        lines += [*_one_profile(prof), ""]
    return lines[:-1]


def _one_profile(prof: ProfileFigures) -> list[str]:
    lines = [
        f"py-spy attached to the auto-batching bridge during a repeat of {prof.workload} "
        f"({prof.samples:,} samples at {prof.sample_rate_hz} Hz, on-CPU only). Shares of all "
        "samples; socket syscalls (send/recv, which on loopback also do the receiving "
        "side's kernel work) show up in the functions that call them (the upstream client's "
        "`_send`, the connection's reply send) or in trio's `_nonblocking_helper`.",
        "",
    ]
    rows = []
    width = max(len(prof.by_package), len(prof.self_functions), len(prof.bridge_inclusive))
    for i in range(width):
        row = []
        for column in (prof.by_package, prof.self_functions, prof.bridge_inclusive):
            row += [f"`{column[i][0]}`", f"{column[i][1]:.1%}"] if i < len(column) else ["", ""]
        rows.append(row)
    lines += table(
        ["package (self)", "%", "function (self)", "%", "bridge function (inclusive)", "%"], rows
    )
    return lines


def _detail_section(record: RunRecord) -> list[str]:
    rb = [m for m in record.measurements if m.workload == REDIS_BENCHMARK]
    if not rb:
        return []
    names: list[str] = []
    for m in rb:
        for t in m.tests:
            if t.test not in names:
                names.append(t.test)
    short = [n.split(" (")[0] for n in names]
    rows = []
    for m in sorted(rb, key=lambda m: (m.latency_ms, m.pipeline, m.clients, m.contender)):
        by_test = {t.test: t for t in m.tests}
        rows.append(
            [f"{m.latency_ms:g}", BY_KEY[m.contender].label, str(m.clients), str(m.pipeline)]
            + [
                f"{fmt_ops(by_test[n].ops_per_s)} ({fmt_ms(by_test[n].p99_ms)})"
                if n in by_test
                else "-"
                for n in names
            ]
        )
    return [
        "## redis-benchmark per test",
        "",
        "<details><summary>ops/s (p99 ms) of every test</summary>",
        "",
        *table(["ms", "contender", "clients", "-P", *short], rows),
        "",
        "</details>",
    ]


# -- plots ------------------------------------------------------------------------------------


def plot(record: RunRecord, stem: Path) -> tuple[list[Path], str]:
    """Write `<stem>-redis-benchmark.png` and `<stem>-redis-py.png`; (paths, why-not note)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [], (
            "matplotlib is not installed (`pip install -e '.[bench]'` adds it); the tables "
            "above have every figure."
        )
    written = []
    for workload, contenders in (
        (REDIS_BENCHMARK, (DIRECT, BRIDGE, NOBATCH, RELEASE, HTTPS, IDEAL)),
        (REDIS_PY, (DIRECT, BRIDGE, NOBATCH, SDK, IDEAL)),
    ):
        lats = _latencies(record, workload)
        if not lats:
            continue
        fig, axes = plt.subplots(
            2, len(lats), figsize=(4.6 * len(lats) + 0.6, 7.6), squeeze=False, sharex=True
        )
        pipelines = sorted({m.pipeline for m in record.measurements if m.workload == workload})
        for col, lat in enumerate(lats):
            top, bottom = axes[0][col], axes[1][col]
            for contender in contenders:
                for pipeline in pipelines:
                    style = "-" if pipeline == 1 else "--"
                    suffix = f" -P {pipeline}" if len(pipelines) > 1 else ""
                    clients = sorted(
                        {
                            m.clients
                            for m in record.measurements
                            if m.workload == workload
                            and m.latency_ms == lat
                            and m.pipeline == pipeline
                        }
                    )
                    xs, ys, p99 = [], [], []
                    for c in clients:
                        if contender is IDEAL:
                            value = ideal_ops_per_s(c, pipeline, lat)
                            if value is not None:
                                xs.append(c)
                                ys.append(value)
                                p99.append(lat)
                            continue
                        m = record.find(workload, contender.key, lat, c, pipeline)
                        if m is not None and m.ops_per_s > 0:
                            xs.append(c)
                            ys.append(m.ops_per_s)
                            p99.append(m.p99_ms)
                    if not xs:
                        continue
                    kw = {"color": COLOURS[contender.key], "linestyle": style, "marker": "o"}
                    top.plot(xs, ys, label=contender.label + suffix, **kw)
                    if contender is not IDEAL:
                        bottom.plot(xs, p99, label=contender.label + suffix, **kw)
            top.set_title(f"{lat:g} ms injected round trip")
            ticks = sorted({m.clients for m in record.measurements if m.workload == workload})
            for ax in (top, bottom):
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.set_xticks(ticks, [str(t) for t in ticks])
                ax.minorticks_off()
                ax.grid(True, alpha=0.3)
            bottom.set_xlabel("clients")
            if col == 0:
                top.set_ylabel("ops/s")
                bottom.set_ylabel("p99 latency (ms)")
        legend: dict[str, object] = {}
        for ax in axes[0]:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                legend.setdefault(label, handle)
        fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=4,
                   fontsize="small")  # fmt: skip
        title = (
            "redis-benchmark (forwarded tests)"
            if workload == REDIS_BENCHMARK
            else ("redis-py threads / upstash-redis SDK threads, 80% GET / 20% SET")
        )
        fig.suptitle(f"resp-bridge: {title}")
        fig.tight_layout(rect=(0, 0.09, 1, 1))
        path = stem.with_name(f"{stem.name}-{workload}.png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written, ""


# -- files ------------------------------------------------------------------------------------


def write_report(record: RunRecord, out_dir: Path, name: str | None = None) -> Written:
    """Write `<out>/<date>.json`, the PNG plots and `<out>/<date>.md`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / (name or str(record.meta.get("started", "run"))[:10])
    written = Written()
    json_path = stem.with_suffix(".json")
    json_path.write_text(json.dumps(record.to_dict(), indent=1) + "\n", encoding="utf-8")
    written.files.append(json_path)
    plots, note = plot(record, stem)
    written.files += plots
    written.note = note
    md_path = stem.with_suffix(".md")
    md_path.write_text(render_markdown(record, [p.name for p in plots], note), encoding="utf-8")
    written.files.append(md_path)
    return written


def render_summary(record: RunRecord) -> str:
    """A few lines for the terminal: the targets and the headline ratios."""
    lines = ["", "Targets:"]
    for t in evaluate_targets(record):
        lines.append(f"  [{t.verdict.strip('*'):>12}] {t.name}: {t.measured}")
    if record.failures:
        lines.append(f"{len(record.failures)} step(s) failed; see the report.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`python -m benchmarks.report RUN.json`: rewrite the markdown and plots of a saved run."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m benchmarks.report RUN.json", file=sys.stderr)
        return 2
    path = Path(args[0])
    record = RunRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
    written = write_report(record, path.parent, path.stem)
    for file in written.files:
        print(f"wrote {file}")
    print(render_summary(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
